"""API Gateway HTTP API (payload v2.0) events in, Lambda proxy responses out: the one HTTP adapter of every HTTP
function (route table, 405 with `Allow`, domain errors mapped to their status once, a catch-all 500)."""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from liteserve.errors import (
    BadRequest,
    InternalError,
    LiteserveError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)

if TYPE_CHECKING:  # annotations only: this module stays light for every HTTP function's cold start
    import numpy as np

    from liteserve.manifest import SignatureSource

_JSON_HEADERS = {"content-type": "application/json"}
_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# curl -d sends form-urlencoded by default; TF Serving ignores the content type, so we accept it as JSON too.
_JSON_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain")
_REPLACEMENT = "\ufffd".encode()
# Content-Encoding -> zlib wbits (gzip: tritonclient's request_compression_algorithm="gzip"; deflate is zlib format).
_ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


@dataclass(slots=True)
class Request:
    """The parts of an HTTP API event the services look at."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    body_was_binary: bool = False  # base64 in the event: the bytes are the client's own, no U+FFFD substitution
    _inflated: bytes | None = field(default=None, repr=False, compare=False)
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
        return cls(
            method.upper(),
            path,
            event.get("headers") or {},
            body,
            bool(event.get("isBase64Encoded")),
            query=event.get("queryStringParameters") or {},
        )

    def payload(self, max_bytes: int) -> bytes:
        """The body, decompressed when `Content-Encoding` says gzip or deflate; 413 past `max_bytes` either way."""
        if len(self.body) > max_bytes:
            raise PayloadTooLarge(f"body of {len(self.body)} bytes exceeds the limit of {max_bytes}")
        encoding = self.headers.get("content-encoding")
        if not encoding:
            return self.body
        encoding = encoding.strip().lower()
        if encoding == "identity":
            return self.body
        wbits = _ENCODINGS.get(encoding)
        if wbits is None:
            raise UnsupportedMediaType(
                f"content-encoding '{encoding}' is not supported; send the body uncompressed, gzip or deflate"
            )
        if self._inflated is not None:
            return self._inflated
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(self.body, max_bytes + 1)
        except zlib.error as exc:
            raise BadRequest(f"body is not valid {encoding} data: {exc}") from None
        if len(out) > max_bytes:
            raise PayloadTooLarge(f"{encoding} body inflates past the limit of {max_bytes} bytes")
        if not inflater.eof:
            raise BadRequest(f"{encoding} body is truncated")
        self._inflated = out
        return out

    def json(self, max_bytes: int, json_length: int | None = None) -> tuple[Any, bool]:
        """Decode the JSON body (its first `json_length` bytes when binary data follows, see `binary_tail`).
        Returns (document, whether the text holds a true/false token)."""
        body = self.body
        if len(body) > max_bytes or "content-encoding" in self.headers:
            body = self.payload(max_bytes)
        if json_length is not None:
            if not 0 < json_length <= len(body):
                raise BadRequest(
                    f"inference-header-content-length {json_length} does not fit a body of {len(body)} bytes"
                )
            body = body[:json_length]
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and not (
            ctype in _JSON_TYPES
            or ctype.endswith("+json")
            or (json_length is not None and ctype == "application/octet-stream")
        ):
            raise UnsupportedMediaType(f"content-type '{ctype}' is not supported; send application/json")
        if not body or body.isspace():
            raise BadRequest("request body is empty; send a JSON object")
        if _REPLACEMENT in body and not self.body_was_binary:
            # API Gateway hands text bodies over decoded, with every invalid UTF-8 byte replaced by U+FFFD: keys and
            # values would silently change. A client that means U+FFFD can send the escape \ufffd.
            raise BadRequest("body is not valid UTF-8 (invalid bytes arrive as U+FFFD); send UTF-8 JSON")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            doc = _lenient_json(body, exc)
        return doc, (b"true" in body or b"false" in body)

    def binary_tail(self, max_bytes: int, json_length: int | None) -> bytes:
        """The binary data after the first `json_length` bytes (b"" when None); call after `json`."""
        return b"" if json_length is None else self.payload(max_bytes)[json_length:]


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
    """The protocol's error body: `{"error": "..."}` (TF Serving and Open Inference Protocol agree); a 405 names the
    allowed methods in `Allow`."""
    allow = getattr(error, "allow", None)
    return response(error.status, {"error": error.message}, {"allow": ", ".join(allow)} if allow else None)


@dataclass(slots=True)
class Served:
    """What one successful inference did, for metrics and the prediction log."""

    model: SignatureSource
    signature: str
    keys: list | None
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    json_exchange: bool = True  # request and answer are one JSON document each (the prediction log inlines them)

    @property
    def instances(self) -> int:
        """Batch size of the inference."""
        return len(next(iter(self.inputs.values())))


@dataclass(slots=True)
class Result:
    """An endpoint's answer: status, document (JSON-serializable or `Binary`), extra headers, and what an inference
    did (`Served`, None for other routes) for the caller's metrics and prediction log."""

    status: int
    document: Any
    served: Served | None = None
    headers: dict[str, str] | None = None


Endpoint = Callable[..., Result]


class Router:
    """A route table: (method, path regex with named groups -> endpoint keyword arguments, endpoint)."""

    def __init__(self, routes: Iterable[tuple[str, str, Endpoint]]) -> None:
        self.routes = [(method, re.compile(pattern), endpoint) for method, pattern, endpoint in routes]

    def dispatch(self, request: Request) -> Result:
        """Call the endpoint of the first route matching method and path; unknown paths are 404, known paths with
        another method 405 (with the allowed methods)."""
        path = request.path.rstrip("/") or "/"
        allowed: list[str] = []
        for method, pattern, endpoint in self.routes:
            match = pattern.fullmatch(path)
            if match:
                if method == request.method:
                    return endpoint(request, **match.groupdict())
                allowed.append(method)
        if allowed:
            raise MethodNotAllowed(f"{request.method} {path} is not allowed; use {' or '.join(allowed)}", allowed)
        raise NotFound(f"no route for {request.method} {path}")


@dataclass(slots=True)
class Exchange:
    """One HTTP request's outcome: the Lambda proxy response, and what led to it."""

    response: dict[str, Any]
    request: Request | None = None
    result: Result | None = None
    error: LiteserveError | None = None


def serve(event: dict[str, Any], dispatch: Callable[[Request], Result]) -> Exchange:
    """Run an HTTP API event through `dispatch`. A LiteserveError answers with its status; any other exception is a
    bug: its trace goes to the log and the client gets 500 `{"error": "internal error"}`, never API Gateway's
    `{"message": ...}` that a raising handler would produce."""
    request = None
    try:
        request = Request.from_event(event)
        result = dispatch(request)
        return Exchange(response(result.status, result.document, result.headers), request, result)
    except LiteserveError as error:
        return Exchange(error_response(error), request, None, error)
    except Exception:
        from liteserve.observability import logger  # the bug path only: keeps Powertools out of this module's import

        logger.exception("unhandled error", extra={"path": event.get("rawPath")})
        error = InternalError("internal error")
        return Exchange(error_response(error), request, None, error)
