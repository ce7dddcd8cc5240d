"""Two-phase prediction (ML Design Patterns): the edge model answers every instance locally; instances whose
confidence is below the threshold go to the cloud model in one keyed batch request and its answer replaces the edge
one. When the cloud cannot be reached the edge answer is returned at once, marked provisional, and the escalation
waits in a durable SQLite queue until `flush()` (or the next call that reaches the cloud) replays it."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liteserve_edge.artifact import fetch_model
from liteserve_edge.cloud import CloudAnswer, CloudClient, CloudError, CloudRejected, CloudUnavailable, Key
from liteserve_edge.model import EdgeModel
from liteserve_edge.store import Outcome, Store

log = logging.getLogger("liteserve_edge")


@dataclass(frozen=True)
class Prediction:
    """The answer for one key.

    `phase` says which model produced it. `provisional` means the cloud was unreachable: the edge answer stands for
    now and the escalation is queued. `capped` means the instance was below the threshold but the escalation rate
    cap kept it on the edge (final, not queued). `error` holds a cloud rejection (4xx), not retried.
    """

    key: Key
    class_id: int
    label: str
    confidence: float
    phase: str
    provisional: bool = False
    capped: bool = False
    edge_class_id: int = -1
    edge_confidence: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class FlushReport:
    """What a replay of the queue did: refined answers (each key once), rejections, and what is left."""

    refined: list[Outcome] = field(default_factory=list)
    rejected: list[Outcome] = field(default_factory=list)
    remaining: int = 0
    requests: int = 0
    error: str | None = None
    agreement_sent: int = 0  # agreement records delivered to the cloud after this replay

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "refined": [o.to_dict() for o in self.refined],
            "rejected": [o.to_dict() for o in self.rejected],
            "remaining": self.remaining,
            "requests": self.requests,
            "error": self.error,
            "agreement_sent": self.agreement_sent,
        }


class RateCap:
    """At most `per_minute` escalations in any sliding 60 s window (None = no cap)."""

    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._admitted: deque[float] = deque()

    def available(self) -> int | None:
        """How many escalations may start now (None = unlimited)."""
        if self.per_minute is None:
            return None
        horizon = self.clock() - 60.0
        while self._admitted and self._admitted[0] <= horizon:
            self._admitted.popleft()
        return max(0, self.per_minute - len(self._admitted))

    def take(self, n: int) -> None:
        """Count `n` escalations as started now."""
        if self.per_minute is not None:
            self._admitted.extend([self.clock()] * n)


class TwoPhaseClient:
    """Device-side two-phase prediction over an edge model, a cloud endpoint and a local SQLite file.

    Args:
        edge_model: an EdgeModel, or the directory holding its `manifest.json` and model file.
        endpoint: base URL of the deployment's HTTP API (e.g. the stack's ApiUrl).
        threshold: escalate when the edge model's confidence (max probability) is below it. The int8 softmax tops
            out at 255/256, so a threshold above ~0.996 escalates everything; pick it with `choose_threshold`.
        cloud_model: the cloud model's name in the deployment.
        queue_path: the SQLite file (queue and agreement records); it survives restarts.
        max_escalations_per_call / max_escalations_per_minute: the rate cap; the least confident go first and the
            rest keep their edge answer, marked `capped`.
        max_batch: instances per cloud request (the server's limit is LITESERVE_MAX_INSTANCES, default 1000).
        replay_on_success: after a call reaches the cloud, replay the queue too (refined answers go to `on_refined`).
        offline_cooldown: after the cloud was unreachable (retries exhausted), `predict` queues escalations without
            trying the cloud for this many seconds, so that answers come back at once; `flush()` always tries.
        token: the API's bearer token (default: `LITESERVE_LOCAL_TOKEN`). A refused token (401/403) is a rejection:
            not retried, the escalation recorded as rejected.
        send_agreement: after escalations the cloud answered (online or by `flush()`), send the keyed
            edge-vs-cloud records to the cloud's evaluation (`report_agreement`).

    Not thread-safe (the interpreter is not): use one client per thread; several processes may share the file.
    """

    def __init__(
        self,
        edge_model: EdgeModel | str | Path,
        endpoint: str,
        threshold: float,
        *,
        cloud_model: str = "digits-cloud",
        queue_path: str | Path = "liteserve-edge.sqlite3",
        max_escalations_per_call: int | None = None,
        max_escalations_per_minute: int | None = None,
        max_batch: int = 500,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
        key_field: str = "key",
        replay_on_success: bool = True,
        offline_cooldown: float = 30.0,
        on_refined: Callable[[list[Outcome]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        token: str | None = None,
        send_agreement: bool = True,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.edge = edge_model if isinstance(edge_model, EdgeModel) else EdgeModel.load(edge_model)
        self.threshold = float(threshold)
        self.key_field = key_field
        self.max_per_call = max_escalations_per_call
        self.rate = RateCap(max_escalations_per_minute, clock)
        self.max_batch = max_batch
        self.replay_on_success = replay_on_success
        self.offline_cooldown = offline_cooldown
        self.clock = clock
        self._offline_until = float("-inf")
        self.on_refined = on_refined
        self.cloud = CloudClient(
            endpoint,
            cloud_model,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            key_field=key_field,
            input_name=self.edge.input_name,
            sleep=sleep,
            token=token,
        )
        self.send_agreement = send_agreement
        self.store = Store(queue_path)
        self.last_replay: FlushReport | None = None

    @classmethod
    def from_deployment(
        cls, endpoint: str, edge_model_name: str, cache_dir: str | Path, threshold: float, **kwargs: Any
    ) -> TwoPhaseClient:
        """Fetch the edge model from the deployment into `cache_dir` (checksum verified), then build the client."""
        directory = fetch_model(endpoint, edge_model_name, Path(cache_dir) / edge_model_name, token=kwargs.get("token"))
        return cls(directory, endpoint, threshold, **kwargs)

    def close(self) -> None:
        """Close the SQLite file."""
        self.store.close()

    def __enter__(self) -> TwoPhaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- predict
    def predict(self, instances: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """Answer keyed instances (`{"key": k, "x": [features]}`), in input order, one Prediction per key."""
        keys, x = self._validate(instances)
        classes, confidences = self.edge.predict(x)
        out: list[Prediction] = [
            Prediction(k, int(c), self._label(int(c)), float(p), "edge", edge_class_id=int(c), edge_confidence=float(p))
            for k, c, p in zip(keys, classes, confidences, strict=True)
        ]
        low = [int(i) for i in np.argsort(confidences, kind="stable") if confidences[i] < self.threshold]
        allowed = [n for n in (self.max_per_call, self.rate.available()) if n is not None]
        admitted = low[: min(allowed)] if allowed else low
        for i in low[len(admitted) :]:
            out[i] = _replace(out[i], capped=True)
        if not admitted:
            return out
        self.rate.take(len(admitted))
        reached = False
        for start in range(0, len(admitted), self.max_batch):
            chunk = admitted[start : start + self.max_batch]
            if self.offline:  # known down: queue without paying the timeouts and retries again
                self._enqueue(chunk, keys, x, classes, confidences)
                for i in chunk:
                    out[i] = _replace(out[i], provisional=True)
                continue
            try:
                answers = self.cloud.predict([keys[i] for i in chunk], x[chunk].tolist())
            except CloudUnavailable as exc:
                log.warning("cloud unavailable, %d escalation(s) queued: %s", len(chunk), exc)
                self._offline_until = self.clock() + self.offline_cooldown
                self._enqueue(chunk, keys, x, classes, confidences)
                for i in chunk:
                    out[i] = _replace(out[i], provisional=True)
                continue
            except CloudRejected as exc:
                log.error("cloud rejected %d escalation(s), not retried: %s", len(chunk), exc)
                self._record_rejected(chunk, keys, x, classes, confidences, str(exc), "online")
                for i in chunk:
                    out[i] = _replace(out[i], error=str(exc))
                reached = True
                continue
            reached = True
            outcomes = []
            for i in chunk:
                answer = answers[keys[i]]
                out[i] = _replace(
                    out[i], class_id=answer.class_id, label=self._label(answer.class_id), confidence=answer.confidence,
                    phase="cloud",
                )  # fmt: skip
                outcomes.append(self._outcome(keys[i], int(classes[i]), float(confidences[i]), answer, "online"))
            self.store.record(outcomes)
        if reached and self.replay_on_success and self.store.pending_count():
            self.last_replay = self.flush()
            if self.on_refined and self.last_replay.refined:
                self.on_refined(self.last_replay.refined)
        if reached and self.send_agreement:
            self.report_agreement()
        return out

    def _validate(self, instances: Sequence[Mapping[str, Any]]) -> tuple[list[Key], np.ndarray]:
        if not isinstance(instances, Sequence) or isinstance(instances, str | bytes) or not instances:
            raise ValueError("instances must be a non-empty list of {key, x} objects")
        keys: list[Key] = []
        rows = []
        seen: dict[Key, int] = {}
        name = self.edge.input_name
        for index, inst in enumerate(instances):
            if not isinstance(inst, Mapping) or self.key_field not in inst or name not in inst:
                raise ValueError(f"instance {index}: expected an object with '{self.key_field}' and '{name}'")
            key = inst[self.key_field]
            if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
                raise ValueError(f"instance {index}: key must be a non-empty string or an integer, got {key!r}")
            if seen.setdefault(key, index) != index:
                raise ValueError(f"instance {index}: key {key!r} repeats instance {seen[key]}")
            row = inst[name]
            if (
                not isinstance(row, Sequence | np.ndarray)
                or len(row) != self.edge.n_features
                or not all(
                    isinstance(v, int | float | np.number) and not isinstance(v, bool) and math.isfinite(v) for v in row
                )
            ):
                raise ValueError(f"instance {index}: '{name}' must be {self.edge.n_features} finite numbers")
            keys.append(key)
            rows.append(row)
        return keys, np.asarray(rows, dtype=np.float32)

    def _label(self, class_id: int) -> str:
        labels = self.edge.labels
        return labels[class_id] if 0 <= class_id < len(labels) else str(class_id)

    def _outcome(self, key: Key, edge_class: int, edge_conf: float, answer: CloudAnswer | None, via: str,
                 error: str | None = None) -> Outcome:  # fmt: skip
        return Outcome(
            key=key,
            status="refined" if answer else "rejected",
            via=via,
            edge_model=f"{self.edge.name}@{self.edge.version}",
            edge_class=edge_class,
            edge_confidence=edge_conf,
            cloud_model=self.cloud.model,
            cloud_class=answer.class_id if answer else None,
            cloud_confidence=answer.confidence if answer else None,
            error=error,
            recorded_at=time.time(),
        )

    def _enqueue(self, idx: list[int], keys, x, classes, confidences) -> None:
        items = [(keys[i], x[i].tolist(), int(classes[i]), float(confidences[i])) for i in idx]
        self.store.enqueue(items, f"{self.edge.name}@{self.edge.version}")

    def _record_rejected(self, idx: list[int], keys, x, classes, confidences, error: str, via: str) -> None:
        outcomes = [self._outcome(keys[i], int(classes[i]), float(confidences[i]), None, via, error) for i in idx]
        self.store.record(outcomes, {keys[i]: x[i].tolist() for i in idx})

    # ---------------------------------------------------------------- queue
    @property
    def offline(self) -> bool:
        """Whether the cloud failed recently enough that `predict` does not try it (see `offline_cooldown`)."""
        return self.clock() < self._offline_until

    @property
    def queue_depth(self) -> int:
        """Escalations waiting for the cloud."""
        return self.store.pending_count()

    def flush(self, max_batches: int | None = None) -> FlushReport:
        """Replay the queue in keyed batches, oldest first, until it is empty or the cloud fails.

        Each key is refined (or rejected, on a 4xx) and reported exactly once, even across restarts and when
        several processes flush the same file. The rate cap does not apply: these escalations were admitted
        when they were queued.
        """
        report = FlushReport()
        batches = 0
        while max_batches is None or batches < max_batches:
            batch = self.store.pending(self.max_batch)
            if not batch:
                break
            batches += 1
            report.requests += 1
            keys = [p.key for p in batch]
            try:
                answers = self.cloud.predict(keys, [p.x for p in batch])
            except CloudUnavailable as exc:
                self._offline_until = self.clock() + self.offline_cooldown
                self.store.note_failure(keys, str(exc))
                report.error = str(exc)
                break
            except CloudRejected as exc:
                outcomes = [
                    self._outcome(p.key, p.edge_class, p.edge_confidence, None, "replay", str(exc)) for p in batch
                ]
                report.rejected += self.store.record(outcomes, {p.key: p.x for p in batch})
                continue
            self._offline_until = float("-inf")
            outcomes = [self._outcome(p.key, p.edge_class, p.edge_confidence, answers[p.key], "replay") for p in batch]
            report.refined += self.store.record(outcomes)
        report.remaining = self.store.pending_count()
        if report.refined and self.send_agreement:
            report.agreement_sent = self.report_agreement()
        return report

    def requeue_rejected(self) -> int:
        """Queue the escalations the cloud rejected again (after fixing the cause, e.g. the cloud model name)."""
        return self.store.requeue_rejected()

    # ---------------------------------------------------------------- edge-vs-cloud agreement
    def agreement_records(self, since: float | None = None, unreported: bool = False) -> list[dict[str, Any]]:
        """Keyed records of every escalation the cloud answered: edge answer next to cloud answer.

        The cloud's answer is a free label for the edge model: feed these to the evaluation (then `mark_reported`).
        """
        return [o.to_dict() for o in self.store.outcomes("refined", since=since, unreported=unreported)]

    def report_agreement(self, batch: int = 1000) -> int:
        """Send the answered escalations not reported yet to the cloud's evaluation (`POST /v1/edge/agreements`),
        oldest first, and mark them reported; returns how many went. A failed call leaves the rest for the next
        one (after the next escalation or `flush()`), so every record is delivered at least once."""
        records = self.agreement_records(unreported=True)
        sent = 0
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            try:
                self.cloud.request(
                    "POST", "/v1/edge/agreements", json.dumps(chunk).encode(), {"content-type": "application/json"}
                )
            except CloudError as exc:
                log.warning("agreement records not sent (%d left for later): %s", len(records) - sent, exc)
                break
            self.mark_reported([r["key"] for r in chunk])
            sent += len(chunk)
        return sent

    def mark_reported(self, keys: Sequence[Key]) -> None:
        """Flag records as delivered, so that `agreement_records(unreported=True)` returns only new ones."""
        self.store.mark_reported(keys)

    def agreement_summary(self, bucket_seconds: float = 3600.0) -> dict[str, Any]:
        """Edge-vs-cloud agreement overall and per time bucket (UNIX-time aligned), on escalated instances."""
        outcomes = self.store.outcomes("refined")
        buckets: dict[float, list[bool]] = {}
        for o in outcomes:
            buckets.setdefault(math.floor(o.recorded_at / bucket_seconds) * bucket_seconds, []).append(bool(o.agree))
        agree = sum(bool(o.agree) for o in outcomes)
        return {
            "edge_model": f"{self.edge.name}@{self.edge.version}",
            "cloud_model": self.cloud.model,
            "escalations_answered": len(outcomes),
            "agreement": agree / len(outcomes) if outcomes else None,
            "rejected": len(self.store.outcomes("rejected")),
            "queued": self.store.pending_count(),
            "buckets": [
                {"start": start, "n": len(v), "agreement": sum(v) / len(v)} for start, v in sorted(buckets.items())
            ],
        }


def _replace(p: Prediction, **changes: Any) -> Prediction:
    return Prediction(**{**asdict(p), **changes})
