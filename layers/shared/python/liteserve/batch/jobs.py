"""The batch pipeline: plan a dropped file into shard messages, run one shard, settle a dead shard, finalize a job.

Plain Python over the adapters in `storage`, so every step can be driven by a handler, a test or a benchmark.
Guarantees: every valid key appears exactly once in the output whatever is retried or duplicated, because
(1) planning is deterministic for an ETag, (2) a part is the same object with the same bytes on every retry,
(3) a shard is counted once by a conditional update, and (4) only the update that completes the count (or a
retry that finds the job complete) finalizes, and only one finalizer can move the job out of RUNNING.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from liteserve.batch.plan import KeyLedger, Shard, cut_shards, read_header
from liteserve.batch.records import RowFormat
from liteserve.batch.storage import EventBus, Job, JobStore, ObjectStore, ResultsCache, ShardQueue
from liteserve.errors import LiteserveError
from liteserve.evaluation.records import batch_object
from liteserve.protocols.tfserving import instance_objects
from liteserve.runtime import Model, ModelRepository

SUFFIXES = {".jsonl": ("jsonl", False), ".jsonl.gz": ("jsonl", True), ".csv": ("csv", False), ".csv.gz": ("csv", True)}
MAX_INLINE_DUPLICATES = 2000  # beyond this a shard's duplicate list travels as an S3 object, not in the message
INFER_BATCH = 2048  # rows per interpreter call: bounds worker memory, large enough to amortize the call


class PlanningError(ValueError):
    """The file cannot be planned at all (unsupported type, bad header, bad options): the job fails with it."""


@dataclass(frozen=True)
class BatchConfig:
    """Names and sizes from the function's environment (see template.yaml)."""

    bucket: str
    jobs_table: str
    queue_url: str = ""
    cache_table: str = ""
    event_bus: str = "default"
    shard_bytes: int = 4 * 1024 * 1024
    max_decompressed_bytes: int = 2 * 1024**3
    default_model: str = "digits"
    key_field: str = "key"

    @classmethod
    def from_env(cls) -> BatchConfig:
        """Read LITESERVE_* variables set by the template."""
        env = os.environ
        return cls(
            bucket=env["LITESERVE_BUCKET"],
            jobs_table=env["LITESERVE_JOBS_TABLE"],
            queue_url=env.get("LITESERVE_SHARD_QUEUE_URL", ""),
            cache_table=env.get("LITESERVE_CACHE_TABLE", ""),
            event_bus=env.get("LITESERVE_EVENT_BUS", "default"),
            shard_bytes=int(env.get("LITESERVE_SHARD_BYTES", 4 * 1024 * 1024)),
            max_decompressed_bytes=int(env.get("LITESERVE_MAX_DECOMPRESSED_BYTES", 2 * 1024**3)),
            default_model=env.get("LITESERVE_DEFAULT_MODEL", "digits"),
            key_field=env.get("LITESERVE_KEY_FIELD", "key"),
        )


