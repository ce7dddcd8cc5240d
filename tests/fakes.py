"""In-memory fakes of the adapters the orchestrators take (liteserve.ports): `Pipeline` and `Evaluator` run on them
without moto, so their decisions get fast unit tests. Each fake keeps the adapter's contract (conditional updates
that return None when their condition fails, pinned reads that raise SourceChanged); tests/unit/test_fakes_contract.py
runs the same sequences against a fake and its boto3 adapter on moto, so the two cannot drift apart unnoticed."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from botocore.exceptions import ClientError
from liteserve.adapters import Pin, SourceChanged
from liteserve.batch.jobs import BatchConfig, Pipeline
from liteserve.batch.storage import COUNTS, Job
from liteserve.evaluation.evaluate import RESEND_AFTER_S, EvaluationConfig, Evaluator
from liteserve.evaluation.policy import RetrainPolicy
from liteserve.manifest import Manifest


def _missing(key: str, code: str = "NoSuchKey") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{key} does not exist"}}, "GetObject")


@dataclass
class _Object:
    data: bytes
    etag: str
    version_id: str
    last_modified: str
    metadata: dict[str, str]
    content_type: str


class FakeObjects:
    """A bucket in a dict. `versioned=True` gives every put a version id, as a versioned S3 bucket does."""

    def __init__(self, bucket: str = "data", versioned: bool = False, chunk: int = 1024 * 1024) -> None:
        self.bucket = bucket
        self.versioned = versioned
        self.chunk = chunk
        self.objects: dict[str, _Object] = {}
        self._puts = 0

    def put(
        self, key: str, data: bytes, content_type: str = "application/x-ndjson", metadata: dict[str, str] | None = None
    ) -> None:
        self._puts += 1
        self.objects[key] = _Object(
            bytes(data),
            hashlib.md5(data, usedforsecurity=False).hexdigest(),
            f"v{self._puts}" if self.versioned else "",
            f"2026-11-28T00:00:{self._puts % 60:02d}+00:00#{self._puts}",  # tells two puts of the same bytes apart
            {k.lower(): v for k, v in (metadata or {}).items()},
            content_type,
        )

    def _get(self, key: str, pin: Pin | None) -> _Object:
        obj = self.objects.get(key)
        if pin is not None and (
            obj is None or obj.etag != pin.etag or (pin.version_id and obj.version_id != pin.version_id)
        ):
            raise SourceChanged(f"{key} no longer has ETag {pin.etag}")
        if obj is None:
            raise _missing(key)
        return obj

    def head(self, key: str) -> dict[str, Any]:
        if key not in self.objects:
            raise _missing(key, "404")
        obj = self.objects[key]
        return {
            "size": len(obj.data),
            "etag": obj.etag,
            "version_id": obj.version_id,
            "last_modified": obj.last_modified,
            "metadata": dict(obj.metadata),
        }

    def stream(
        self, key: str, *, gunzip: bool = False, max_bytes: int | None = None, pin: Pin | None = None
    ) -> Iterator[bytes]:
        raw = self._get(key, pin).data
        source: Any = gzip.GzipFile(fileobj=io.BytesIO(raw)) if gunzip else io.BytesIO(raw)
        total = 0
        while chunk := source.read(self.chunk):
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise ValueError(f"inflates to more than {max_bytes} bytes (the decompression cap)")
            yield chunk

    def read(self, key: str, byte_range: tuple[int, int] | None = None, pin: Pin | None = None) -> bytes:
        data = self._get(key, pin).data
        return data[byte_range[0] : byte_range[1] + 1] if byte_range else data

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)

    def exists(self, key: str) -> bool:
        return key in self.objects


class FakeEvents:
    """Every event put, in order: (detail type, detail)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def put(self, detail_type: str, detail: dict[str, Any]) -> None:
        self.events.append((detail_type, copy.deepcopy(detail)))

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == detail_type]


