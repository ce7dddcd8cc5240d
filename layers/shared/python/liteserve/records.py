"""The one prediction-record format, written by the batch workers and read by the evaluation and the retraining:
per-key records `{key, time, model, version, signature, source, inputs, outputs}`.

`inputs` maps each of the signature's input names to this instance's value (a number or nested list); `outputs`
each returned output's. Records
written before multi-input support carry `x` (the signature's only input) instead; read any record's inputs with
`record_inputs`.

Online records come from prediction-log lines (`liteserve.predlog`), decoded with the same protocol codecs that
served them; batch records are written by the batch worker, one gzip JSONL object per shard, already per key.
"""

from __future__ import annotations

import gzip
import time as _time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from liteserve.manifest import DEFAULT_SIGNATURE, Manifest
from liteserve.predlog import INSTANCE_KIND, REJECTED_KIND
from liteserve.protocols import tfserving, v2

ONLINE_PREFIX = "predictions/online/"
BATCH_PREFIX = "predictions/batch/"
_NO_LIMIT = 10**9


class Signatures:
    """Signature specs by model name, read from the manifests under a model root (the model layer)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._manifests: dict[str, Manifest | None] = {}

    def manifest(self, model: str) -> Manifest | None:
        """The manifest of `model`, or None when the layer has no such model."""
        if model not in self._manifests:
            path = self.root / model / "manifest.json"
            self._manifests[model] = Manifest.load(path) if path.is_file() else None
        return self._manifests[model]


def record_inputs(record: dict[str, Any], input_names: Sequence[str]) -> dict[str, Any]:
    """The record's inputs by name: its `inputs`, or a legacy `x` under the signature's only input name.

    Raises ValueError when the record has neither, or a legacy `x` for a signature with several inputs."""
    inputs = record.get("inputs")
    if isinstance(inputs, dict):
        return inputs
    if "x" in record:
        if len(input_names) != 1:
            raise ValueError(f"record has one input `x` but the signature has {len(input_names)}: {list(input_names)}")
        return {input_names[0]: record["x"]}
    raise ValueError("record has no inputs")


def latest_per_key(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per key (the latest); unkeyed records are all kept (they still count for drift)."""
    keyed: dict[str, dict[str, Any]] = {}
    unkeyed = []
    for rec in records:
        if rec.get("key") is None:
            unkeyed.append(rec)
            continue
        key = str(rec["key"])
        if key not in keyed or (rec.get("time") or 0) >= (keyed[key].get("time") or 0):
            keyed[key] = rec
    return [*keyed.values(), *unkeyed]


def parse_line(line: str | bytes, signatures: Signatures, key_field: str = "key") -> list[dict[str, Any]]:
    """Records of one prediction-log line; [] for a line that is not a prediction record.

    Raises ValueError for a prediction line that cannot be decoded (unknown model, malformed body)."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(doc, dict):
        return []
    kind = doc.get("liteserve")
    base = {
        "time": doc.get("time"),
        "model": doc.get("model"),
        "version": doc.get("version"),
        "signature": doc.get("signature"),
        "source": "online",
        "request_id": doc.get("request_id"),
    }
    if kind == INSTANCE_KIND:
        inputs = doc["inputs"] if "inputs" in doc else _legacy_inputs(doc, signatures)
        return [{"key": doc.get("key"), **base, "inputs": inputs, "outputs": doc["outputs"]}]
    if kind == REJECTED_KIND:  # a refused request: counted by the data-quality checks, never a prediction
        return [{**base, "rejected": True, "request_id": doc.get("request_id"), "status": doc.get("status")}]
    if kind != "prediction":
        return []
    source = signatures.manifest(doc["model"])  # the codecs' signature source: no interpreter to decode a request
    if source is None:
        raise ValueError(f"model {doc['model']!r} is not in the model layer: cannot decode its request")
    if doc["protocol"] == "v2":
        call = v2.decode_infer(doc["request"], source, key_field=key_field, max_instances=_NO_LIMIT, check_bools=False)
        outputs = _v2_outputs(doc["response"], key_field)
        keys = call.keys
    else:
        call = tfserving.decode_predict(
            doc["request"], source, key_field=key_field, max_instances=_NO_LIMIT, check_bools=False
        )
        keys = call.keys
        outputs = _tfserving_outputs(doc["response"], call.output_names)
    columns = {name: arr.tolist() for name, arr in call.inputs.items()}
    n = len(next(iter(columns.values())))
    keys = keys if keys is not None else [None] * n
    return [
        {
            "key": keys[i],
            **base,
            "inputs": {name: col[i] for name, col in columns.items()},
            "outputs": {name: col[i] for name, col in outputs.items()},
        }
        for i in range(n)
    ]


def _legacy_inputs(doc: dict[str, Any], signatures: Signatures) -> dict[str, Any]:
    """A `prediction.instance` line written before multi-input support: its `x` under the signature's input name."""
    manifest = signatures.manifest(doc.get("model") or "")
    sig = manifest.signatures.get(doc.get("signature") or DEFAULT_SIGNATURE) if manifest is not None else None
    return record_inputs(doc, list(sig.inputs) if sig is not None else ["x"])