@dataclass(frozen=True)
class JobOptions:
    """Per-job options, from the object's user metadata (x-amz-meta-*)."""

    model: str
    signature: str = "serving_default"
    key_field: str = "key"
    input_field: str = "x"
    ordered: bool = False
    cache: bool = False
    force: bool = False

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], config: BatchConfig) -> JobOptions:
        """S3 lower-cases metadata names; booleans are 'true'/'false'."""
        known = {"model", "signature", "key-field", "input-field", "ordered", "cache", "force"}
        unknown = sorted(set(metadata) - known)
        if unknown:
            raise PlanningError(f"unknown job option(s) {unknown}; known: {sorted(known)}")
        flags = {}
        for name in ("ordered", "cache", "force"):
            value = metadata.get(name, "false").lower()
            if value not in ("true", "false"):
                raise PlanningError(f"job option '{name}' must be true or false, got {value!r}")
            flags[name] = value == "true"
        return cls(
            model=metadata.get("model", config.default_model),
            signature=metadata.get("signature", "serving_default"),
            key_field=metadata.get("key-field", config.key_field),
            input_field=metadata.get("input-field", "x"),
            **flags,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (kept on the job and in every shard message)."""
        return dict(self.__dict__)


def job_id_for(source_key: str) -> tuple[str, str, bool]:
    """`incoming/a/b.jsonl.gz` -> ('a/b', 'jsonl', gzipped). PlanningError for another suffix."""
    name = source_key.removeprefix("incoming/")
    for suffix, (kind, gz) in sorted(SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], kind, gz
    raise PlanningError(f"{source_key}: unsupported file type; use {', '.join(SUFFIXES)}")


def results_prefix(job_id: str) -> str:
    """Where a job's outputs go."""
    return f"results/{job_id}/"


@dataclass
class Pipeline:
    """The batch steps, bound to their adapters."""

    config: BatchConfig
    models: ModelRepository | None = None
    store: ObjectStore = field(init=False)
    jobs: JobStore = field(init=False)
    queue: ShardQueue = field(init=False)
    bus: EventBus = field(init=False)
    cache: ResultsCache | None = field(init=False)

    def __post_init__(self) -> None:
        self.store = ObjectStore(self.config.bucket)
        self.jobs = JobStore(self.config.jobs_table)
        self.queue = ShardQueue(self.config.queue_url)
        self.bus = EventBus(self.config.event_bus)
        self.cache = ResultsCache(self.config.cache_table) if self.config.cache_table else None

    # ------------------------------------------------------------------ split
    def split(self, source_key: str) -> dict[str, Any]:
        """Plan a dropped file: record the job, send one message per shard. Returns a summary."""
        try:
            job_id, kind, gz = job_id_for(source_key)
        except PlanningError as err:
            return {"skipped": source_key, "reason": str(err)}  # not a job: nothing to record it under
        head = self.store.head(source_key)
        etag = head["etag"]
        try:
            options = JobOptions.from_metadata(head["metadata"], self.config)
            model = self._model(options.model)
            sig = model.signature(options.signature)
        except PlanningError as err:
            return self._refuse(job_id, etag, source_key, {}, str(err))
        except LiteserveError as err:  # unknown model or signature
            return self._refuse(job_id, etag, source_key, {}, err.message)
        started, previous = self.jobs.begin(
            job_id, etag, source_key, options.as_dict(), model.version, force=options.force
        )
        if not started:
            return {"job_id": job_id, "duplicate": True}
        if previous is not None and (previous != etag or options.force):
            # A new file under the same job name (or a forced rerun): the old run's outputs must not mix in.
            self.store.delete_prefix(results_prefix(job_id))
        try:
            shards = self._plan(source_key, job_id, etag, kind, gz, options, sig)
        except PlanningError as err:
            return self._refuse(job_id, etag, source_key, options.as_dict(), str(err), begun=True)
        job = self.jobs.planned(job_id, etag, len(shards))
        if job is not None and job.complete:  # every worker finished before planning did
            self.finalize(job_id, etag)
        return {"job_id": job_id, "etag": etag, "shards": len(shards)}

    def _plan(
        self, source_key: str, job_id: str, etag: str, kind: str, gz: bool, options: JobOptions, sig: Any
    ) -> list[dict[str, Any]]:
        # The cap guards against gzip bombs; a plain file is read as it is stored, whatever its size.
        cap = self.config.max_decompressed_bytes if gz else None
        chunks = self.store.stream(source_key, gunzip=gz, max_bytes=cap)
        header: tuple[str, ...] | None = None
        offset, first_line = 0, 1
        spec = next(iter(sig.inputs.values()))
        try:
            if kind == "csv":
                head_line, rest = read_header(chunks)
                header = tuple(c.strip() for c in next(csv.reader([head_line.decode("utf-8", "replace").strip()]), []))
                if options.key_field not in header:
                    raise PlanningError(f"CSV header has no key column '{options.key_field}': {list(header)[:8]}")
                if len(header) - 1 != spec.feature_shape[0]:
                    raise PlanningError(
                        f"CSV header has {len(header) - 1} feature columns; the model takes {spec.feature_shape[0]}"
                    )
                chunks = _prepend(rest, chunks)
                offset, first_line = len(head_line), 2
            fmt = RowFormat(kind, options.key_field, options.input_field, header)
            ledger = KeyLedger()
            messages: list[dict[str, Any]] = []
            for shard in cut_shards(chunks, self.config.shard_bytes, offset=offset, first_line=first_line):
                ledger.scan(shard, fmt, spec)
                messages.append(self._shard_message(job_id, etag, source_key, gz, shard, fmt, options))
                if len(messages) % 10 == 0:  # workers start while the rest is still being planned
                    self.queue.send(messages[-10:])
        except (ValueError, EOFError, OSError) as err:  # gzip errors, decompression bomb, undecodable header
            raise PlanningError(f"{source_key}: {err}") from err
        self.queue.send(messages[len(messages) - len(messages) % 10 :])
        return messages

    def _shard_message(
        self, job_id: str, etag: str, source_key: str, gz: bool, shard: Shard, fmt: RowFormat, options: JobOptions
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "job_id": job_id,
            "etag": etag,
            "shard": shard.index,
            "first_line": shard.first_line,
            "format": fmt.kind,
            "header": list(fmt.header) if fmt.header else None,
            "options": options.as_dict(),
        }
        if gz:  # a gzip stream cannot be read from the middle: the planner stages the shard uncompressed
            staged = f"staging/{job_id}/{etag}/shard-{shard.index:05d}"
            self.store.put(staged, shard.data)
            message.update(object=staged, range=None)
        else:
            message.update(object=source_key, range=[shard.start, shard.end])
        duplicates = [[line, first] for line, first in sorted(shard.duplicates.items())]
        if len(duplicates) > MAX_INLINE_DUPLICATES:
            staged = f"staging/{job_id}/{etag}/duplicates-{shard.index:05d}.json"
            self.store.put(staged, orjson.dumps(duplicates), "application/json")
            message["duplicates_object"] = staged
        else:
            message["duplicates"] = duplicates
        return message

    def _refuse(
        self, job_id: str, etag: str, source_key: str, options: dict[str, Any], reason: str, begun: bool = False
    ) -> dict[str, Any]:
        if not begun and not self.jobs.begin(job_id, etag, source_key, options, "")[0]:
            return {"job_id": job_id, "duplicate": True}
        self.jobs.fail_planning(job_id, etag, reason)
        self.store.put(
            results_prefix(job_id) + "_FAILED",
            orjson.dumps(
                {"job_id": job_id, "source": source_key, "etag": etag, "state": "FAILED", "reasons": [reason]},
                option=orjson.OPT_INDENT_2,
            ),
            "application/json",
        )
        self.bus.put("BatchJobCompleted", {"job_id": job_id, "state": "FAILED", "reasons": [reason]})
        return {"job_id": job_id, "failed": reason}

    def _model(self, name: str) -> Model:
        if self.models is None:
            raise RuntimeError("this pipeline was built without models")
        return self.models.get(name)

    # ------------------------------------------------------------------ worker
    def run_shard(self, message: dict[str, Any]) -> dict[str, Any]:
        """Predict one shard and write its part (and error part); count it once; finalize if it was the last."""
        started = time.perf_counter()
        job_id, etag, index = message["job_id"], message["etag"], int(message["shard"])
        job = self.jobs.get(job_id)
        if job is None or job.etag != etag or job.state not in ("PLANNING", "RUNNING"):
            # superseded by a newer drop of the file, or a job whose planning failed part-way
            return {"job_id": job_id, "shard": index, "stale": True}
        if index in job.done or index in job.failed:
            self._finalize_if_complete(job)  # a redelivery after a finalizer crashed must still finish the job
            return {"job_id": job_id, "shard": index, "duplicate": True}
        options = message["options"]
        model = self._model(options["model"])
        sig = model.signature(options["signature"])
        spec = next(iter(sig.inputs.values()))
        byte_range = tuple(message["range"]) if message.get("range") else None
        data = self.store.read(message["object"], byte_range)  # type: ignore[arg-type]
        fmt = RowFormat(
            message["format"],
            options["key_field"],
            options["input_field"],
            tuple(message["header"]) if message.get("header") else None,
        )
        rows, values = fmt.parse(data, int(message["first_line"]), spec)
        duplicates = message.get("duplicates")
        if duplicates is None:
            duplicates = orjson.loads(self.store.read(message["duplicates_object"]))
        keep = np.ones(len(rows.lines), dtype=bool)
        if duplicates:
            first_of = {int(line): int(first) for line, first in duplicates}
            positions = {line: i for i, line in enumerate(rows.lines)}
            keep[[positions[line] for line in first_of if line in positions]] = False
            rows.drop({line: f"key repeats line {first}" for line, first in first_of.items() if line in positions})
            values = values[keep]
        predicted = self._predict(model, sig.name, spec.name, values)
        part = self._part_lines(rows.keys, predicted, options["key_field"], model.version)
        prefix = results_prefix(job_id)
        self.store.put(f"{prefix}part-{index:05d}.jsonl", part)
        if rows.keys:  # the prediction log's batch records (continued evaluation); same name and bytes on a retry
            self.store.put(
                *batch_object(
                    job_id, index, job.created_at, model.name, model.version, sig.name, rows.keys, values, predicted
                ),
                "application/gzip",
            )
        if rows.errors:
            self.store.put(
                f"{prefix}errors/part-{index:05d}.jsonl", b"".join(orjson.dumps(e) + b"\n" for e in rows.errors)
            )
        if options.get("cache") and self.cache is not None and rows.keys:
            self.cache.put_many(
                list(zip(rows.keys, [job_id] * len(rows.keys), part.decode().splitlines(), strict=True))
            )
        counts = {
            "rows_in": len(rows.lines) + len(rows.errors),
            "rows_predicted": len(rows.lines),
            "rows_rejected": len(rows.errors),
        }
        job = self.jobs.shard_done(job_id, etag, index, counts, time.perf_counter() - started)
        if job is None:  # counted by a concurrent delivery of the same shard; its part is byte-identical
            job = self.jobs.get(job_id)
        if job is not None:
            self._finalize_if_complete(job)
        return {"job_id": job_id, "shard": index, **counts}

    @staticmethod
    def _predict(model: Model, signature: str, input_name: str, values: np.ndarray) -> dict[str, np.ndarray]:
        if len(values) == 0:
            return {}
        pieces = [
            model.predict(signature, {input_name: values[i : i + INFER_BATCH]})
            for i in range(0, len(values), INFER_BATCH)
        ]
        return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}

    @staticmethod
    def _part_lines(keys: list, outputs: dict[str, np.ndarray], key_field: str, version: str) -> bytes:
        if not keys:
            return b""
        objects = instance_objects(outputs, keys, key_field)
        option = orjson.OPT_SERIALIZE_NUMPY
        out = bytearray()
        for obj in objects:
            obj["model_version"] = version
            out += orjson.dumps(obj, option=option)
            out += b"\n"
        return bytes(out)

    # ------------------------------------------------------------------ dead shards and finalize
    def shard_dead(self, message: dict[str, Any]) -> None:
        """A shard message that exhausted its retries (DLQ): record the shard as failed, finalize if last."""
        job = self.jobs.shard_failed(message["job_id"], message["etag"], int(message["shard"]))
        if job is not None:
            self._finalize_if_complete(job)

    def _finalize_if_complete(self, job: Job) -> None:
        if job.complete and job.state == "RUNNING":
            self.finalize(job.job_id, job.etag)

    def finalize(self, job_id: str, etag: str) -> Job | None:
        """Write _SUCCESS or _FAILED (and the ordered file if asked), emit BatchJobCompleted. Idempotent."""
        job = self.jobs.get(job_id)
        if job is None or job.etag != etag or not job.complete or job.state != "RUNNING":
            return job
        prefix = results_prefix(job_id)
        parts = [f"{prefix}part-{i:05d}.jsonl" for i in range(job.shards_total or 0) if i in job.done]
        if job.options.get("ordered") and not job.failed:
            # Shards are in line order and parts keep line order, so concatenation is input order.
            self.store.put(f"{prefix}ordered.jsonl", b"".join(self.store.read(p) for p in parts))
        state = "FAILED" if job.failed else "SUCCEEDED"
        reasons = [f"shard {i} failed after its retries (see the shard DLQ)" for i in sorted(job.failed)]
        manifest = self.describe(job, state=state, reasons=reasons)
        marker = "_FAILED" if job.failed else "_SUCCESS"
        self.store.put(prefix + marker, orjson.dumps(manifest, option=orjson.OPT_INDENT_2), "application/json")
        # At-least-once: the event goes out before the state flips, so a crash here repeats it rather than loses it.
        self.bus.put("BatchJobCompleted", {k: manifest[k] for k in ("job_id", "state", "counts", "output")})
        return self.jobs.finish(job_id, etag, state, "; ".join(reasons))

    def describe(self, job: Job, state: str | None = None, reasons: list[str] | None = None) -> dict[str, Any]:
        """The job as users see it (status API, _SUCCESS/_FAILED manifest)."""
        prefix = f"s3://{self.config.bucket}/{results_prefix(job.job_id)}"
        finished = job.finished_at or (time.time() if state else None)
        return {
            "job_id": job.job_id,
            "state": state or job.state,
            "source": f"s3://{self.config.bucket}/{job.source}",
            "etag": job.etag,
            "model": job.options.get("model"),
            "signature": job.options.get("signature"),
            "model_version": job.model_version,
            "shards": {"total": job.shards_total, "done": len(job.done), "failed": sorted(job.failed)},
            "counts": job.counts,
            "output": {
                "parts": prefix + "part-*.jsonl",
                "errors": prefix + "errors/part-*.jsonl",
                **({"ordered": prefix + "ordered.jsonl"} if job.options.get("ordered") else {}),
            },
            "timings": {
                "created_at": job.created_at,
                "planned_at": job.planned_at,
                "finished_at": finished,
                "elapsed_s": round(finished - job.created_at, 3) if finished else None,
                "worker_seconds": round(job.worker_seconds, 3),
            },
            "reasons": reasons if reasons is not None else ([job.reason] if job.reason else []),
        }


def _prepend(first: bytes, rest: Any) -> Any:
    if first:
        yield first
    yield from rest
