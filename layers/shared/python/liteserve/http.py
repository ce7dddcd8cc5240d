"""API Gateway HTTP API (payload v2.0) events in, Lambda proxy responses out; errors mapped to HTTP once."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from liteserve.errors import BadRequest, LiteserveError, PayloadTooLarge, UnsupportedMediaType

_JSON_HEADERS = {"content-type": "application/json"}
_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# curl -d sends form-urlencoded by default; TF Serving ignores the content type, so we accept it as JSON too.
_JSON_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain")
_REPLACEMENT = "\ufffd".encode()


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP API event the services look at."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)  # repeated names arrive comma-joined (payload v2.0)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Request:
        """Read an HTTP API payload v2.0 event (header names are already lower-case in v2.0)."""
        context = event.get("requestContext") or {}
        method = (context.get("http") or {}).get("method") or "GET"
        path = event.get("rawPath") or "/"
        stage = context.get("stage")
        if stage and stage != "$default" and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
        raw = event.get("body") or ""
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw, validate=True)
            except ValueError:
                raise BadRequest("body is not valid base64") from None
        else:
            body = raw.encode() if isinstance(raw, str) else raw
        return cls(method.upper(), path, event.get("headers") or {}, body, event.get("queryStringParameters") or {})

    def json(self, max_bytes: int) -> tuple[Any, bool]:
        """Decode the JSON body. Returns (document, whether the text holds a true/false token)."""
        if len(self.body) > max_bytes:
            raise PayloadTooLarge(f"body of {len(self.body)} bytes exceeds the limit of {max_bytes}")
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and not (ctype in _JSON_TYPES or ctype.endswith("+json")):
            raise UnsupportedMediaType(f"content-type '{ctype}' is not supported; send application/json")
        if not self.body or self.body.isspace():
            raise BadRequest("request body is empty; send a JSON object")
        if _REPLACEMENT in self.body:
            # API Gateway hands text bodies over decoded, with every invalid UTF-8 byte replaced by U+FFFD: keys and
            # values would silently change. A client that means U+FFFD can send the escape \ufffd.
            raise BadRequest("body is not valid UTF-8 (invalid bytes arrive as U+FFFD); send UTF-8 JSON")
        try:
            doc = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            doc = _lenient_json(self.body, exc)
        return doc, (b"true" in self.body or b"false" in self.body)


def _lenient_json(body: bytes, error: orjson.JSONDecodeError) -> Any:
    """orjson rejects NaN/Infinity literals; stdlib json reads them so that validation can name the instance."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(f"body is not valid JSON: {error}") from None


@dataclass(frozen=True)
class Binary:
    """A non-JSON response body (e.g. a model file), sent base64-encoded as the Lambda proxy format requires."""

    content: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] | None = None


def response(status: int, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Lambda proxy response with a JSON body (numpy arrays serialized natively), or a `Binary` one."""
    if isinstance(payload, Binary):
        return {
            "statusCode": status,
            "headers": {"content-type": payload.content_type, **(payload.headers or {}), **(headers or {})},
            "body": base64.b64encode(payload.content).decode(),
            "isBase64Encoded": True,
        }
    return {
        "statusCode": status,
        "headers": {**_JSON_HEADERS, **(headers or {})},
        "body": orjson.dumps(payload, option=_DUMP_OPTIONS).decode(),
        "isBase64Encoded": False,
    }


def error_response(error: LiteserveError) -> dict[str, Any]:
    """The protocol's error body: `{"error": "..."}` (TF Serving and Open Inference Protocol agree)."""
    return response(error.status, {"error": error.message})
