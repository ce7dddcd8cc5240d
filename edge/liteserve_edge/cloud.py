"""Phase 2 transport: keyed TF Serving REST requests to the cloud model over the standard library's urllib, with
retries and backoff on connection errors, timeouts and 5xx (plus 408/429), and no retry on other 4xx."""

from __future__ import annotations

import http.client
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Key = str | int
# 408 and 429 are the client errors that mean "try again later" (API Gateway answers 429 when it throttles).
_RETRYABLE_4XX = {408, 429}
TOKEN_ENV = "LITESERVE_LOCAL_TOKEN"  # the local cloud's bearer token (`localcloud up` writes it to .localcloud/token)


def default_token() -> str | None:
    """The bearer token from ``LITESERVE_LOCAL_TOKEN``, or None."""
    return os.environ.get(TOKEN_ENV, "").strip() or None


class _DropAuthAcrossOrigins(urllib.request.HTTPRedirectHandler):
    """urllib copies every header to a redirect's target; the token must not follow one to another origin."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl)[:2] != urllib.parse.urlsplit(req.full_url)[:2]:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_DropAuthAcrossOrigins)


class CloudError(Exception):
    """Base class of cloud call failures."""


class CloudUnavailable(CloudError):
    """The cloud could not answer (connection error, timeout, 5xx, or an unreadable answer) after the retries."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class CloudRejected(CloudError):
    """The cloud refused the request with a 4xx: retrying the same request cannot succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CloudAnswer:
    """The cloud model's answer for one key."""

    class_id: int
    confidence: float


@dataclass
class CallStats:
    """Counters of what the client sent: logical requests and HTTP attempts (retries included)."""

    requests: int = 0
    attempts: int = 0
    instances: int = 0
    failures: int = 0


class CloudClient:
    """Calls `POST {endpoint}/v1/models/{model}:predict` with keyed instances and GETs deployment files.

    `token` (default: `LITESERVE_LOCAL_TOKEN`) goes out as `Authorization: Bearer <token>` (the local cloud's token,
    or a JWT for a deployment with the JWT authorizer), only to the endpoint's own origin: a presigned URL elsewhere
    carries its own credentials.
    """

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        key_field: str = "key",
        input_name: str = "x",
        sleep: Callable[[float], None] = time.sleep,
        token: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token or default_token()
        self._origin = urllib.parse.urlsplit(self.endpoint)[:2]
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.key_field = key_field
        self.input_name = input_name
        self.sleep = sleep
        self.stats = CallStats()

    def predict(self, keys: Sequence[Key], rows: Sequence[Sequence[float]]) -> dict[Key, CloudAnswer]:
        """One keyed batch request; returns the answer of every key, or raises CloudUnavailable / CloudRejected."""
        body = {"instances": [{self.key_field: k, self.input_name: list(r)} for k, r in zip(keys, rows, strict=True)]}
        path = f"/v1/models/{urllib.parse.quote(self.model)}:predict"
        self.stats.instances += len(keys)
        raw, _ = self.request("POST", path, json.dumps(body).encode(), {"content-type": "application/json"})
        try:
            predictions = json.loads(raw)["predictions"]
            answers = {}
            for p in predictions:
                probabilities = p["probabilities"]
                class_id = (
                    int(p["class_id"])
                    if "class_id" in p
                    else max(range(len(probabilities)), key=probabilities.__getitem__)
                )
                answers[p[self.key_field]] = CloudAnswer(class_id, float(probabilities[class_id]))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CloudUnavailable(f"unreadable answer from {path}: {exc!r}", 1) from None
        if len(predictions) != len(keys) or answers.keys() != set(keys):
            raise CloudUnavailable(f"answer from {path} does not hold exactly the {len(keys)} keys sent", 1)
        return answers

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Send with retries; returns (body, lower-cased headers) of a 2xx answer. `path` may be a full URL."""
        self.stats.requests += 1
        url = path if path.startswith(("http://", "https://")) else self.endpoint + path
        headers = dict(headers or {})
        if self.token and urllib.parse.urlsplit(url)[:2] == self._origin:
            headers["authorization"] = f"Bearer {self.token}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                # Exponential backoff with jitter, so that many devices coming back online do not retry in step.
                self.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
            self.stats.attempts += 1
            req = urllib.request.Request(url, data=body, method=method, headers=headers)
            try:
                with _OPENER.open(req, timeout=self.timeout) as resp:
                    return resp.read(), {k.lower(): v for k, v in resp.headers.items()}
            except urllib.error.HTTPError as exc:
                message = _error_message(exc)
                if 400 <= exc.code < 500 and exc.code not in _RETRYABLE_4XX:
                    self.stats.failures += 1
                    raise CloudRejected(exc.code, message) from None
                last = f"HTTP {exc.code}: {message}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        self.stats.failures += 1
        raise CloudUnavailable(f"{method} {url} failed after {self.retries + 1} attempt(s); last: {last}", attempt + 1)


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return exc.reason or ""
    try:
        doc: Any = json.loads(text)
        return str(doc.get("error") or doc.get("message") or text) if isinstance(doc, dict) else text
    except ValueError:
        return text[:300]
