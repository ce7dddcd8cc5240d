"""SavedModel loading, `.keras` export and TF Lite conversion (needs TensorFlow: the training venv only)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from liteserve_dev.packaging import PackagingError, checks

QUANTIZE = ("int8", "float16", "dynamic", "none")
Feeds = Callable[[], Iterator[tuple[str, dict[str, np.ndarray]]]]


def keras_to_saved_model(path: Path, out: Path) -> None:
    """Export a `.keras` file as a SavedModel whose `serving_default` keeps the Input names (and dict outputs')."""
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:
        raise PackagingError(f"{path.name}: not a loadable .keras model ({type(e).__name__}: {e})") from None
    model.export(str(out), format="tf_saved_model", verbose=False)


class SavedModel:
    """A loaded SavedModel: its signatures as a manifest block and a batched runner (the float reference)."""

    def __init__(self, path: Path) -> None:
        try:
            self._loaded = tf.saved_model.load(str(path))
        except (OSError, ValueError) as e:
            raise PackagingError(f"{path}: not a readable SavedModel ({e})") from None
        self.path = path
        keys = sorted(self._loaded.signatures.keys())
        if not keys:
            raise PackagingError(f"{path}: the SavedModel has no signatures to serve")
        # Keras' export writes `serve` and `serving_default` for the same function; the converter keeps one of them.
        if {"serve", "serving_default"} <= set(keys):
            block = self.signatures(["serve", "serving_default"])
            if block["serve"] == block["serving_default"]:
                keys.remove("serve")
        self.keys = keys

    def signatures(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The manifest's signature block of `keys`, read from the concrete functions."""
        block = {}
        for key in keys:
            fn = self._loaded.signatures[key]
            inputs = fn.structured_input_signature[1]
            block[key] = {
                "inputs": {n: _spec(s) for n, s in sorted(inputs.items())},
                "outputs": {n: _spec(s) for n, s in sorted(fn.structured_outputs.items())},
            }
        return block

    def run(self, key: str, inputs: dict[str, np.ndarray], batch: int = 256) -> dict[str, np.ndarray]:
        """Outputs of signature `key` on all rows of `inputs`, batch by batch."""
        fn = self._loaded.signatures[key]
        n = len(next(iter(inputs.values())))
        parts: dict[str, list[np.ndarray]] = {}
        for i in range(0, n, batch):
            res = fn(**{k: tf.constant(v[i : i + batch]) for k, v in inputs.items()})
            for k, v in res.items():
                parts.setdefault(k, []).append(v.numpy())
        return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def _spec(s: tf.TensorSpec) -> dict[str, Any]:
    dims = s.shape.as_list() if s.shape.rank is not None else []
    return {"dtype": np.dtype(s.dtype.as_numpy_dtype).name, "shape": [-1 if d is None else int(d) for d in dims]}


def convert(saved_model: Path, keys: list[str], quantize: str, feeds: Feeds | None = None) -> bytes:
    """Convert the `keys` signatures of a SavedModel to TF Lite with float32 I/O.

    int8: full-integer kernels calibrated on `feeds`, which must yield `(signature_key, {input: one row})` for
    every signature (a signature never fed silently stays float); float16: float16 weights; dynamic: int8 weights,
    float activations; none: float.
    """
    if quantize not in QUANTIZE:
        raise PackagingError(f"unknown quantization {quantize!r}; expected one of {', '.join(QUANTIZE)}")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=list(keys))
    if quantize == "int8":
        if feeds is None:
            raise ValueError("int8 conversion needs calibration feeds")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = feeds
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
    elif quantize == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        content = bytes(conv.convert())
    except Exception as e:  # the converter raises ConverterError and friends with its log text
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Invalid signature_key" in first and quantize != "none":  # calibration fed a signature it dropped
            convert(saved_model, keys, "none")  # raises the clear error below
        raise PackagingError(f"TF Lite conversion ({quantize}) failed: {first}") from None
    kept = set(checks.interpreter(content).get_signature_list())
    dropped = sorted(set(keys) - kept)
    if dropped:
        raise PackagingError(
            f"the TF Lite converter dropped signature(s) {dropped} of this SavedModel (it kept {sorted(kept)}): "
            "keep the others with --signatures, or export every signature with keras.export.ExportArchive"
        )
    return content
