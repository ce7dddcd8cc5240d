"""Fetch the edge model from the deployment (`GET /v1/models/{name}/artifact` + `/artifact/manifest`, or a presigned
S3 URL for the file), refusing any file whose sha256 is not the manifest's."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.parse
from pathlib import Path

from liteserve_edge.cloud import CloudClient
from liteserve_edge.model import ChecksumMismatch, sha256_hex, verify


def fetch_model(
    endpoint: str,
    name: str,
    directory: str | Path,
    *,
    artifact_url: str | None = None,
    timeout: float = 10.0,
    retries: int = 3,
    token: str | None = None,
) -> Path:
    """Download `name`'s manifest and model file into `directory` (atomically) and return the directory.

    The file must hash to the manifest's sha256 (and to the server's `x-liteserve-sha256` header when sent);
    otherwise ChecksumMismatch is raised and nothing is written. A file already present with the right hash is
    not downloaded again. `token`: the API's bearer token (default: `LITESERVE_LOCAL_TOKEN`).
    """
    directory = Path(directory)
    client = CloudClient(endpoint, name, timeout=timeout, retries=retries, token=token)
    quoted = urllib.parse.quote(name)
    raw_manifest, _ = client.request("GET", f"/v1/models/{quoted}/artifact/manifest")
    manifest = json.loads(raw_manifest)
    target = directory / manifest.get("file", "model.tflite")
    if target.exists() and sha256_hex(target.read_bytes()) == manifest.get("sha256"):
        _write(directory / "manifest.json", raw_manifest)
        return directory
    source = artifact_url or f"/v1/models/{quoted}/artifact"
    content, headers = client.request("GET", source)
    verify(content, manifest, source=source)
    announced = headers.get("x-liteserve-sha256")
    if announced and announced != manifest["sha256"]:
        raise ChecksumMismatch(f"{source}: the server announces sha256 {announced}, the manifest {manifest['sha256']}")
    # The model file first, the manifest last: a crash in between leaves a pair that fails the check on load.
    _write(target, content)
    _write(directory / "manifest.json", raw_manifest)
    return directory


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