class FakeShards:
    """The shard queue: messages sent, and the calls that sent them."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.calls: list[int] = []

    def send(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            self.calls.append(len(messages))
        self.messages.extend(copy.deepcopy(messages))

    def drain(self) -> list[dict[str, Any]]:
        out, self.messages = self.messages, []
        return out


class FakeJobs:
    """The jobs table: the same conditions as JobStore's conditional updates, on Job rows in a dict."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}  # job id -> {"job": Job, "options_id": str, "drop_id": str}

    def get(self, job_id: str) -> Job | None:
        row = self.rows.get(job_id)
        return _copy(row["job"]) if row else None

    def begin(
        self,
        job_id: str,
        pin: Pin,
        source: str,
        options: dict[str, Any],
        model_version: str,
        *,
        drop: str = "",
        force: bool = False,
    ) -> Job | None:
        identity = {**{k: v for k, v in options.items() if k != "force"}, "model_version": model_version}
        options_id = orjson.dumps(identity, option=orjson.OPT_SORT_KEYS).decode()
        row = self.rows.get(job_id)
        if row is not None:
            old = row["job"]
            fresh = old.state == "PLANNING" or old.etag != pin.etag or row["options_id"] != options_id
            if not fresh and not (force and row["drop_id"] != drop):
                return None
        job = Job(
            job_id=job_id,
            etag=pin.etag,
            state="PLANNING",
            source=source,
            run=(row["job"].run if row else 0) + 1,
            version_id=pin.version_id,
            counts=dict.fromkeys(COUNTS, 0),
            options=copy.deepcopy(options),
            model_version=model_version,
            created_at=round(time.time(), 3),
        )
        self.rows[job_id] = {"job": job, "options_id": options_id, "drop_id": drop}
        return _copy(job)

    def _update(
        self, job_id: str, run: int, states: tuple[str, ...], change: Any, shard: int | None = None
    ) -> Job | None:
        row = self.rows.get(job_id)
        if row is None or row["job"].run != run or row["job"].state not in states:
            return None
        job = row["job"]
        if shard is not None and (shard in job.done or shard in job.failed):
            return None
        change(job)
        return _copy(job)

    def planned(self, job_id: str, run: int, shards_total: int) -> Job | None:
        def change(job: Job) -> None:
            job.shards_total, job.state, job.planned_at = shards_total, "RUNNING", round(time.time(), 3)

        return self._update(job_id, run, ("PLANNING",), change)

    def shard_done(self, job_id: str, run: int, shard: int, counts: dict[str, int], seconds: float) -> Job | None:
        def change(job: Job) -> None:
            job.done.add(shard)
            job.worker_seconds += round(seconds, 3)
            for name in COUNTS:
                job.counts[name] = job.counts.get(name, 0) + counts[name]

        return self._update(job_id, run, ("PLANNING", "RUNNING"), change, shard)

    def shard_failed(self, job_id: str, run: int, shard: int) -> Job | None:
        return self._update(job_id, run, ("PLANNING", "RUNNING"), lambda job: job.failed.add(shard), shard)

    def finish(self, job_id: str, run: int, state: str, reason: str = "") -> Job | None:
        def change(job: Job) -> None:
            job.state, job.finished_at, job.reason = state, round(time.time(), 3), reason

        return self._update(job_id, run, ("RUNNING",), change)

    def published(self, job_id: str, run: int) -> Job | None:
        row = self.rows.get(job_id)
        if row is None or row["job"].published:
            return None

        def change(job: Job) -> None:
            job.published = True

        return self._update(job_id, run, ("SUCCEEDED", "FAILED"), change)

    def fail_planning(self, job_id: str, run: int, reason: str) -> Job | None:
        def change(job: Job) -> None:
            job.state, job.finished_at, job.reason, job.shards_total = "FAILED", round(time.time(), 3), reason, 0

        return self._update(job_id, run, ("PLANNING",), change)


def _copy(job: Job) -> Job:
    return replace(
        job, done=set(job.done), failed=set(job.failed), counts=dict(job.counts), options=copy.deepcopy(job.options)
    )


