"""Model runner: loads an int8 `.tflite` model once and runs its signatures, serialized (the interpreter is not
thread-safe)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import numpy as np

from liteserve import settings
from liteserve.errors import BadRequest, ModelUnavailable, NotFound
from liteserve.manifest import DEFAULT_SIGNATURE, Manifest, SignatureSpec

try:  # LiteRT is what the Lambda layer ships; tflite-runtime is accepted where it is installed instead.
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover - exercised only where ai-edge-litert is absent
    from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]


class Model:
    """One loaded model: its manifest and one reusable signature runner per signature (a `ManifestSource`)."""

    def __init__(self, directory: str | Path, verify_checksum: bool = True) -> None:
        directory = Path(directory)
        self.manifest = Manifest.load(directory / "manifest.json")
        content = (directory / self.manifest.file).read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        if verify_checksum and self.manifest.sha256 and digest != self.manifest.sha256:
            raise ModelUnavailable(
                f"model {self.manifest.name}: {self.manifest.file} sha256 {digest} does not match the manifest"
            )
        self.sha256 = digest
        # num_threads=1: on Lambda's small allocations more threads only add contention.
        self._interpreter = Interpreter(model_content=content, num_threads=1)
        available = self._interpreter.get_signature_list()
        missing = sorted(set(self.manifest.signatures) - set(available))
        if missing:
            raise ModelUnavailable(f"model {self.manifest.name}: signatures {missing} are not in the .tflite file")
        self._runners = {name: self._interpreter.get_signature_runner(name) for name in self.manifest.signatures}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The model's name (its folder name in the model layer)."""
        return self.manifest.name

    @property
    def version(self) -> str:
        """The immutable version this container serves."""
        return self.manifest.version

    def signature(self, name: str | None) -> SignatureSpec:
        """The spec of signature `name` (default `serving_default`); BadRequest lists the available ones."""
        name = name or DEFAULT_SIGNATURE
        try:
            return self.manifest.signatures[name]
        except KeyError:
            available = ", ".join(sorted(self.manifest.signatures))
            raise BadRequest(f"signature_name '{name}' not found; available: {available}") from None

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch through a signature. Inputs must already be validated arrays of the right dtype."""
        runner = self._runners[signature]
        with self._lock:
            outputs = runner(**inputs)
        spec = self.manifest.signatures[signature].outputs
        return {name: outputs[name] for name in spec}  # manifest order, not the interpreter's


class ModelRepository:
    """Every model found under a root folder (`<root>/<name>/manifest.json`), loaded eagerly once."""

    def __init__(self, root: str | Path, verify_checksum: bool = True) -> None:
        self.root = Path(root)
        self._models: dict[str, Model] = {}
        for manifest in sorted(self.root.glob("*/manifest.json")):
            model = Model(manifest.parent, verify_checksum=verify_checksum)
            self._models[model.name] = model

    @property
    def names(self) -> list[str]:
        """Names of the loaded models."""
        return list(self._models)

    def get(self, name: str) -> Model:
        """The model called `name`; NotFound lists the served ones."""
        try:
            return self._models[name]
        except KeyError:
            raise NotFound(f"model '{name}' not found; served: {', '.join(self._models) or 'none'}") from None

    def __iter__(self):
        return iter(self._models.values())


@cache
def default_repository() -> ModelRepository:
    """The container-wide repository under $LITESERVE_MODEL_ROOT (default /opt/models, the model layer)."""
    return ModelRepository(os.environ.get(settings.MODEL_ROOT, "/opt/models"))
