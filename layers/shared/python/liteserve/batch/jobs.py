"""The batch pipeline: plan a dropped file into shard messages, run one shard, settle a dead shard, finalize a job.

Plain Python over the adapters in `storage`, so every step can be driven by a handler, a test or a benchmark.

A job is one object key under `incoming/` (its id is the key without that prefix, suffix included, so no two keys
share a job). Each (re)start of a job is a *run* with its own number, pinned to the source's ETag (and version):
every shard message, ledger update and output object carries the run, so a superseded run can neither count
nor publish, and its late writes land in its own `run-NNNNNN/` folder, which no manifest of another run lists.
Guarantees: every valid key of the run's file appears exactly once in what its `_SUCCESS` lists, whatever is
retried, duplicated, re-dropped or replaced meanwhile, because (1) planning is deterministic for a pinned source,
(2) a part is the same object with the same bytes on every retry of its run, (3) a shard is counted once by a
conditional update on its run, and (4) only the update that completes the count finalizes, and only one
finalizer can move the run out of RUNNING.
"""

from __future__ import annotations

import csv
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson
from botocore.exceptions import ClientError

from liteserve import settings
from liteserve.adapters import EventBus, ObjectStore, Pin, SourceChanged
from liteserve.batch.plan import KeyLedger, Shard, cut_shards, read_header
from liteserve.batch.ports import Cache, JobLedger, Shards
from liteserve.batch.records import RowFormat, csv_columns, input_fields
from liteserve.batch.storage import Job, JobStore, ResultsCache, ShardQueue
from liteserve.errors import LiteserveError
from liteserve.lines import line_too_long
from liteserve.ports import Events, Objects
from liteserve.protocols.tfserving import instance_objects
from liteserve.records import batch_object

if TYPE_CHECKING:  # the handler passes the models in: the batch API's reads import no interpreter
    from liteserve.runtime import Model, ModelRepository

SUFFIXES = {".jsonl": ("jsonl", False), ".jsonl.gz": ("jsonl", True), ".csv": ("csv", False), ".csv.gz": ("csv", True)}
MAX_INLINE_DUPLICATES = 2000  # beyond this a shard's duplicate list travels as an S3 object, not in the message
INFER_BATCH = 2048  # rows per interpreter call: bounds worker memory, large enough to amortize the call


class VersionedModels(Protocol):
    """Models by version, with the live one (liteserve.promotion.live.LiveModels)."""

    def live(self, name: str) -> Model: ...

    def get(self, name: str, version: str | None = None) -> Model: ...


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
    cache_ttl_seconds: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls) -> BatchConfig:
        """Read LITESERVE_* variables set by the template."""
        env = os.environ
        return cls(
            bucket=env[settings.BUCKET],
            jobs_table=env[settings.JOBS_TABLE],
            queue_url=env.get(settings.SHARD_QUEUE_URL, ""),
            cache_table=env.get(settings.CACHE_TABLE, ""),
            event_bus=env.get(settings.EVENT_BUS, "default"),
            shard_bytes=int(env.get(settings.SHARD_BYTES, 4 * 1024 * 1024)),
            max_decompressed_bytes=int(env.get(settings.MAX_DECOMPRESSED_BYTES, 2 * 1024**3)),
            default_model=env.get(settings.DEFAULT_MODEL, "digits"),
            key_field=env.get(settings.KEY_FIELD, "key"),
            cache_ttl_seconds=int(env.get(settings.CACHE_TTL_SECONDS, 7 * 24 * 3600)),
        )


