"""The model registry in S3: candidates under `models/<name>/<version>/`, the live routing record
`models/<name>/live.json`, and every promotion decision appended to `models/<name>/<version>/promotion.json`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from botocore.exceptions import ClientError

from liteserve.adapters import ObjectStore
from liteserve.manifest import Manifest
from liteserve.records import record_inputs
from liteserve.times import iso

MODEL_FILES = ("model.tflite", "manifest.json")


def prefix(model: str, version: str | None = None) -> str:
    """`models/<name>/` or `models/<name>/<version>/`."""
    return f"models/{model}/" if version is None else f"models/{model}/{version}/"


class Registry:
    """Reads and writes one bucket's `models/` tree."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def _json(self, key: str) -> Any:
        try:
            return orjson.loads(self.store.read(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def manifest(self, model: str, version: str) -> Manifest | None:
        """A registered version's manifest, or None."""
        raw = self._json(prefix(model, version) + "manifest.json")
        return Manifest.from_dict(raw) if raw is not None else None

    def manifest_dict(self, model: str, version: str) -> dict[str, Any] | None:
        """A registered version's manifest as stored (with metrics and lineage), or None."""
        return self._json(prefix(model, version) + "manifest.json")

    def download(self, model: str, version: str, target: Path) -> Path:
        """Write the version's model files to `target/<model>/` (a folder `liteserve.runtime.Model` loads)."""
        out = target / model
        out.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            (out / name).write_bytes(self.store.read(prefix(model, version) + name))
        return out

    def holdout(
        self, model: str, version: str, input_names: list[str]
    ) -> tuple[list[str], dict[str, np.ndarray], list[str]]:
        """The candidate's recent labelled holdout: keys, float32 batches by input name and labels. Rows carry
        their inputs as prediction records do (`inputs` by name, or a legacy single `x`)."""
        keys, labels = [], []
        columns: dict[str, list] = {name: [] for name in input_names}
        for line in self.store.read(prefix(model, version) + "holdout.jsonl").splitlines():
            if line.strip():
                row = orjson.loads(line)
                keys.append(str(row["key"]))
                inputs = record_inputs(row, input_names)
                for name in input_names:
                    columns[name].append(inputs[name])
                labels.append(str(row["label"]))
        return keys, {name: np.asarray(col, dtype=np.float32) for name, col in columns.items()}, labels

    def live(self, model: str) -> dict[str, Any] | None:
        """The routing record written by the last promotion step (None before any promotion)."""
        return self._json(prefix(model) + "live.json")

    def set_live(self, model: str, record: dict[str, Any]) -> None:
        """Replace the routing record."""
        record = {**record, "model": model, "updated_at": iso(time.time())}
        body = orjson.dumps(record, option=orjson.OPT_INDENT_2)
        self.store.put(prefix(model) + "live.json", body, "application/json")

    def events(self, model: str, version: str) -> list[dict[str, Any]]:
        """The decisions recorded for a version so far (oldest first)."""
        return (self._json(prefix(model, version) + "promotion.json") or {}).get("events", [])

    def record(self, model: str, version: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one decision (gate, canary, promote, rollback, reject) to the version's promotion.json."""
        key = prefix(model, version) + "promotion.json"
        doc = self._json(key) or {"model": model, "version": version, "events": []}
        entry = {"at": iso(time.time()), **entry}
        doc["events"].append(entry)
        self.store.put(key, orjson.dumps(doc, option=orjson.OPT_INDENT_2), "application/json")
        return entry
