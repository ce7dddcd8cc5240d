"""Retraining-interval estimate (issue 5 §6; *Machine Learning Design Patterns*, "Continued Model Evaluation"):
train on time-stamped labelled rows up to a cut-off, score successive later slices, fit how accuracy decays and
report how long until the fitted accuracy has fallen by a tolerated drop.

    python -m training.interval --generate --days 30 --drift-start 10        # in-process drift scenario
    python -m training.interval --data /tmp/scenario --cutoff +7d --slice 1d --tolerated-drop 0.02
    python -m training.interval --data rows.jsonl                             # {key, t|time, x, label} per line

The estimate uses the float Keras model of `training.keras_model` (same spec and seed as `make model`): int8
conversion tracks float accuracy within 0.5 points (checked by `training.build`), well inside any tolerated drop,
so converting each trial model would only add time. Training needs TensorFlow (`.venv-train`); loading, slicing,
fitting (numpy + scipy) and the SVG plot do not.

The sections live in sibling modules: `rows` (parsing, loading, generating), `slices`, `decay` (fits and the
estimate), `plot` (SVG), `pipeline` (`run`, the Keras trainer) and `cli`.
"""

from training.interval.cli import main
from training.interval.decay import DecayFit, crossing_time, estimate_interval, fit_decay
from training.interval.pipeline import Trainer, keras_trainer, run
from training.interval.plot import svg_plot
from training.interval.rows import (
    DAY,
    InputError,
    Rows,
    generate_rows,
    load,
    load_jsonl,
    load_scenario_dir,
    parse_duration,
    parse_time,
    resolve_cutoff,
)
from training.interval.slices import slice_accuracy

__all__ = [
    "DAY",
    "DecayFit",
    "InputError",
    "Rows",
    "Trainer",
    "crossing_time",
    "estimate_interval",
    "fit_decay",
    "generate_rows",
    "keras_trainer",
    "load",
    "load_jsonl",
    "load_scenario_dir",
    "main",
    "parse_duration",
    "parse_time",
    "resolve_cutoff",
    "run",
    "slice_accuracy",
    "svg_plot",
]
