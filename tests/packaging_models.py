"""Small real models (and their data) for the packaging tests, made with TensorFlow: run in .venv-train.

    python -m tests.packaging_models OUT_DIR

writes, under OUT_DIR:
- two_input/ and diabetes/: the user-facing examples (examples/two_input/train.py, examples/diabetes/train.py: a
  classifier with an image input [n, 8, 8, 1] and a flat `meta` input [n, 3]; a regression MLP on scikit-learn's
  diabetes data read from named CSV columns), exactly as a user makes them;
- scalar/: `saved_model/` (a tf.Module with its own variables, input `x` [n], output `y`) and `data.jsonl`;
- two_signatures/: `saved_model/` (ExportArchive) and `module/` (tf.Module), each with `serving_default` -> score and
  `hidden` -> h, and `data.npz`;
- float_tflite/: `model.tflite` (the diabetes MLP converted to float TF Lite elsewhere) and `data.npz`.

The diabetes example's retraining entry point (the retraining contract, `liteserve_dev.retraining`) is
`examples.diabetes.train:retrain`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_diabetes

from examples.diabetes.train import make as diabetes
from examples.two_input.train import make as two_input


class Scalar(tf.Module):
    """y = w2 · relu(w1 x + b1) + b2 on one number per row, with its own variables."""

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self.w1 = tf.Variable(rng.normal(size=(1, 8)).astype(np.float32))
        self.b1 = tf.Variable(rng.normal(size=(8,)).astype(np.float32))
        self.w2 = tf.Variable(rng.normal(size=(8, 1)).astype(np.float32))
        self.b2 = tf.Variable(np.float32(0.5))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        h = tf.nn.relu(tf.matmul(x[:, None], self.w1) + self.b1)
        return {"y": tf.reshape(tf.matmul(h, self.w2), [-1]) + self.b2}


def scalar(out: Path) -> None:
    """The scalar-input float model and 200 rows of `{"key", "x"}`."""
    module = Scalar()
    out.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(out / "saved_model"), signatures={"serving_default": module.serve})
    xs = np.linspace(-3, 3, 200)
    with (out / "data.jsonl").open("w") as f:
        for i, v in enumerate(xs):
            f.write(json.dumps({"key": f"r{i}", "x": float(v)}) + "\n")


class TwoSignatures(tf.Module):
    """A tf.Module with two signatures over the same weights: `serving_default` (score) and `hidden` (activations)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(4)
        self.w1 = tf.Variable(rng.normal(size=(4, 8)).astype(np.float32))
        self.w2 = tf.Variable(rng.normal(size=(8, 1)).astype(np.float32))

    def _hidden(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(tf.matmul(x, self.w1))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"score": tf.matmul(self._hidden(x), self.w2)}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def hidden(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"h": self._hidden(x)}


def two_signatures(out: Path) -> None:
    """Two SavedModels with signatures `serving_default` (score) and `hidden` (h) and 200 rows of `x` as .npz:
    `saved_model/` exported with keras.export.ExportArchive, `module/` a tf.Module the converter keeps only one
    signature of."""
    keras.utils.set_random_seed(4)
    inp = keras.Input(shape=(4,), name="x")
    h = keras.layers.Dense(8, activation="relu")(inp)
    model = keras.Model(inp, [keras.layers.Dense(1)(h), h])
    spec = [tf.TensorSpec([None, 4], tf.float32, name="x")]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda x: {"score": model(x)[0]}, input_signature=spec)
    archive.add_endpoint("hidden", lambda x: {"h": model(x)[1]}, input_signature=spec)
    out.mkdir(parents=True, exist_ok=True)
    archive.write_out(str(out / "saved_model"), verbose=False)
    module = TwoSignatures()
    sigs = {"serving_default": module.serve, "hidden": module.hidden}
    tf.saved_model.save(module, str(out / "module"), signatures=sigs)
    np.savez(out / "data.npz", x=np.random.default_rng(5).normal(size=(200, 4)).astype(np.float32))


def float_tflite(out: Path, diabetes_dir: Path) -> None:
    """The diabetes SavedModel as a float .tflite, with its data as .npz."""
    conv = tf.lite.TFLiteConverter.from_saved_model(str(diabetes_dir / "saved_model"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.tflite").write_bytes(conv.convert())
    x = np.asarray(load_diabetes().data, dtype=np.float32)
    np.savez(out / "data.npz", features=x)


def main(out: Path) -> None:
    """Make every model under `out`."""
    two_input(out / "two_input")
    diabetes(out / "diabetes")
    scalar(out / "scalar")
    two_signatures(out / "two_signatures")
    float_tflite(out / "float_tflite", out / "diabetes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
