"""Packaging time of small models: `liteserve-model package` run as a user runs it (a fresh .venv-train process) on
the two examples — the diabetes regression SavedModel (442 CSV rows, int8) and the two-input .keras classifier (600
rows, an image and a flat input, int8) — against a bare `import tensorflow` in a fresh process of the same venv, the
floor of any TensorFlow tool, measured in the same rounds. Rounds are interleaved (baseline, then each model) and
the figures are medians over BENCH_PROCESSES rounds (default 5) with their [min, max]. The examples are trained once
first (not timed). Prints JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.repeat import fold, processes_from_env

ROOT = Path(__file__).resolve().parents[1]

TRAIN_PYTHON = ROOT / ".venv-train" / "bin" / "python"
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'shared' / 'python'}", "TF_CPP_MIN_LOG_LEVEL": "3"}


def timed(args: list[str]) -> tuple[float, str]:
    """Wall seconds of one fresh .venv-train process and its stdout."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(TRAIN_PYTHON), *args], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return dt, proc.stdout


def main() -> dict:
    rounds = processes_from_env()
    with tempfile.TemporaryDirectory(prefix="bench-packaging-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "models"
        for name in ("diabetes", "two_input"):
            timed([str(ROOT / "examples" / name / "train.py"), str(src / name)])
        cases = {
            "diabetes": [str(src / "diabetes" / "saved_model"), "--data", str(src / "diabetes" / "data.csv"),
                         "--label-field", "target"],
            "two_input": [str(src / "two_input" / "model.keras"), "--data", str(src / "two_input" / "data.npz")],
        }  # fmt: skip
        baseline: list[float] = []
        runs: dict[str, list[dict]] = {name: [] for name in cases}
        for _ in range(rounds):
            baseline.append(timed(["-c", "import tensorflow"])[0])
            for name, args in cases.items():
                wall, stdout = timed(["-m", "liteserve_dev", "package", *args, "--name", name, "--out", str(out)])
                summary = json.loads(stdout.strip().splitlines()[-1])
                runs[name].append(
                    {
                        "wall_s": round(wall, 3),
                        "ratio_vs_import_tensorflow": round(wall / baseline[-1], 2),
                        "packager_seconds": summary["seconds"],
                        # What packaging itself costs, past the TensorFlow import it shares with any TF tool.
                        "beyond_tf_import_s": round(
                            summary["seconds"]["total"] - summary["seconds"]["import_tensorflow"], 2
                        ),
                        "size_bytes": summary["size_bytes"],
                        "quantization": summary["quantization"],
                    }
                )
    models = {}
    for name, model_runs in runs.items():
        medians, spread = fold(model_runs)
        models[name] = {**medians, "spread": spread}
    return {
        "rounds": rounds,
        "import_tensorflow_s": round(statistics.median(baseline), 3),
        "import_tensorflow_spread": [round(min(baseline), 3), round(max(baseline), 3)],
        "models": models,
    }


if __name__ == "__main__":
    if not TRAIN_PYTHON.exists():
        raise SystemExit("packaging runs in .venv-train: run `make train-venv`")
    print(json.dumps({"packaging": main()}, indent=2))