@dataclass(frozen=True)
class JobOptions:
    """Per-job options, from the object's user metadata (x-amz-meta-*)."""

    model: str
    signature: str = "serving_default"
    key_field: str = "key"
    input_field: str = ""  # JSONL: where the inputs are (records.input_fields); default: each in its own name
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
            input_field=metadata.get("input-field", ""),
            **flags,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (kept on the job and in every shard message)."""
        return dict(self.__dict__)


def job_id_for(source_key: str) -> tuple[str, str, bool]:
    """`incoming/a/b.jsonl.gz` -> ('a/b.jsonl.gz', 'jsonl', gzipped): the job id is the key without `incoming/`,
    so `a.jsonl`, `a.csv` and `a/b.jsonl` are three jobs. PlanningError for another suffix."""
    name = source_key.removeprefix("incoming/")
    for suffix, (kind, gz) in sorted(SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name, kind, gz
    raise PlanningError(f"{source_key}: unsupported file type; use {', '.join(SUFFIXES)}")


def results_prefix(job_id: str) -> str:
    """Where a job's markers (`_SUCCESS`, `_FAILED`) and its runs' folders go."""
    return f"results/{job_id}/"


def run_prefix(job_id: str, run: int) -> str:
    """Where one run of a job writes its parts, error parts and ordered file."""
    return f"{results_prefix(job_id)}run-{run:06d}/"


def _staging_prefix(job_id: str, run: int) -> str:
    return f"staging/{job_id}/run-{run:06d}/"


def _staged_shard(job_id: str, run: int, index: int) -> str:
    """Where the planner puts a shard of a gzip source, uncompressed, for its worker."""
    return f"{_staging_prefix(job_id, run)}shard-{index:05d}"


def _run_objects(prefix: str, names: str) -> re.Pattern[str]:
    # Exact names only: another job's id may extend this one's (`a.jsonl` and `a.jsonl/run-000001/b.jsonl`), so
    # a prefix alone would reach into its objects.
    return re.compile(re.escape(prefix) + r"run-(\d{6})/(?:" + names + ")")


class Pipeline:
    """The batch steps, bound to their adapters (liteserve.ports, liteserve.batch.ports): pass them in (in-memory
    fakes in unit tests), or leave them out to get the boto3-backed ones for the resources the config names
    (`from_env()` in the functions). The results cache is used only when passed in or named by `config.cache_table`.
    `models` may be set after construction: the split and worker functions give it a LiveModels over the registry in
    the pipeline's store."""

    def __init__(
        self,
        config: BatchConfig,
        models: ModelRepository | VersionedModels | None = None,
        *,
        store: Objects | None = None,
        jobs: JobLedger | None = None,
        queue: Shards | None = None,
        bus: Events | None = None,
        cache: Cache | None = None,
    ) -> None:
        self.config = config
        self.models = models
        self.store: Objects = store or ObjectStore(config.bucket)
        self.jobs: JobLedger = jobs or JobStore(config.jobs_table)
        self.queue: Shards = queue or ShardQueue(config.queue_url)
        self.bus: Events = bus or EventBus(config.event_bus)
        if cache is None and config.cache_table:
            cache = ResultsCache(config.cache_table, config.cache_ttl_seconds)
        self.cache: Cache | None = cache

    @classmethod
    def from_env(cls, models: ModelRepository | VersionedModels | None = None) -> Pipeline:
        """A deployed function's pipeline: names and sizes from the environment, boto3-backed adapters."""
        return cls(BatchConfig.from_env(), models)

    # ------------------------------------------------------------------ split
    def split(self, source_key: str, sequencer: str = "") -> dict[str, Any]:
        """Plan a dropped file: start a run of its job, send one message per shard. Returns a summary.

        `sequencer` is the S3 event's, which tells two PUTs of the same bytes apart (a forced re-drop from a
        repeated notification of the same drop)."""
        try:
            job_id, kind, gz = job_id_for(source_key)
        except PlanningError as err:
            return {"skipped": source_key, "reason": str(err)}  # not a job: nothing to record it under
        try:
            head = self.store.head(source_key)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return {"skipped": source_key, "reason": "the object no longer exists (deleted after its drop)"}
            raise
        pin = Pin(head["etag"], head["version_id"])
        drop = f"{head['version_id'] or sequencer}|{head['last_modified']}"
        try:
            options = JobOptions.from_metadata(head["metadata"], self.config)
            model = self._model(options.model, live=True)
            model.signature(options.signature)  # an unknown signature fails the job here
        except PlanningError as err:
            return self._refuse(job_id, pin, source_key, str(err), drop)
        except LiteserveError as err:  # unknown model or signature
            return self._refuse(job_id, pin, source_key, err.message, drop)
        job = self.jobs.begin(job_id, pin, source_key, options.as_dict(), model.version, drop=drop, force=options.force)
        if job is None:
            return {"job_id": job_id, "duplicate": True}
        if job.run > 1:  # the previous run's markers no longer describe the job; its objects go when this run ends
            self.store.delete([results_prefix(job_id) + "_SUCCESS", results_prefix(job_id) + "_FAILED"])
        try:
            shards = self._plan(source_key, job, kind, gz, options, model)
        except SourceChanged:
            if self.store.exists(source_key):  # replaced while planning: the newer drop's notification starts a run
                return {"job_id": job_id, "run": job.run, "superseded": True}
            reason = f"{source_key} was deleted while it was planned"  # no later drop will supersede this run
            return self._refuse(job_id, pin, source_key, reason, drop, job=job)
        except PlanningError as err:
            return self._refuse(job_id, pin, source_key, str(err), drop, job=job)
        planned = self.jobs.planned(job_id, job.run, len(shards))
        if planned is None:
            return {"job_id": job_id, "run": job.run, "superseded": True}
        if planned.complete:  # every worker finished before planning did
            self.finalize(job_id, job.run)
        return {"job_id": job_id, "run": job.run, "etag": pin.etag, "shards": len(shards)}

    def _plan(
        self, source_key: str, job: Job, kind: str, gz: bool, options: JobOptions, model: Model
    ) -> list[dict[str, Any]]:
        # The cap guards against gzip bombs; a plain file is read as it is stored, whatever its size.
        cap = self.config.max_decompressed_bytes if gz else None
        chunks = self.store.stream(source_key, gunzip=gz, max_bytes=cap, pin=job.pin)
        header: tuple[str, ...] | None = None
        offset, first_line = 0, 1
        sig = model.signature(options.signature)
        if kind == "csv" and options.input_field:
            raise PlanningError("input-field applies to JSONL; CSV columns are found by the manifest's feature names")
        try:
            if kind == "csv":
                head_line, rest = read_header(chunks)
                header = tuple(c.strip() for c in next(csv.reader([head_line.decode("utf-8", "replace").strip()]), []))
                if options.key_field not in header:
                    raise PlanningError(f"CSV header has no key column '{options.key_field}': {list(header)[:8]}")
                chunks = _prepend(rest, chunks)
                offset, first_line = len(head_line), 2
            try:
                fmt = _row_format(kind, options.as_dict(), header, model)
            except ValueError as err:  # the option or header does not fit the signature: name what is wrong
                raise PlanningError(f"{source_key}: {err}") from None

            def reread(index: int, start: int, end: int) -> bytes:  # a shard planned earlier, as its worker reads it
                if gz:
                    return self.store.read(_staged_shard(job.job_id, job.run, index))
                return self.store.read(source_key, (start, end), pin=job.pin)

            ledger = KeyLedger(fmt, sig.inputs, reread)
            messages: list[dict[str, Any]] = []
            sent = 0
            for shard in cut_shards(chunks, self.config.shard_bytes, offset=offset, first_line=first_line):
                ledger.scan(shard)
                messages.append(self._shard_message(job, source_key, gz, shard, fmt))
                # Workers start while the rest is still being planned: the first shard goes at once, then batches
                # that double up to 10 (SQS's most per call): more workers start early, for a few more calls.
                if len(messages) - sent >= min(10, max(1, sent)):
                    self.queue.send(messages[sent:])
                    sent = len(messages)
        except (ValueError, EOFError, OSError) as err:  # gzip errors, decompression bomb, undecodable header
            raise PlanningError(f"{source_key}: {err}") from err
        self.queue.send(messages[sent:])
        return messages

    def _shard_message(self, job: Job, source_key: str, gz: bool, shard: Shard, fmt: RowFormat) -> dict[str, Any]:
        message: dict[str, Any] = {
            "job_id": job.job_id,
            "run": job.run,
            "etag": job.etag,
            "shard": shard.index,
            "first_line": shard.first_line,
            "format": fmt.kind,
            "header": list(fmt.header) if fmt.header else None,
            "skipped": shard.skipped,
        }
        staging = _staging_prefix(job.job_id, job.run)
        if not shard.data:  # only over-long lines were left at the end of the file
            message.update(object=None, range=None)
        elif gz:  # a gzip stream cannot be read from the middle: the planner stages the shard uncompressed
            staged = _staged_shard(job.job_id, job.run, shard.index)
            self.store.put(staged, shard.data)
            message.update(object=staged, range=None)
        else:
            message.update(object=source_key, range=[shard.start, shard.end])
        duplicates = [[line, first] for line, first in sorted(shard.duplicates.items())]
        if len(duplicates) > MAX_INLINE_DUPLICATES:
            staged = f"{staging}duplicates-{shard.index:05d}.json"
            self.store.put(staged, orjson.dumps(duplicates), "application/json")
            message["duplicates_object"] = staged
        else:
            message["duplicates"] = duplicates
        return message

    def _refuse(
        self, job_id: str, pin: Pin, source_key: str, reason: str, drop: str, job: Job | None = None
    ) -> dict[str, Any]:
        if job is None:
            job = self.jobs.begin(job_id, pin, source_key, {}, "", drop=drop)
            if job is None:
                return {"job_id": job_id, "duplicate": True}
            if job.run > 1:
                self.store.delete([results_prefix(job_id) + "_SUCCESS"])
        failed = self.jobs.fail_planning(job_id, job.run, reason)
        if failed is not None:
            self._publish(failed)
        return {"job_id": job_id, "run": job.run, "failed": reason}

    def _model(self, name: str, version: str | None = None, live: bool = False) -> Model:
        """The live version at a job's start (`live`), then that recorded version for each shard. A plain model
        repository (tests, benchmarks) has one version per model."""
        if self.models is None:
            raise RuntimeError("this pipeline was built without models")
        from liteserve.runtime import ModelRepository  # models were passed in: the interpreter is loaded already

        if isinstance(self.models, ModelRepository):
            return self.models.get(name)
        return self.models.live(name) if live else self.models.get(name, version)

    # ------------------------------------------------------------------ worker
    def run_shard(self, message: dict[str, Any]) -> dict[str, Any]:
        """Predict one shard of the job's current run and write its part (and error part) in the run's folder;
        count it once; finalize if it was the last. A message of another run is dropped without writing."""
        started = time.perf_counter()
        job_id, run, index = message["job_id"], int(message.get("run", 0)), int(message["shard"])
        job = self.jobs.get(job_id)
        if job is None or job.run != run:  # superseded by a newer run (re-drop, replacement, forced rerun)
            return {"job_id": job_id, "run": run, "shard": index, "stale": True}
        if job.state not in ("PLANNING", "RUNNING") or index in job.done or index in job.failed:
            self._finalize_if_complete(job)  # a redelivery after a finalizer crashed must still finish the job
            return {"job_id": job_id, "run": run, "shard": index, "duplicate": True}
        options = job.options  # the run's options, whatever a message says
        model = self._model(options["model"], job.model_version)  # never another version inside a job
        sig = model.signature(options["signature"])
        try:
            data = self._shard_data(job, message)
        except SourceChanged:
            current = self.jobs.get(job_id)
            if current is None or current.run != run:
                return {"job_id": job_id, "run": run, "shard": index, "stale": True}
            # Replaced, and the new drop's run has not begun yet (then the retry finds this run stale), or
            # deleted: retries end in the DLQ, which fails the shard and so the run, naming it.
            raise
        fmt = _row_format(
            message["format"], options, tuple(message["header"]) if message.get("header") else None, model
        )
        rows, values = fmt.parse(data, int(message["first_line"]), sig.inputs)
        rows.errors.extend({"line": line, "error": line_too_long(line)} for line in message.get("skipped") or ())
        duplicates = message.get("duplicates")
        if duplicates is None:
            duplicates = orjson.loads(self.store.read(message["duplicates_object"]))
        if duplicates:
            positions = {line: i for i, line in enumerate(rows.lines)}
            first_of = {int(line): int(first) for line, first in duplicates if int(line) in positions}
            keep = np.ones(len(rows.lines), dtype=bool)
            keep[[positions[line] for line in first_of]] = False
            rows.drop({line: f"key repeats line {first}" for line, first in first_of.items()})
            values = {name: arr[keep] for name, arr in values.items()}
        rows.errors.sort(key=lambda e: e["line"])
        predicted = self._predict(model, sig.name, values)
        part = self._part_lines(rows.keys, predicted, options["key_field"], model.version)
        prefix = run_prefix(job_id, run)
        self.store.put(f"{prefix}part-{index:05d}.jsonl", part)
        if rows.keys:  # the prediction log's batch records (continued evaluation); same name and bytes on a retry
            self.store.put(
                *batch_object(
                    job_id,
                    index,
                    job.created_at,
                    model.name,
                    model.version,
                    sig.name,
                    rows.keys,
                    values,
                    predicted,
                    run=run,
                ),
                "application/gzip",
            )
        if rows.errors:
            self.store.put(
                f"{prefix}errors/part-{index:05d}.jsonl", b"".join(orjson.dumps(e) + b"\n" for e in rows.errors)
            )
        if options.get("cache") and self.cache is not None and rows.keys:
            current = self.jobs.get(job_id)  # the cache is shared by every run: a superseded run must not write it
            if current is None or current.run != run:
                return {"job_id": job_id, "run": run, "shard": index, "stale": True}
            self.cache.put_many(
                model.name, model.version, job_id, run, list(zip(rows.keys, part.decode().splitlines(), strict=True))
            )
        counts = {
            "rows_in": len(rows.lines) + len(rows.errors),
            "rows_predicted": len(rows.lines),
            "rows_rejected": len(rows.errors),
        }
        seconds = time.perf_counter() - started
        counted = self.jobs.shard_done(job_id, run, index, counts, seconds)
        if counted is None:  # counted by a concurrent delivery of the same shard (its part is byte-identical)
            return {"job_id": job_id, "run": run, "shard": index, "duplicate": True}
        self._finalize_if_complete(counted)
        work = {"model": model.name, "version": model.version, "seconds": round(seconds, 4)}
        return {"job_id": job_id, "run": run, "shard": index, **counts, **work}

    def _shard_data(self, job: Job, message: dict[str, Any]) -> bytes:
        if not message.get("object"):
            return b""
        if message.get("range"):  # a range of the source itself: read the exact object the run was planned on
            start, end = message["range"]
            return self.store.read(message["object"], (int(start), int(end)), pin=job.pin)
        return self.store.read(message["object"])  # staged by this run's planner

    @staticmethod
    def _predict(model: Model, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values()), ()))
        if n == 0:
            return {}
        pieces = [
            model.predict(signature, {name: arr[i : i + INFER_BATCH] for name, arr in inputs.items()})
            for i in range(0, n, INFER_BATCH)
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
        """A shard message that exhausted its retries (DLQ): record the shard as failed, finalize if last.
        A dead message of a superseded run changes nothing."""
        job = self.jobs.shard_failed(message["job_id"], int(message.get("run", 0)), int(message["shard"]))
        if job is not None:
            self._finalize_if_complete(job)

    def _finalize_if_complete(self, job: Job) -> None:
        if not job.complete:
            return
        if job.state == "RUNNING":
            self.finalize(job.job_id, job.run)
        elif job.state in ("SUCCEEDED", "FAILED") and not job.published:
            self._publish(job)  # finished, but its publisher crashed before the manifest and event were out

    def finalize(self, job_id: str, run: int) -> Job | None:
        """Settle a complete run as SUCCEEDED or FAILED (once), then publish its manifest and event."""
        job = self.jobs.get(job_id)
        if job is None or job.run != run or not job.complete or job.state != "RUNNING":
            return job
        reasons = _reasons(job)
        finished = self.jobs.finish(job_id, run, "FAILED" if job.failed else "SUCCEEDED", "; ".join(reasons))
        if finished is None:  # another finalizer settled it (and publishes), or a newer run began
            return self.jobs.get(job_id)
        return self._publish(finished)

    def _publish(self, job: Job) -> Job:
        """Write the run's ordered file and `_SUCCESS`/`_FAILED` manifest listing exactly its parts, emit
        BatchJobCompleted, then delete what older runs left. Repeatable: same objects, event at least once."""
        prefix = run_prefix(job.job_id, job.run)
        parts = [f"{prefix}part-{i:05d}.jsonl" for i in sorted(job.done)]
        error_names = _run_objects(results_prefix(job.job_id), r"errors/part-(\d{5})\.jsonl")
        errors = [
            k
            for k in self.store.keys(prefix + "errors/")
            if (m := error_names.fullmatch(k)) and int(m[1]) == job.run and int(m[2]) in job.done
        ]
        ordered = bool(job.options.get("ordered")) and job.state == "SUCCEEDED"
        if ordered:
            # Shards are in line order and parts keep line order, so concatenation is input order.
            self.store.put(f"{prefix}ordered.jsonl", b"".join(self.store.read(p) for p in parts))
        manifest = self.describe(job, parts=parts, errors=errors)
        marker = results_prefix(job.job_id) + ("_SUCCESS" if job.state == "SUCCEEDED" else "_FAILED")
        current = self.jobs.get(job.job_id)
        if current is None or current.run != job.run:
            return job  # superseded before publishing: the newer run publishes
        self.store.put(marker, orjson.dumps(manifest, option=orjson.OPT_INDENT_2), "application/json")
        if self._superseded_marker(job, marker):
            return job
        # At-least-once: the event goes out before `published` is set, so a crash here repeats it, never loses it.
        # The event names where the manifest is, not its part lists (an event holds at most 256 KB).
        event = {k: manifest[k] for k in ("job_id", "run", "state", "counts")}
        event["output"] = {k: v for k, v in manifest["output"].items() if k not in ("parts", "errors")}
        self.bus.put("BatchJobCompleted", event)
        self._sweep(job)
        return self.jobs.published(job.job_id, job.run) or job

    def _superseded_marker(self, job: Job, marker: str) -> bool:
        """A newer run that began while this one wrote its marker removes the old markers only once, at its start:
        take this run's marker back if so (unless the newer run already replaced it with its own)."""
        current = self.jobs.get(job.job_id)
        if current is not None and current.run == job.run:
            return False
        try:
            written = orjson.loads(self.store.read(marker))
        except ClientError:
            return True
        if written.get("run") == job.run:
            self.store.delete([marker])
        return True

    def _sweep(self, job: Job) -> None:
        """Delete the objects of this job's older runs (their late writes included) and this run's staging."""
        results = _run_objects(results_prefix(job.job_id), r"part-\d{5}\.jsonl|errors/part-\d{5}\.jsonl|ordered\.jsonl")
        staging = _run_objects(f"staging/{job.job_id}/", r"shard-\d{5}|duplicates-\d{5}\.json")
        old = [
            k
            for k in self.store.keys(results_prefix(job.job_id) + "run-")
            if (m := results.fullmatch(k)) and int(m[1]) < job.run
        ]
        old += [
            k
            for k in self.store.keys(f"staging/{job.job_id}/run-")
            if (m := staging.fullmatch(k)) and int(m[1]) <= job.run
        ]
        self.store.delete(old)

    def describe(self, job: Job, parts: list[str] | None = None, errors: list[str] | None = None) -> dict[str, Any]:
        """The job as users see it: the status API (its current run), and with `parts`/`errors` the run's
        `_SUCCESS`/`_FAILED` manifest, which lists exactly the objects of that run. The status carries `published`:
        the state turns SUCCEEDED/FAILED just before the manifest is written, and `published` is true only once it
        is (and its BatchJobCompleted event is sent)."""
        bucket = f"s3://{self.config.bucket}/"
        prefix = bucket + run_prefix(job.job_id, job.run)
        marker = "_FAILED" if job.state == "FAILED" else "_SUCCESS"
        output: dict[str, Any] = {"manifest": bucket + results_prefix(job.job_id) + marker, "prefix": prefix}
        if parts is not None:
            output["parts"] = [bucket + p for p in parts]
            output["errors"] = [bucket + e for e in errors or []]
        if job.options.get("ordered"):
            output["ordered"] = prefix + "ordered.jsonl"
        return {
            "job_id": job.job_id,
            "run": job.run,
            "state": job.state,
            "source": f"{bucket}{job.source}",
            "etag": job.etag,
            **({"version_id": job.version_id} if job.version_id else {}),
            "model": job.options.get("model"),
            "signature": job.options.get("signature"),
            "model_version": job.model_version,
            "shards": {"total": job.shards_total, "done": len(job.done), "failed": sorted(job.failed)},
            "counts": job.counts,
            "output": output,
            "timings": {
                "created_at": job.created_at,
                "planned_at": job.planned_at,
                "finished_at": job.finished_at,
                "elapsed_s": round(job.finished_at - job.created_at, 3) if job.finished_at else None,
                "worker_seconds": round(job.worker_seconds, 3),
            },
            "reasons": _reasons(job),
            **({} if parts is not None else {"published": job.published}),
        }


def _reasons(job: Job) -> list[str]:
    if job.failed:
        return [f"shard {i} failed after its retries (see the shard DLQ)" for i in sorted(job.failed)]
    return [job.reason] if job.reason else []


def _row_format(kind: str, options: dict[str, Any], header: tuple[str, ...] | None, model: Model) -> RowFormat:
    """How a run's rows are read, by the planner and the workers alike (so both see the same bad rows): JSONL
    fields from the `input-field` option, CSV columns by the manifest's feature names. ValueError when they do not
    fit the signature (the planner fails the job with it)."""
    inputs = model.signature(options["signature"]).inputs
    fields = input_fields(options.get("input_field") or "", inputs) if kind == "jsonl" else ()
    columns = None
    if kind == "csv":
        header = header or ()
        columns = csv_columns(header, options["key_field"], inputs, model.manifest.feature_names)
        if columns is None:
            (spec,) = inputs.values()
            width = spec.feature_shape[0] if spec.feature_shape else 1
            if len(header) - 1 != width:
                names = model.manifest.feature_names.get(spec.name)
                hint = (
                    f" (or columns named {names[:3]}{'...' if len(names) > 3 else ''}, in any order)" if names else ""
                )
                raise ValueError(f"CSV header has {len(header) - 1} feature columns; the model takes {width}{hint}")
    return RowFormat(
        kind,
        options["key_field"],
        fields,
        header,
        ResultsCache.key_room(options["model"]) if options.get("cache") else None,
        columns,
    )


def _prepend(first: bytes, rest: Any) -> Any:
    if first:
        yield first
    yield from rest