def _tfserving_outputs(response: dict[str, Any], names: list[str]) -> dict[str, list]:
    if "predictions" in response:
        preds = response["predictions"]
        if preds and isinstance(preds[0], dict):
            return {name: [p[name] for p in preds] for name in names if name in preds[0]}
        return {names[0]: preds}
    outputs = response["outputs"]
    if isinstance(outputs, dict):
        return {name: outputs[name] for name in names if name in outputs}
    return {names[0]: outputs}


def _v2_outputs(response: dict[str, Any], key_field: str) -> dict[str, list]:
    out = {}
    for tensor in response["outputs"]:
        if tensor["name"] == key_field:
            continue
        shape = tensor["shape"]
        out[tensor["name"]] = np.asarray(tensor["data"]).reshape(shape).tolist()
    return out


def parse_lines(lines: Iterable[str | bytes], signatures: Signatures, key_field: str = "key") -> Iterator[dict]:
    """Records of every prediction line; lines that are not records are skipped, undecodable ones raise."""
    for line in lines:
        if line and line.strip():
            yield from parse_line(line, signatures, key_field)


def read_object(data: bytes, signatures: Signatures, key_field: str = "key") -> tuple[list[dict], int]:
    """Records of one stored object (gzip or not; prediction-log lines or per-key records), and bad lines."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    records: list[dict] = []
    bad = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            if line.startswith(b'{"liteserve"'):
                records.extend(parse_line(line, signatures, key_field))
            else:
                records.append(orjson.loads(line))
        except (ValueError, KeyError, TypeError, IndexError):
            bad += 1
    return records, bad


def hour_path(epoch: float) -> str:
    """`YYYY/MM/DD/HH` (UTC) of an epoch time, as Firehose's `!{timestamp:yyyy/MM/dd/HH}` writes it."""
    return _time.strftime("%Y/%m/%d/%H", _time.gmtime(epoch))


def batch_object(
    job_id: str,
    shard: int,
    created_at: float,
    model: str,
    version: str,
    signature: str,
    keys: list,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    *,
    run: int | None = None,
) -> tuple[str, bytes]:
    """(S3 key, gzip JSONL body) of one batch shard's prediction records. The name and bytes depend only on the
    job, its run and the shard, so a retried shard overwrites its object with identical content and two runs of a
    job (a re-drop) never overwrite each other's records."""
    run_part = "" if run is None else f"-run-{run:06d}"
    name = f"{BATCH_PREFIX}{hour_path(created_at)}/{quote(job_id, safe='')}{run_part}-part-{shard:05d}.jsonl.gz"
    base = {"time": round(created_at, 3), "model": model, "version": version, "signature": signature}
    option = orjson.OPT_SERIALIZE_NUMPY
    out = bytearray()
    for i, key in enumerate(keys):
        rec = {
            "key": key,
            **base,
            "source": "batch",
            "inputs": {name: arr[i] for name, arr in inputs.items()},
            "outputs": {k: v[i] for k, v in outputs.items()},
        }
        out += orjson.dumps(rec, option=option)
        out += b"\n"
    # Level 1: level 9 took ~1.2 s of every 12 000-row shard (3x the shard's parse + predict + write), for an
    # object 1.7x smaller; the batch benchmark's worker time tripled with it.
    return name, gzip.compress(bytes(out), compresslevel=1, mtime=0)
