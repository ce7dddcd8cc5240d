"""AWS adapters of the batch pipeline: the jobs table (DynamoDB, conditional updates), the shard queue (SQS) and the
results cache (DynamoDB). boto3 clients are created lazily, once per container; S3 and EventBridge are the shared
adapters of `liteserve.adapters`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

import boto3
import orjson
from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from liteserve.adapters import MAX_DYNAMODB_KEY_BYTES, Pin

COUNTS = ("rows_in", "rows_predicted", "rows_rejected")


@dataclass
class Job:
    """A row of the jobs table: the job's current run (a job is one object key; every (re)start is a new run)."""

    job_id: str
    etag: str
    state: str
    source: str = ""
    run: int = 0
    version_id: str = ""
    shards_total: int | None = None
    done: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    model_version: str = ""
    created_at: float = 0.0
    planned_at: float | None = None
    finished_at: float | None = None
    worker_seconds: float = 0.0
    reason: str = ""
    published: bool = False

    @property
    def complete(self) -> bool:
        """Every shard is done or failed (only known once planning has set the total)."""
        return self.shards_total is not None and len(self.done) + len(self.failed) >= self.shards_total

    @property
    def pin(self) -> Pin:
        """The source object this run reads."""
        return Pin(self.etag, self.version_id)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        """Build from a DynamoDB item (sets come back as sets of Decimal)."""
        total = item.get("shards_total")
        return cls(
            job_id=item["job_id"],
            etag=item["etag"],
            state=item["state"],
            source=item.get("source", ""),
            run=int(item.get("run", 0)),
            version_id=item.get("version_id", ""),
            shards_total=int(total) if total is not None else None,
            done={int(s) for s in item.get("done", set())} - {-1},
            failed={int(s) for s in item.get("failed", set())} - {-1},
            counts={k: int(item.get(k, 0)) for k in COUNTS},
            options=orjson.loads(item.get("options", "{}")),
            model_version=item.get("model_version", ""),
            created_at=float(item.get("created_at", 0)),
            planned_at=_float(item.get("planned_at")),
            finished_at=_float(item.get("finished_at")),
            worker_seconds=float(item.get("worker_seconds", 0)),
            reason=item.get("reason", ""),
            published=bool(item.get("published", False)),
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class JobStore:
    """The jobs table. Every state change is a conditional update on the run it belongs to, so retries and races
    count once and a superseded run can change nothing."""

    def __init__(self, table: str) -> None:
        self.table_name = table

    @cached_property
    def _table(self) -> Any:
        return boto3.resource("dynamodb").Table(self.table_name)

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return Job.from_item(item) if item else None

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
        """Start a new run of a job, or None when this drop is already the job's current run (a repeated
        notification). A new run starts for a new job, new bytes (ETag), other options, a forced drop that is not
        the current run's (`drop` tells drops apart), or a run still PLANNING (its planner crashed). The run number
        grows by one, so every message, ledger entry and object of the old run is told apart from the new one's."""
        # `force` asks for a run; it does not change what a run computes, so it is no part of the options' identity.
        # The model version is: the same file dropped again after a promotion is predicted by the new version.
        identity = {**{k: v for k, v in options.items() if k != "force"}, "model_version": model_version}
        options_id = orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)
        condition = (
            Attr("job_id").not_exists()
            | Attr("state").eq("PLANNING")
            | Attr("etag").ne(pin.etag)
            | Attr("options_id").ne(options_id.decode())
        )
        if force:
            condition = condition | Attr("drop_id").ne(drop)
        fields = {
            "etag": pin.etag,
            "version_id": pin.version_id,
            "state": "PLANNING",
            "source": source,
            # sets cannot be empty in DynamoDB: -1 is a placeholder that Job.from_item drops
            "done": {-1},
            "failed": {-1},
            **dict.fromkeys(COUNTS, 0),
            "options": orjson.dumps(options).decode(),
            "options_id": options_id.decode(),
            "model_version": model_version,
            "drop_id": drop,
            "created_at": _now(),
            "worker_seconds": Decimal(0),
            "published": False,
        }
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        cleared = ("shards_total", "planned_at", "finished_at", "reason")
        names.update({f"#c{i}": name for i, name in enumerate(cleared)} | {"#run": "run"})
        expression = (
            "SET "
            + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
            + ", #run = if_not_exists(#run, :zero) + :one REMOVE "
            + ", ".join(f"#c{i}" for i in range(len(cleared)))
        )
        values = {f":f{i}": value for i, value in enumerate(fields.values())} | {":zero": 0, ":one": 1}
        try:
            item = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return Job.from_item(item)

    def planned(self, job_id: str, run: int, shards_total: int) -> Job | None:
        """Set the shard total once every shard message is sent; returns the job, or None if superseded."""
        return self._update(
            job_id,
            "SET shards_total = :t, #state = :running, planned_at = :now",
            Attr("run").eq(run) & Attr("state").eq("PLANNING"),
            {":t": shards_total, ":running": "RUNNING", ":now": _now()},
        )

    def shard_done(self, job_id: str, run: int, shard: int, counts: dict[str, int], seconds: float) -> Job | None:
        """Count a finished shard once; None if it was already counted (a duplicate delivery) or superseded."""
        return self._update(
            job_id,
            "ADD done :s, worker_seconds :sec, rows_in :i, rows_predicted :p, rows_rejected :r",
            Attr("run").eq(run)
            & Attr("state").is_in(["PLANNING", "RUNNING"])
            & ~Attr("done").contains(shard)
            & ~Attr("failed").contains(shard),
            {
                ":s": {shard},
                ":sec": Decimal(str(round(seconds, 3))),
                ":i": counts["rows_in"],
                ":p": counts["rows_predicted"],
                ":r": counts["rows_rejected"],
            },
        )

    def shard_failed(self, job_id: str, run: int, shard: int) -> Job | None:
        """Record a shard that exhausted its retries (from the DLQ); None if already settled or superseded."""
        return self._update(
            job_id,
            "ADD failed :s",
            Attr("run").eq(run)
            & Attr("state").is_in(["PLANNING", "RUNNING"])
            & ~Attr("done").contains(shard)
            & ~Attr("failed").contains(shard),
            {":s": {shard}},
        )

    def finish(self, job_id: str, run: int, state: str, reason: str = "") -> Job | None:
        """Move a complete run to SUCCEEDED or FAILED exactly once; None if another finalizer already did."""
        return self._update(
            job_id,
            "SET #state = :state, finished_at = :now, reason = :reason",
            Attr("run").eq(run) & Attr("state").eq("RUNNING"),
            {":state": state, ":now": _now(), ":reason": reason},
        )

    def published(self, job_id: str, run: int) -> Job | None:
        """Record that a finished run's manifest and event are out; None if superseded or already recorded."""
        return self._update(
            job_id,
            "SET published = :yes",
            Attr("run").eq(run) & Attr("state").is_in(["SUCCEEDED", "FAILED"]) & Attr("published").eq(False),
            {":yes": True},
        )

    def fail_planning(self, job_id: str, run: int, reason: str) -> Job | None:
        """A file that cannot be planned at all (unsupported type, bad header) fails its run."""
        return self._update(
            job_id,
            "SET #state = :failed, finished_at = :now, reason = :reason, shards_total = :zero",
            Attr("run").eq(run) & Attr("state").eq("PLANNING"),
            {":failed": "FAILED", ":now": _now(), ":reason": reason, ":zero": 0},
        )

    def _update(self, job_id: str, expression: str, condition: Any, values: dict[str, Any]) -> Job | None:
        kwargs: dict[str, Any] = {}
        if "#state" in expression:
            kwargs["ExpressionAttributeNames"] = {"#state": "state"}
        try:
            item = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                **kwargs,
            )["Attributes"]
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return Job.from_item(item)


