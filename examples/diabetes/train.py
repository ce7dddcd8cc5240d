"""Train a regression MLP on scikit-learn's bundled diabetes data and save what `liteserve-model package` and a batch
drop need (run it in the training venv: `.venv-train/bin/python examples/diabetes/train.py OUT_DIR`):

- `saved_model/`: the Keras model exported as a SavedModel (input `features` [n, 10], output `output_0` [n, 1]);
- `data.csv`: the ten named, scaled columns (age, sex, bmi, bp, s1..s6) and `target` (25..346), 442 rows: the
  packaging data (calibration, baseline, fidelity and metrics with `--label-field target`);
- `batch.csv`: the same rows keyed `patient-000`.., the columns in the model's feature order, for a batch drop;
- `reference.csv`: `key,prediction`, the source model's answer per key, to compare what the endpoint answers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from typing import TYPE_CHECKING

import keras
import numpy as np
from sklearn.datasets import load_diabetes

if TYPE_CHECKING:
    from liteserve_dev.retraining import RetrainInput


def fit(x: np.ndarray, y: np.ndarray) -> keras.Model:
    """The regression MLP (input `features` [n, 10] -> one score), seeded, trained on (x, y)."""
    keras.utils.set_random_seed(2)
    inp = keras.Input(shape=(x.shape[1],), name="features")
    h = keras.layers.Dense(32, activation="relu")(inp)
    h = keras.layers.Dense(16, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.Adam(2e-2), loss="mse")
    model.fit(x, y, epochs=60, batch_size=32, verbose=0)
    return model


def retrain(job: RetrainInput) -> keras.Model:
    """Retraining entry point (`--retrain examples.diabetes.train:retrain`): the same MLP on the training rows
    followed by the window's labelled rows."""
    x = np.concatenate([job.training.inputs["features"], job.recent.inputs["features"]])
    y = np.concatenate([job.training.labels, job.recent.labels]).astype(np.float32)
    return fit(x, y)


def make(out: Path) -> keras.Model:
    """Train the model, write every file above under ``out``; return the Keras model."""
    bunch = load_diabetes()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.float32)
    model = fit(x, y)
    out.mkdir(parents=True, exist_ok=True)
    model.export(str(out / "saved_model"), format="tf_saved_model", verbose=False)
    names = list(bunch.feature_names)
    cells = [",".join(f"{v:.6f}" for v in row) for row in x]
    keys = [f"patient-{i:03d}" for i in range(len(x))]
    (out / "data.csv").write_text(
        "\n".join([",".join([*names, "target"]), *(f"{c},{t:g}" for c, t in zip(cells, y, strict=True))]) + "\n"
    )
    (out / "batch.csv").write_text(
        "\n".join([",".join(["key", *names]), *(f"{k},{c}" for k, c in zip(keys, cells, strict=True))]) + "\n"
    )
    # The source model on exactly the values the CSV files hold (rounded to 6 decimals).
    written = np.array([[float(v) for v in c.split(",")] for c in cells], dtype=np.float32)
    ref = model.predict(written, verbose=0).reshape(-1)
    (out / "reference.csv").write_text(
        "\n".join(["key,prediction", *(f"{k},{float(p)!r}" for k, p in zip(keys, ref, strict=True))]) + "\n"
    )
    return model


if __name__ == "__main__":
    make(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/diabetes/out"))
