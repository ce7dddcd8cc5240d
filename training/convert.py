"""SavedModel export (keras.export.ExportArchive) and TF Lite conversion (needs TensorFlow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

SIGNATURES = ("serving_default", "embedding")


def export_saved_model(export_model: keras.Model, n_features: int, path: Path) -> None:
    """Write a SavedModel with `serving_default` (probabilities, class_id) and `embedding` (embedding)."""
    spec = [tf.TensorSpec([None, n_features], tf.float32, name="x")]

    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        logits, _ = export_model(x, training=False)
        probs = tf.nn.softmax(logits, axis=-1)
        # class_id is the argmax of the returned probabilities so both outputs always agree.
        return {"probabilities": probs, "class_id": tf.argmax(probs, axis=-1)}

    def embed(x: tf.Tensor) -> dict[str, tf.Tensor]:
        _, hidden = export_model(x, training=False)
        return {"embedding": hidden}

    archive = keras.export.ExportArchive()
    archive.track(export_model)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=spec)
    archive.add_endpoint(name="embedding", fn=embed, input_signature=spec)
    archive.write_out(str(path), verbose=False)


def convert(saved_model: Path, representative: np.ndarray | None) -> bytes:
    """Convert every signature; full-integer int8 with float32 I/O when `representative` rows are given, else float."""
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=list(SIGNATURES))
    if representative is not None:
        rows = np.asarray(representative, dtype=np.float32)

        def rep() -> Iterator[tuple[str, dict[str, np.ndarray]]]:
            # Every signature must be fed, or the ones not fed silently stay float.
            for row in rows:
                for key in SIGNATURES:
                    yield key, {"x": row[None, :]}

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
    return bytes(conv.convert())
