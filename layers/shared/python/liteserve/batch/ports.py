"""The batch-only interfaces `Pipeline` takes (jobs ledger, shard queue, results cache); the shared ones (objects,
events) are in `liteserve.ports`. Boto3 adapters: `liteserve.batch.storage`; in-memory fakes: tests/fakes.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from liteserve.adapters import Pin
    from liteserve.batch.storage import Job


class JobLedger(Protocol):
    """The batch jobs table (DynamoDB: `JobStore`): every method but `get` is a conditional update on the run and
    returns None when its condition fails (superseded, already counted, already settled)."""

    def get(self, job_id: str) -> Job | None: ...

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
    ) -> Job | None: ...

    def planned(self, job_id: str, run: int, shards_total: int) -> Job | None: ...

    def shard_done(self, job_id: str, run: int, shard: int, counts: dict[str, int], seconds: float) -> Job | None: ...

    def shard_failed(self, job_id: str, run: int, shard: int) -> Job | None: ...

    def finish(self, job_id: str, run: int, state: str, reason: str = "") -> Job | None: ...

    def published(self, job_id: str, run: int) -> Job | None: ...

    def fail_planning(self, job_id: str, run: int, reason: str) -> Job | None: ...


class Shards(Protocol):
    """The shard queue (SQS: `ShardQueue`)."""

    def send(self, messages: list[dict[str, Any]]) -> None: ...


class Cache(Protocol):
    """The batch results cache by (model, client key) (DynamoDB: `ResultsCache`)."""

    def put_many(self, model: str, version: str, job_id: str, run: int, rows: list[tuple[object, str]]) -> None: ...

    def get(self, model: str, key: object) -> dict[str, Any] | None: ...
