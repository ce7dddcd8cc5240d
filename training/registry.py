"""The candidate side of the model registry in S3 (`models/<name>/<version>/`), TensorFlow-free.

A retraining claims its version by creating `claim.json` (the request and its window id) with a conditional put, so
two builds never take the same number, then writes the artifacts and `manifest.json` last: a version with a
manifest is complete. `plan` decides what a run does from what the registry holds (pure, unit-tested).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import boto3
import orjson
from botocore.exceptions import ClientError
from liteserve.registry import prefix  # one layout for the job that writes and the gate that reads

CLAIM_FILE = "claim.json"
MANIFEST_FILE = "manifest.json"
# Upload order: the manifest (the completion marker) goes last.
ARTIFACTS = ("model.tflite", "float.tflite", "metrics.json", "holdout.jsonl", MANIFEST_FILE)
_LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


@dataclass(frozen=True)
class Entry:
    """One version folder of the registry: the window id it was claimed for (None: not a retraining's claim, e.g.
    a version copied in by hand) and whether its manifest is written."""

    version: str
    window_id: str | None
    complete: bool


@dataclass(frozen=True)
class Plan:
    """What a run does: `exists` (a complete candidate for this window: nothing to do), `resume` (this window's
    claimed but unfinished version: build it again under the same number) or `create` (claim a new version)."""

    action: Literal["exists", "resume", "create"]
    version: str


def next_version(parent: str | None, existing: Iterable[str]) -> str:
    """The next integer after the parent and every integer version already in the registry."""
    numbers = [int(v) for v in [parent, *existing] if v is not None and str(v).isdigit()]
    return str(max(numbers, default=0) + 1)


def plan(entries: Iterable[Entry], window_id: str, parent: str | None) -> Plan:
    """Decide from the registry's entries what a run for `window_id` does (see `Plan`)."""
    entries = list(entries)
    mine = sorted((e for e in entries if e.window_id == window_id), key=lambda e: _order(e.version))
    done = [e for e in mine if e.complete]
    if done:
        return Plan("exists", done[0].version)
    if mine:
        return Plan("resume", mine[0].version)
    return Plan("create", next_version(parent, (e.version for e in entries)))


def _order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (10**18, version)


def group_versions(keys: Iterable[str], model: str) -> dict[str, set[str]]:
    """Object keys under `models/<model>/` -> {version: file names}; objects not in a version folder (the live
    routing record) are ignored."""
    root = prefix(model)
    out: dict[str, set[str]] = {}
    for key in keys:
        if not key.startswith(root):
            continue
        parts = key[len(root) :].split("/", 1)
        if len(parts) == 2 and parts[0] and parts[1]:
            out.setdefault(parts[0], set()).add(parts[1])
    return out


class CandidateRegistry:
    """`models/<model>/` in one bucket, as the retraining job reads and writes it."""

    def __init__(self, bucket: str, model: str) -> None:
        self.bucket = bucket
        self.model = model

    @cached_property
    def _s3(self) -> Any:
        return boto3.client("s3")

    def uri(self, version: str) -> str:
        """`s3://<bucket>/models/<model>/<version>/`."""
        return f"s3://{self.bucket}/{prefix(self.model, version)}"

    def _keys(self) -> list[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix(self.model))
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def read_json(self, version: str, name: str) -> Any:
        """A JSON file of a version, or None when absent."""
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=prefix(self.model, version) + name)["Body"].read()
        except ClientError as err:
            if err.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return orjson.loads(body)

    def read_bytes(self, version: str, name: str) -> bytes:
        """A file of a version (ClientError when absent)."""
        return self._s3.get_object(Bucket=self.bucket, Key=prefix(self.model, version) + name)["Body"].read()

    def entries(self) -> list[Entry]:
        """Every version folder with its claim's window id and completeness."""
        out = []
        for version, files in sorted(group_versions(self._keys(), self.model).items()):
            claim = self.read_json(version, CLAIM_FILE) if CLAIM_FILE in files else None
            window_id = claim.get("window_id") if isinstance(claim, dict) else None
            out.append(Entry(version, window_id, MANIFEST_FILE in files))
        return out

    def claim(self, version: str, claim: dict[str, Any]) -> bool:
        """Create the version's claim unless the object exists (S3 conditional write); False if another run won."""
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=prefix(self.model, version) + CLAIM_FILE,
                Body=orjson.dumps(claim, option=orjson.OPT_INDENT_2),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] in _LOST_RACE:
                return False
            raise
        return True

    def write(self, version: str, files: dict[str, bytes]) -> None:
        """Upload a candidate's files, `manifest.json` last."""
        names = [n for n in ARTIFACTS if n in files] + sorted(set(files) - set(ARTIFACTS))
        names.sort(key=lambda n: n == MANIFEST_FILE)
        for name in names:
            content_type = "application/json" if name.endswith(".json") else "application/octet-stream"
            if name.endswith(".jsonl"):
                content_type = "application/x-ndjson"
            self._s3.put_object(
                Bucket=self.bucket, Key=prefix(self.model, version) + name, Body=files[name], ContentType=content_type
            )
