"""moto's server as the local cloud runs it: ``python -m localcloud.motoserver [--log FILE] [moto.server args]``.

It serves like ``python -m localcloud.motopatch`` (moto.server with the local cloud's Lambda patches), plus:

- DynamoDB requests are handled one at a time. moto evaluates an UpdateItem's condition and its ADD/SET actions
  without a lock, so concurrent updates of one item lose increments (measured: 4 threads x 300 conditional ADDs kept
  ~93 % of them); DynamoDB applies each write atomically, and the batch job counts rely on it.
- ``--log FILE``: moto's state survives a restart. FILE is a write-ahead log of mutating API calls, replayed into the
  fresh backends in-process *before* the port is bound (clients get "connection refused" and retry; they never see
  a half-restored state); every new mutating request is appended to it through moto's recorder hook, in moto's
  recorder format. A moto reset is logged too, and a replay starts after the last one;
  ``/moto-api/recorder/reset-recording`` empties the log.

What the log does not restore, by design:
- SQS receives, deletes and visibility changes. They are bound to receipt handles, which moto draws at random, so
  they cannot be replayed: every message sent since the last reset is delivered again after a restart
  (at-least-once delivery). Consumers must be idempotent (the batch pipeline is).
- Reads (GET/HEAD, Get*/Describe*/List*/Query/Scan/Receive*) are not recorded at all: they change nothing.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("localcloud.motoserver")

READ_PREFIXES = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "Receive")
# Receipt-handle bound: meaningless in a replay (handles are random), see the module docstring.
SQS_HANDLE_ACTIONS = {"DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch"}
RESET_PATH = "/moto-api/reset"
DROPPED_HEADERS = {"content-length", "transfer-encoding", "host"}


def _action(headers: Mapping[str, str], body: bytes | None) -> str | None:
    """The API action of a JSON-protocol (X-Amz-Target) or query-protocol (Action=) request, if visible."""
    target = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), None)
    if target:
        return target.rsplit(".", 1)[-1]
    if body and (body.startswith(b"Action=") or b"&Action=" in body):
        values = parse_qs(body.decode("utf-8", "replace")).get("Action")
        return values[0] if values else None
    return None


def mutating(method: str, path: str, headers: Mapping[str, str], body: bytes | None = None) -> bool:
    """Whether a request may change moto's state and can be replayed (see the module docstring)."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    if path.startswith("/moto-api/"):
        return path == RESET_PATH
    action = _action(headers, body)
    if action is None:
        return True
    return not (action.startswith(READ_PREFIXES) or action in SQS_HANDLE_ACTIONS)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The log's entries since its last reset. A torn last entry (moto killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    good = 0
    with path.open("rb") as fh:
        for line in fh:
            try:
                entries.append(json.loads(line))
            except ValueError:
                log.warning("%s: dropping a torn entry at byte %d", path, good)
                break
            good += len(line)
    if good != path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(good)
    last_reset = max((i for i, e in enumerate(entries) if urlsplit(e["url"]).path == RESET_PATH), default=-1)
    return entries[last_reset + 1 :]


def _body(entry: Mapping[str, Any]) -> bytes:
    body = entry.get("body") or b""
    if entry.get("body_encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else body


def replay(entries: Iterable[Mapping[str, Any]], app: Any) -> dict[str, int]:
    """Send recorded requests to a WSGI app (moto's dispatcher) in order; returns counts by outcome."""
    from werkzeug.test import Client

    client = Client(app)
    counts = {"replayed": 0, "refused": 0, "skipped": 0}
    for entry in entries:
        url = urlsplit(entry["url"])
        headers = {k: v for k, v in (entry.get("headers") or {}).items() if k.lower() not in DROPPED_HEADERS}
        data = _body(entry)
        if not mutating(entry["method"], url.path, headers, data):
            counts["skipped"] += 1
            continue
        resp = client.open(
            path=url.path,
            base_url=f"{url.scheme}://{url.netloc}",
            query_string=url.query,
            method=entry["method"],
            headers=headers,
            data=data,
            # moto routes S3 on the path as it arrived (percent-encoded keys), which werkzeug would decode
            environ_overrides={"RAW_URI": url.path + (f"?{url.query}" if url.query else "")},
        )
        resp.close()
        # Refusals are expected: a conditional write refused the first time is refused again.
        counts["refused" if resp.status_code >= 400 else "replayed"] += 1
    return counts


def install_recording(path: Path) -> None:
    """From now on append every mutating request to ``path``, one JSON line each (moto's recorder format)."""
    from moto.moto_api import recorder

    original = recorder._record_request
    lock = threading.Lock()  # moto writes an entry in two unlocked writes: concurrent requests could interleave

    def record(request: Any, body: bytes | None = None) -> None:
        if recorder._user_enabled and mutating(request.method, request.path, request.headers):
            with lock:
                original(request, body)

    recorder._location = str(path)
    recorder._record_request = record  # type: ignore[method-assign]
    recorder.start_recording()


def restore(path: Path) -> dict[str, int]:
    """Replay the log at ``path`` into this process's moto backends (nothing is recorded meanwhile)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    entries = read_log(path)
    return replay(entries, DomainDispatcherApplication(create_backend_app)) if entries else {"replayed": 0}


def atomic_dynamodb() -> None:
    """Handle one DynamoDB request at a time, as DynamoDB applies each write atomically (idempotent)."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "_localcloud_atomic", False):
        return
    lock = threading.Lock()

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    call_action._localcloud_atomic = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """Patch moto; with ``--log`` restore from the log and record into it; then serve (``localcloud.motopatch``)."""
    from localcloud import motopatch

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--log", type=Path, help="persist the state: the write-ahead log (JSON lines)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    atomic_dynamodb()
    if args.log:
        motopatch.patch(motopatch.base_url(rest))  # replay through the same (patched) models the server will use
        started = time.monotonic()
        counts = restore(args.log)
        log.info("restored %s from %s in %.2f s", counts, args.log, time.monotonic() - started)
        install_recording(args.log)
    motopatch.main(rest)


if __name__ == "__main__":
    main()
