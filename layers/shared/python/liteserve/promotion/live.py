"""The models a batch job runs: the version the live routing record names (a promoted version from the registry),
else the one the model layer ships. Online and batch then give the same answer for the same input after a promotion,
and a job keeps the version it started with (a promotion during the job changes nothing in it)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from liteserve.registry import Registry
from liteserve.runtime import Model, ModelRepository


class LiveModels:
    """`live(name)` at a job's start, `get(name, version)` for its shards; registry versions are downloaded once per
    container (checksum verified on load)."""

    def __init__(self, layer: ModelRepository, registry: Registry, cache_dir: Path | None = None) -> None:
        self.layer = layer
        self.registry = registry
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "liteserve-models"
        self._loaded: dict[tuple[str, str], Model] = {}

    def live_version(self, name: str) -> str | None:
        """The primary version of the live routing record (None before any promotion)."""
        record = self.registry.live(name)
        return str(record["primary"]["model_version"]) if record else None

    def live(self, name: str) -> Model:
        """The model the live alias serves now (its primary; a canary's share is an online experiment)."""
        return self.get(name, self.live_version(name))

    def get(self, name: str, version: str | None = None) -> Model:
        """A model at a version: the layer's when it is that version (or none is asked), else the registry's."""
        layer = self.layer.get(name)  # NotFound for a model the layer does not ship
        if version is None or version == layer.version:
            return layer
        if (name, version) not in self._loaded:
            folder = self.registry.download(name, version, self.cache_dir / version)
            self._loaded[(name, version)] = Model(folder)
        return self._loaded[(name, version)]
