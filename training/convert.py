"""SavedModel export of the digits models (keras.export.ExportArchive; needs TensorFlow). Conversion is the
packaging path's (liteserve_dev.packaging.convert)."""

from __future__ import annotations

from pathlib import Path

import keras
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
