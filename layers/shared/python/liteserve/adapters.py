"""AWS adapters shared by every area: S3 objects (`ObjectStore`, reads pinned to an ETag), the event bus
(EventBridge) and DynamoDB's key-size limit. boto3 clients are created lazily, once per container. The batch
pipeline's own tables and queue are in `liteserve.batch.storage`; the labels table in `liteserve.evaluation.labels`."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
import orjson
from botocore.exceptions import ClientError

READ_CHUNK = 1024 * 1024
MAX_DYNAMODB_KEY_BYTES = 2048  # a DynamoDB partition key value is at most 2048 bytes (UTF-8)


class SourceChanged(Exception):
    """The object no longer has the ETag (or version) a read was pinned to: it was replaced or deleted."""


def key_bytes(key: object) -> int:
    """How many bytes a key takes as a DynamoDB string key."""
    return len(str(key).encode("utf-8", "surrogatepass"))


class ObjectStore:
    """One S3 bucket."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @cached_property
    def _s3(self) -> Any:
        return boto3.client("s3")

    def head(self, key: str) -> dict[str, Any]:
        """Size, ETag (unquoted), version id ('' when the bucket is not versioned), last-modified time and user
        metadata of an object."""
        meta = self._s3.head_object(Bucket=self.bucket, Key=key)
        return {
            "size": meta["ContentLength"],
            "etag": meta["ETag"].strip('"'),
            "version_id": meta.get("VersionId") or "",
            "last_modified": meta["LastModified"].isoformat() if meta.get("LastModified") else "",
            "metadata": meta.get("Metadata", {}),
        }

    def stream(
        self, key: str, *, gunzip: bool = False, max_bytes: int | None = None, pin: Pin | None = None
    ) -> Iterator[bytes]:
        """The object's bytes in chunks, decompressed if asked; stops with ValueError past `max_bytes` (counted
        after decompression, so a gzip bomb stops at the cap, not when memory runs out)."""
        body = self._get(key, None, pin)["Body"]
        source: Any = gzip.GzipFile(fileobj=body) if gunzip else body
        total = 0
        while chunk := source.read(READ_CHUNK):
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise ValueError(f"inflates to more than {max_bytes} bytes (the decompression cap)")
            yield chunk

    def read(self, key: str, byte_range: tuple[int, int] | None = None, pin: Pin | None = None) -> bytes:
        """A whole object, or the inclusive byte range of it; SourceChanged if it no longer matches `pin`."""
        return self._get(key, byte_range, pin)["Body"].read()

    def _get(self, key: str, byte_range: tuple[int, int] | None, pin: Pin | None) -> Any:
        kwargs: dict[str, Any] = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        if pin is not None:
            kwargs["IfMatch"] = f'"{pin.etag}"'
            if pin.version_id:
                kwargs["VersionId"] = pin.version_id
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=key, **kwargs)
        except ClientError as err:
            code = err.response["Error"]["Code"]
            if pin is not None and code in ("PreconditionFailed", "412", "NoSuchKey", "NoSuchVersion"):
                raise SourceChanged(f"{key} no longer has ETag {pin.etag}: {code}") from err
            raise

    def put(self, key: str, data: bytes, content_type: str = "application/x-ndjson") -> None:
        """Write (or overwrite: every batch write is idempotent) one object."""
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def keys(self, prefix: str) -> list[str]:
        """Every key under a prefix."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def delete(self, keys: list[str]) -> None:
        """Delete exactly these objects (missing ones are no error)."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def exists(self, key: str) -> bool:
        """Whether an object exists."""
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


@dataclass(frozen=True)
class Pin:
    """The exact object a run reads: its ETag and, in a versioned bucket, its version id."""

    etag: str
    version_id: str = ""


class EventBus:
    """An EventBridge bus (default bus when the name is empty)."""

    def __init__(self, name: str = "default", source: str = "liteserve.batch") -> None:
        self.name = name or "default"
        self.source = source

    @cached_property
    def _events(self) -> Any:
        return boto3.client("events")

    def put(self, detail_type: str, detail: dict[str, Any]) -> None:
        """Put one event; raises if EventBridge refuses it."""
        out = self._events.put_events(
            Entries=[
                {
                    "Source": self.source,
                    "DetailType": detail_type,
                    "Detail": orjson.dumps(detail).decode(),
                    "EventBusName": self.name,
                }
            ]
        )
        if out.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused {detail_type}: {out['Entries']}")
