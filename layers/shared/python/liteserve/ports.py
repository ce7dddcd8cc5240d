"""The small interfaces the orchestrators (`batch.jobs.Pipeline`, `evaluation.evaluate.Evaluator`) need from their
adapters (the batch-only ones are in `liteserve.batch.ports`). The boto3-backed adapters implement them in production
(`from_env()`); in-memory fakes (tests/fakes.py) implement them in unit tests, so planning and evaluation decisions
are tested without moto. Each lists only the methods an orchestrator calls; the adapters' own behaviour (conditional
writes, pinned reads) is tested against moto.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from liteserve.adapters import Pin
    from liteserve.manifest import Manifest


class Objects(Protocol):
    """One bucket (S3: `ObjectStore`). A read pinned to a `Pin` raises `SourceChanged` when the object was replaced
    or deleted; `head` of a missing key raises botocore's ClientError with code 404, as S3 does."""

    bucket: str

    def head(self, key: str) -> dict[str, Any]: ...

    def stream(
        self, key: str, *, gunzip: bool = False, max_bytes: int | None = None, pin: Pin | None = None
    ) -> Iterator[bytes]: ...

    def read(self, key: str, byte_range: tuple[int, int] | None = None, pin: Pin | None = None) -> bytes: ...

    def put(self, key: str, data: bytes, content_type: str = ...) -> None: ...

    def keys(self, prefix: str) -> list[str]: ...

    def delete(self, keys: list[str]) -> None: ...

    def exists(self, key: str) -> bool: ...


class Events(Protocol):
    """An event bus (EventBridge: `EventBus`)."""

    def put(self, detail_type: str, detail: dict[str, Any]) -> None: ...


class Labels(Protocol):
    """Ground truth by key (DynamoDB: `LabelStore`): the items (key, label, time in ms) received in [start, end]."""

    def received(self, start: float, end: float) -> Iterable[dict[str, Any]]: ...


class Claims(Protocol):
    """The once-per-window retrain/alert claims with a cooldown (DynamoDB: `DecisionStore`)."""

    def claim(self, model: str, window_id: str, now: float, cooldown_hours: float) -> str: ...

    def sent(self, model: str, window_id: str, now: float) -> None: ...


class Routing(Protocol):
    """What the evaluator reads from the model registry (`Registry`): the live routing record and the manifests of
    registered versions."""

    def live(self, model: str) -> dict[str, Any] | None: ...

    def manifest(self, model: str, version: str) -> Manifest | None: ...
