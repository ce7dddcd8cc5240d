"""Seeded Keras MLP training (needs TensorFlow / Keras 3)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import keras
import numpy as np
import tensorflow as tf
from sklearn.model_selection import train_test_split

from training.specs import ModelSpec

_configured = False


def make_deterministic(seed: int) -> None:
    """Seed Python/numpy/TF and ask TF for deterministic, single-threaded kernels (as far as TF allows)."""
    global _configured
    if not _configured:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.config.threading.set_intra_op_parallelism_threads(1)
        except RuntimeError:  # TF already initialised its thread pools; determinism below still holds
            pass
        tf.config.experimental.enable_op_determinism()
        _configured = True
    keras.utils.set_random_seed(seed)


def build_keras(spec: ModelSpec, n_features: int, n_classes: int) -> tuple[keras.Model, keras.Model]:
    """Return (classifier emitting logits, model emitting [logits, last hidden activations]) sharing weights."""
    reg = keras.regularizers.L2(spec.l2) if spec.l2 > 0 else None
    inp = keras.Input(shape=(n_features,), name="x", dtype="float32")
    h = inp
    for i, units in enumerate(spec.hidden):
        if spec.dropout > 0 and i > 0:
            h = keras.layers.Dropout(spec.dropout, seed=spec.seed + i, name=f"dropout_{i}")(h)
        h = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"hidden_{i}")(h)
    logits = keras.layers.Dense(n_classes, kernel_regularizer=reg, name="logits")(h)
    return keras.Model(inp, logits, name=spec.name), keras.Model(inp, [logits, h], name=f"{spec.name}_export")


def train(
    spec: ModelSpec, x_train: np.ndarray, y_train: np.ndarray, n_classes: int
) -> tuple[keras.Model, dict[str, float | int]]:
    """Train on `x_train` with a seeded stratified early-stopping split carved from it; returns the export model."""
    make_deterministic(spec.seed)
    x_fit, x_es, y_fit, y_es = train_test_split(
        x_train, y_train, test_size=spec.val_fraction, random_state=spec.seed, stratify=y_train
    )
    clf, export_model = build_keras(spec, x_train.shape[1], n_classes)
    clf.compile(
        optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec.patience, restore_best_weights=True)
    hist = clf.fit(
        x_fit,
        y_fit,
        validation_data=(x_es, y_es),
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        shuffle=True,
        callbacks=[stop],
        verbose=0,
    )
    best = int(np.argmin(hist.history["val_loss"]))
    info = {
        "epochs_run": len(hist.history["val_loss"]),
        "best_epoch": best + 1,
        "early_stop_val_accuracy": float(hist.history["val_accuracy"][best]),
        "n_fit": len(y_fit),
        "n_early_stop": len(y_es),
        "params": int(clf.count_params()),
    }
    return export_model, info