def _now() -> Decimal:
    return Decimal(str(round(time.time(), 3)))


class ShardQueue:
    """The SQS queue of shard pointers."""

    def __init__(self, url: str) -> None:
        self.url = url

    @cached_property
    def _sqs(self) -> Any:
        return boto3.client("sqs")

    def send(self, messages: list[dict[str, Any]]) -> None:
        """Send shard messages, ten per call; raises if any is refused."""
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(i), "MessageBody": orjson.dumps(m).decode()}
                for i, m in enumerate(messages[start : start + 10])
            ]
            failed = self._sqs.send_message_batch(QueueUrl=self.url, Entries=entries).get("Failed")
            if failed:
                raise RuntimeError(f"SQS refused shard messages: {failed}")


class ResultsCache:
    """Batch predictions by (model, client key) (DynamoDB, with TTL), for `GET /v1/predictions/{key}?model=NAME`.

    The item key is `<model>#<key as JSON>`: two models keep their own answers for the same key, and the key's JSON
    type is kept (`1` and `"1"` are two keys, as they are two keys in a request)."""

    def __init__(self, table: str, ttl_seconds: int = 7 * 24 * 3600) -> None:
        self.table_name = table
        self.ttl_seconds = ttl_seconds

    @cached_property
    def _table(self) -> Any:
        return boto3.resource("dynamodb").Table(self.table_name)

    @staticmethod
    def item_key(model: str, key: object) -> str:
        """The table's key of a client key under a model."""
        return f"{model}#{orjson.dumps(key).decode()}"

    @staticmethod
    def key_room(model: str) -> int:
        """How many bytes a client key (as JSON) may take beside the model's name in the table's key."""
        return MAX_DYNAMODB_KEY_BYTES - len(f"{model}#".encode())

    def put_many(self, model: str, version: str, job_id: str, run: int, rows: list[tuple[object, str]]) -> None:
        """Store (client key, prediction JSON) rows of one shard; the batch writer retries unprocessed items."""
        expires = int(time.time()) + self.ttl_seconds
        with self._table.batch_writer(overwrite_by_pkeys=["key"]) as writer:
            for key, prediction in rows:
                writer.put_item(
                    Item={
                        "key": self.item_key(model, key),
                        "model": model,
                        "model_version": version,
                        "job_id": job_id,
                        "run": run,
                        "prediction": prediction,
                        "expires_at": expires,
                    }
                )

    def get(self, model: str, key: object) -> dict[str, Any] | None:
        """The cached prediction document of a model's key, or None (expired items count as absent)."""
        item = self._table.get_item(Key={"key": self.item_key(model, key)}).get("Item")
        if not item or int(item.get("expires_at", 0)) < time.time():
            return None
        return {
            **orjson.loads(item["prediction"]),
            "key": key,
            "model": model,
            "model_version": item.get("model_version"),
            "job_id": item["job_id"],
            "run": int(item.get("run", 0)),
            "expires_at": int(item["expires_at"]),
        }
