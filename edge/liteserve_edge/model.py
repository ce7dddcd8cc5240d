"""Phase 1: the edge model, an int8 `.tflite` file run locally with the LiteRT (or TF Lite runtime) interpreter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SIGNATURE = "serving_default"


class ChecksumMismatch(Exception):
    """A model file whose sha256 is not the one its manifest names; it is never loaded nor kept."""


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise ImportError("liteserve_edge needs ai-edge-litert (or tflite-runtime) to run the edge model") from None
    return Interpreter


def sha256_hex(content: bytes) -> str:
    """Hex sha256 of `content`."""
    return hashlib.sha256(content).hexdigest()


def verify(content: bytes, manifest: dict[str, Any], source: str = "model file") -> str:
    """Return the sha256 of `content`, or raise ChecksumMismatch if the manifest names another one (or none)."""
    expected = manifest.get("sha256")
    if not expected:
        raise ChecksumMismatch(f"{source}: the manifest of '{manifest.get('name')}' carries no sha256 to check against")
    digest = sha256_hex(content)
    if digest != expected:
        raise ChecksumMismatch(f"{source}: sha256 {digest} does not match the manifest's {expected}; refused")
    return digest


class EdgeModel:
    """A loaded edge model: its manifest (with the calibration curve) and one signature runner.

    The interpreter is not thread-safe: use one EdgeModel per thread.
    """

    def __init__(self, content: bytes, manifest: dict[str, Any], signature: str = DEFAULT_SIGNATURE) -> None:
        self.sha256 = verify(content, manifest)
        self.manifest = manifest
        self.signature = signature
        spec = manifest["signatures"][signature]
        (self.input_name, input_spec), *others = spec["inputs"].items()
        if others:
            raise ValueError(f"signature '{signature}' has several inputs; the edge client handles one")
        self.n_features = int(input_spec["shape"][-1])
        if "probabilities" not in spec["outputs"]:
            raise ValueError(f"signature '{signature}' has no 'probabilities' output")
        self._interpreter = _interpreter_class()(model_content=content, num_threads=1)
        self._runner = self._interpreter.get_signature_runner(signature)

    @classmethod
    def load(cls, directory: str | Path, signature: str = DEFAULT_SIGNATURE) -> EdgeModel:
        """Load `<directory>/manifest.json` and the file it names, refusing a checksum mismatch."""
        directory = Path(directory)
        manifest = json.loads((directory / "manifest.json").read_text())
        content = (directory / manifest.get("file", "model.tflite")).read_bytes()
        return cls(content, manifest, signature)

    @property
    def name(self) -> str:
        """Model name from the manifest."""
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        """Model version from the manifest."""
        return str(self.manifest["version"])

    @property
    def labels(self) -> list[str]:
        """Class labels (index = class id)."""
        return list(self.manifest.get("labels") or [])

    @property
    def calibration(self) -> list[dict[str, Any]]:
        """The threshold -> accepted accuracy / escalation rate table measured on held-out data."""
        return list(self.manifest.get("calibration") or [])

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class ids int64 [n], confidences = max probability float64 [n]) for a float32 batch [n, features]."""
        outputs = self._runner(**{self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        probabilities = np.asarray(outputs["probabilities"], dtype=np.float64)
        classes = np.argmax(probabilities, axis=1).astype(np.int64)
        return classes, probabilities[np.arange(len(classes)), classes]
