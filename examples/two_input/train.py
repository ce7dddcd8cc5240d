"""Train a classifier with two named inputs, an 8x8 one-channel image (`image`, rank 4) and three numbers (`meta`),
on generated data (the class depends on both), and save what `liteserve-model package` needs (run it in the training
venv: `.venv-train/bin/python examples/two_input/train.py OUT_DIR`):

- `model.keras`: the Keras model (dict output `probabilities`, 3 classes);
- `data.npz`: `image` [600, 8, 8, 1], `meta` [600, 3] and `label` [600]: the packaging data;
- `batch.jsonl`: the same rows as `{"key", "image", "meta"}` lines (one field per input), for a batch drop;
- `reference.npz`: the source model's `probabilities` for those rows.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:
    from liteserve_dev.retraining import RetrainInput


def fit(image: np.ndarray, meta: np.ndarray, label: np.ndarray) -> keras.Model:
    """The two-input classifier, seeded, trained on (image, meta) -> label (class index)."""
    keras.utils.set_random_seed(1)
    img_in = keras.Input(shape=(8, 8, 1), name="image")
    meta_in = keras.Input(shape=(3,), name="meta")
    h = keras.layers.Conv2D(4, 3, activation="relu")(img_in)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Concatenate()([h, meta_in])
    h = keras.layers.Dense(16, activation="relu")(h)
    probs = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model({"image": img_in, "meta": meta_in}, {"probabilities": probs})
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss={"probabilities": "sparse_categorical_crossentropy"})
    model.fit({"image": image, "meta": meta}, {"probabilities": label}, epochs=15, batch_size=32, verbose=0)
    return model


def retrain(job: RetrainInput) -> keras.Model:
    """Retraining entry point (`--retrain examples.two_input.train:retrain`): the same model on the training rows
    followed by the window's labelled rows, both inputs by name."""
    rows = (job.training, job.recent)
    inputs = {name: np.concatenate([r.inputs[name] for r in rows]) for name in ("image", "meta")}
    return fit(inputs["image"], inputs["meta"], np.concatenate([r.labels for r in rows]).astype(np.int64))


def make(out: Path) -> keras.Model:
    """Generate the data, train the model, write every file above under ``out``; return the Keras model."""
    rng = np.random.default_rng(1)
    n = 600
    top_bright = rng.random(n) < 0.5
    image = rng.random((n, 8, 8, 1), dtype=np.float32) * 0.6
    image[top_bright, :4] += 0.4
    image[~top_bright, 4:] += 0.4
    meta = rng.normal(size=(n, 3)).astype(np.float32)
    meta[:, 0] += np.where(rng.random(n) < 0.5, 1.5, -1.5)
    label = top_bright.astype(np.int64) + (meta[:, 0] > 0).astype(np.int64)
    model = fit(image, meta, label)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    np.savez(out / "data.npz", image=image, meta=meta, label=label)
    with (out / "batch.jsonl").open("w") as f:
        for i in range(n):
            row = {"key": f"item-{i:03d}", "image": image[i].tolist(), "meta": meta[i].tolist()}
            f.write(json.dumps(row) + "\n")
    ref = model.predict({"image": image, "meta": meta}, verbose=0)["probabilities"]
    np.savez(out / "reference.npz", probabilities=ref)
    return model


if __name__ == "__main__":
    make(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/two_input/out"))
