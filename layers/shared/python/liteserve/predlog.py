"""Prediction log: one stdout line per successful online prediction, shipped off the hot path.

Lambda sends stdout to CloudWatch Logs; a subscription filter (`{ $.liteserve = "prediction" }`) streams the lines
to Kinesis Data Firehose, which writes them to S3 under `predictions/online/YYYY/MM/DD/HH/` (see template.yaml).
The handler never waits on the network for it. The line is composed by string concatenation around the raw request
and response bodies, so nothing is serialized twice:

    {"liteserve":"prediction","time":..,"request_id":..,"model":..,"version":..,"signature":..,
     "protocol":"tfserving"|"v2","request":<request body>,"response":<response body>}

Bodies too large for one CloudWatch log event (256 KB) fall back to one line per instance, built from `Served`:

    {"liteserve":"prediction.instance","time":..,...,"key":..,"inputs":{name: [..]},"outputs":{..}}

A request the API refused (a client mistake on an inference route) is one line too, so the evaluation can watch the
rejection rate without labels:

    {"liteserve":"prediction.rejected","time":..,"request_id":..,"model":..,"protocol":..,"status":400,"kind":..}

`parse_line` turns either form back into per-key records (see `liteserve.records`).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from liteserve import settings

if TYPE_CHECKING:
    from liteserve.http import Served

PREFIX = '{"liteserve":"prediction"'
INSTANCE_KIND = "prediction.instance"
REJECTED_KIND = "prediction.rejected"
# A CloudWatch Logs event holds at most 256 KB; keep the inline form well under it with the envelope.
DEFAULT_MAX_INLINE_BYTES = 200 * 1024


class PredictionLog:
    """Writes prediction lines to a text stream (stdout by default), sampled."""

    def __init__(
        self,
        sample_rate: float = 1.0,
        max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES,
        write: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample rate must be in [0, 1], got {sample_rate}")
        self.sample_rate = sample_rate
        self.max_inline_bytes = max_inline_bytes
        self._write = write
        self._clock = clock
        self._rng = rng

    @classmethod
    def from_env(cls) -> PredictionLog:
        """LITESERVE_LOG_SAMPLE_RATE (default 1.0) and LITESERVE_LOG_MAX_INLINE_BYTES."""
        return cls(
            sample_rate=float(os.environ.get(settings.LOG_SAMPLE_RATE, "1.0")),
            max_inline_bytes=int(os.environ.get(settings.LOG_MAX_INLINE_BYTES, DEFAULT_MAX_INLINE_BYTES)),
        )

    def record(self, served: Served, protocol: str, request_body: str, response_body: str, request_id: Any) -> int:
        """Log one prediction (or skip it by sampling). Returns the number of lines written."""
        if self.sample_rate < 1.0 and self._rng() >= self.sample_rate:
            return 0
        write = self._write or sys.stdout.write
        head = (  # inline, not _head(): this runs on every request
            f'{PREFIX},"time":{self._clock():.3f},"request_id":{_js(request_id)},"model":{_js(served.model.name)},'
            f'"version":{_js(served.model.version)},"signature":{_js(served.signature)},"protocol":"{protocol}"'
        )
        if len(request_body) + len(response_body) <= self.max_inline_bytes:
            # Valid JSON has no raw newline inside a string, so outside them a newline is whitespace: a space keeps
            # the document equal and the record on one line (each line is one CloudWatch log event).
            if "\n" in request_body or "\r" in request_body:
                request_body = request_body.replace("\r", " ").replace("\n", " ")
            write(f'{head},"request":{request_body},"response":{response_body}}}\n')
            return 1
        lines = instance_lines(served, head.replace('"prediction"', f'"{INSTANCE_KIND}"', 1))
        write("".join(lines))
        return len(lines)

    def rejected(self, model: str, protocol: str, status: int, kind: str, request_id: Any) -> int:
        """Log one refused inference request (sampled like the predictions). Returns the number of lines written."""
        if self.sample_rate < 1.0 and self._rng() >= self.sample_rate:
            return 0
        (self._write or sys.stdout.write)(
            f'{{"liteserve":"{REJECTED_KIND}","time":{self._clock():.3f},"request_id":{_js(request_id)},'
            f'"model":{_js(model)},"protocol":"{protocol}","status":{int(status)},"kind":{_js(kind)}}}\n'
        )
        return 1

    def record_instances(self, served: Served, protocol: str, request_id: Any) -> int:
        """Log one prediction in the per-instance form (for requests whose body is not one JSON document of the
        protocol, e.g. binary tensors). Returns the number of lines written."""
        if self.sample_rate < 1.0 and self._rng() >= self.sample_rate:
            return 0
        lines = instance_lines(served, _head(served, protocol, request_id, self._clock(), INSTANCE_KIND))
        (self._write or sys.stdout.write)("".join(lines))
        return len(lines)


def _head(served: Served, protocol: str, request_id: Any, now: float, kind: str = "prediction") -> str:
    return (
        f'{{"liteserve":"{kind}","time":{now:.3f},"request_id":{_js(request_id)},"model":{_js(served.model.name)},'
        f'"version":{_js(served.model.version)},"signature":{_js(served.signature)},"protocol":"{protocol}"'
    )


def instance_lines(served: Served, head: str) -> list[str]:
    """One line per instance: the envelope, the key, every input's row (by name) and every output's row."""
    keys = served.keys if served.keys is not None else [None] * served.instances
    lines = []
    for i, key in enumerate(keys):
        body = orjson.dumps(
            {
                "key": key,
                "inputs": {k: _plain(v[i]) for k, v in served.inputs.items()},
                "outputs": {k: _plain(v[i]) for k, v in served.outputs.items()},
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        ).decode()
        lines.append(f"{head},{body[1:]}\n")
    return lines


def _plain(value: Any) -> Any:
    """One instance's value for orjson: numeric numpy values as they are; text (bytes) as a string."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def _js(value: Any) -> str:
    return orjson.dumps(value).decode()