class FakeCache:
    """The results cache: (model, key as given) -> the stored row."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def put_many(self, model: str, version: str, job_id: str, run: int, rows: list[tuple[object, str]]) -> None:
        for key, prediction in rows:
            doc = {"model_version": version, "job_id": job_id, "run": run, "prediction": prediction}
            self.items[(model, orjson.dumps(key).decode())] = doc

    def get(self, model: str, key: object) -> dict[str, Any] | None:
        item = self.items.get((model, orjson.dumps(key).decode()))
        if item is None:
            return None
        return {
            **orjson.loads(item["prediction"]),
            "key": key,
            "model": model,
            **{k: item[k] for k in ("model_version", "job_id", "run")},
        }


class FakeLabels:
    """The labels table: key -> (label, time in ms), as LabelStore.put_many stores them."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def put(self, labels: dict[str, object], now: float) -> None:
        for key, label in labels.items():
            self.items[str(key)] = {"key": str(key), "label": str(label), "time": int(now * 1000)}

    def received(self, start: float, end: float) -> Iterator[dict[str, Any]]:
        lo, hi = int(start * 1000), int(end * 1000)
        return iter([dict(i) for i in self.items.values() if lo <= i["time"] <= hi])


class FakeClaims:
    """The evaluations table's once-per-window claims and per-model cooldown, as DecisionStore keeps them."""

    def __init__(self) -> None:
        self.windows: dict[str, dict[str, float]] = {}  # "model#window#id" -> {"claimed_at", "sent_at"?}
        self.cooldowns: dict[str, tuple[float, str]] = {}  # model -> (last request, window id)

    def claim(self, model: str, window_id: str, now: float, cooldown_hours: float) -> str:
        pk = f"{model}#window#{window_id}"
        item = self.windows.get(pk)
        if item is not None:
            if "sent_at" in item or item["claimed_at"] > int(now - RESEND_AFTER_S):
                return "duplicate"
            item["claimed_at"] = int(now)
            return "resend"
        last = self.cooldowns.get(model)
        if last is not None and last[0] > int(now - cooldown_hours * 3600) and last[1] != window_id:
            return "cooldown"
        self.cooldowns[model] = (int(now), window_id)
        self.windows[pk] = {"claimed_at": int(now)}
        return "claimed"

    def sent(self, model: str, window_id: str, now: float) -> None:
        self.windows.setdefault(f"{model}#window#{window_id}", {})["sent_at"] = int(now)


@dataclass
class FakeRegistry:
    """The registry's routing records and registered manifests."""

    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifests: dict[tuple[str, str], Manifest] = field(default_factory=dict)

    def live(self, model: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.routes.get(model))

    def manifest(self, model: str, version: str) -> Manifest | None:
        return self.manifests.get((model, version))


@dataclass
class FakeBatch:
    """A pipeline on fakes, with the fakes at hand."""

    pipeline: Pipeline
    store: FakeObjects
    jobs: FakeJobs
    queue: FakeShards
    bus: FakeEvents
    cache: FakeCache


def fake_pipeline(models: Any, config: BatchConfig | None = None) -> FakeBatch:
    """A Pipeline over fresh fakes (bucket `data`, no AWS names)."""
    config = config or BatchConfig(bucket="data", jobs_table="")
    store, jobs, queue, bus, cache = FakeObjects(config.bucket), FakeJobs(), FakeShards(), FakeEvents(), FakeCache()
    pipeline = Pipeline(config, models, store=store, jobs=jobs, queue=queue, bus=bus, cache=cache)
    return FakeBatch(pipeline, store, jobs, queue, bus, cache)


@dataclass
class FakeEvaluation:
    """An evaluator on fakes, with the fakes at hand."""

    evaluator: Evaluator
    store: FakeObjects
    labels: FakeLabels
    claims: FakeClaims
    bus: FakeEvents
    registry: FakeRegistry


def fake_evaluator(model_root: Any, policy: RetrainPolicy, promoter: Any = None) -> FakeEvaluation:
    """An Evaluator over fresh fakes, reading manifests from `model_root`."""
    config = EvaluationConfig(bucket="data", labels_table="", state_table="", model_root=str(model_root))
    store, labels, claims, bus, registry = FakeObjects(), FakeLabels(), FakeClaims(), FakeEvents(), FakeRegistry()
    evaluator = Evaluator(
        config, policy, promoter, store=store, labels=labels, decisions=claims, bus=bus, registry=registry
    )
    return FakeEvaluation(evaluator, store, labels, claims, bus, registry)
