"""The model manifest written by training next to each `.tflite` file (see training/)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from liteserve.manifest_schema import SERVING_FIELDS, check

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a signature: numpy dtype name and shape (-1 = batch dimension)."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one instance (the shape without the batch dimension)."""
        return self.shape[1:]

    # Cached per spec: building dtypes and their limits on every request showed up in warm latency.
    @cached_property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype."""
        return np.dtype(self.dtype)

    @cached_property
    def limits(self) -> tuple[float, float]:
        """Smallest and largest value the dtype holds."""
        info = np.finfo(self.np_dtype) if self.np_dtype.kind == "f" else np.iinfo(self.np_dtype)
        return float(info.min), float(info.max)


@dataclass(frozen=True)
class SignatureSpec:
    """A signature's named inputs and outputs, in manifest order."""

    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


@dataclass(frozen=True)
class Manifest:
    """What serving needs from manifest.json; the full document stays available as `raw`."""

    name: str
    version: str
    file: str
    sha256: str
    signatures: dict[str, SignatureSpec]
    labels: list[str]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read and parse a manifest.json file."""
        data = Path(path).read_bytes()
        try:  # orjson: a cold start reads every model's ~40 KB manifest, ~3x faster than the json module
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:  # NaN or Infinity, which Python's json writes and reads but orjson refuses
            raw = json.loads(data)
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        """Parse an already-decoded manifest document; InvalidManifest names a field serving cannot use."""
        check(raw, SERVING_FIELDS)
        signatures = {
            sig_name: SignatureSpec(
                name=sig_name,
                inputs={n: TensorSpec(n, t["dtype"], tuple(t["shape"])) for n, t in sig["inputs"].items()},
                outputs={n: TensorSpec(n, t["dtype"], tuple(t["shape"])) for n, t in sig["outputs"].items()},
            )
            for sig_name, sig in raw["signatures"].items()
        }
        return cls(
            name=raw["name"],
            version=str(raw["version"]),
            file=raw.get("file", "model.tflite"),
            sha256=raw.get("sha256", ""),
            signatures=signatures,
            labels=list(raw.get("labels", [])),
            raw=raw,
        )

    @cached_property
    def feature_names(self) -> dict[str, list[str]]:
        """Feature names by input name, where the manifest records them: the single flat input's `feature_names`
        (`training_stats.input`, else the task signature's only input), and each flat input's baseline features."""
        out: dict[str, list[str]] = {}
        for name, stats in ((self.raw.get("baseline") or {}).get("inputs") or {}).items():
            features = stats.get("features") if isinstance(stats, dict) else None
            if isinstance(features, list) and all(isinstance(f, dict) and "name" in f for f in features):
                out[name] = [str(f["name"]) for f in features]
        names = self.raw.get("feature_names")
        if isinstance(names, list):
            single = (self.raw.get("training_stats") or {}).get("input")
            if single is None:
                sig = self.signatures.get((self.raw.get("task") or {}).get("signature") or "serving_default")
                single = next(iter(sig.inputs)) if sig is not None and len(sig.inputs) == 1 else None
            if single is not None:
                out[single] = [str(n) for n in names]
        return out

    def signature(self, name: str | None) -> SignatureSpec:
        """Signature `name` (default `serving_default`); KeyError when the manifest has no such signature."""
        return self.signatures[name or DEFAULT_SIGNATURE]

    @property
    def manifest(self) -> Manifest:
        """Itself: a manifest is the `ManifestSource` that decodes its model's logged requests (no interpreter)."""
        return self


class SignatureSource(Protocol):
    """What a protocol codec sees of a model: its name, its version and its signatures by name, never the
    interpreter. `runtime.Model` is one (an unknown signature is the client's BadRequest, naming the available ones),
    and so is a `Manifest` (an unknown signature is a KeyError)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def signature(self, name: str | None) -> SignatureSpec: ...


class ManifestSource(SignatureSource, Protocol):
    """A signature source with its whole manifest (every signature, the class labels, the task): what the metadata
    documents and the `class_label` output read (`protocols.labels`)."""

    @property
    def manifest(self) -> Manifest: ...
