"""Load test of the HTTP API on 127.0.0.1: keyed TF Serving predict requests from N threads for a bounded time and
request count; every answer is checked (status 200, keys back in order). Prints JSON: throughput, p50/p99, errors,
and the same figures at concurrency 1 measured first in the same process (the baseline the scaling ratio uses).

    python -m bench.load                      # starts its own local cloud: 60 s at concurrency 16
    python -m bench.load --seconds 20         # shorter
    python -m bench.load --url http://127.0.0.1:3000 --seconds 10 --concurrency 4   # against `make up`

Against `make up` the bearer token comes from LITESERVE_LOCAL_TOKEN, else the local state folder's token file.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Client:
    """One keep-alive HTTP/1.1 connection per thread, as real clients keep them (a new TCP connection per request
    would measure the local server's accept backlog instead of the API); reconnects after a failure."""

    def __init__(self, url: str, timeout: float, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path, self.timeout = parts.hostname, parts.port or 80, parts.path, timeout
        self.headers = {"content-type": "application/json", **headers}
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, bytes]:
        """Status and body; raises OSError/HTTPException on connection failures (after closing the connection)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request("POST", self.path, body=body, headers=self.headers)
            if hasattr(socket, "TCP_QUICKACK"):
                # The local gateway writes headers and body in two segments; with Nagle on its side and delayed
                # ACKs on ours every keep-alive answer would wait ~40 ms. Linux resets quick-ACK mode: set it each time.
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise


class Run:
    """One load phase: `concurrency` threads until `seconds` pass or `max_requests` are sent, whichever is first."""

    def __init__(
        self,
        url: str,
        width: int,
        instances: int,
        seconds: float,
        max_requests: int,
        timeout: float,
        headers: dict[str, str],
    ):
        self.url, self.width, self.instances, self.headers = url, width, instances, headers
        self.deadline_s, self.max_requests, self.timeout = seconds, max_requests, timeout
        self.lock = threading.Lock()
        self.issued = 0
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()

    def _take(self) -> bool:
        with self.lock:
            if self.issued >= self.max_requests:
                return False
            self.issued += 1
            return True

    def _worker(self, index: int, stop_at: float) -> None:
        rng = random.Random(index)
        client = Client(self.url, self.timeout, self.headers)
        n = 0
        while time.monotonic() < stop_at and self._take():
            keys = [f"t{index}-{n}-{i}" for i in range(self.instances)]
            n += 1
            rows = [{"key": k, "x": [rng.randint(0, 16) for _ in range(self.width)]} for k in keys]
            body = json.dumps({"instances": rows}).encode()
            started = time.perf_counter()
            try:
                status, payload = client.post(body)
            except (OSError, http.client.HTTPException) as exc:
                kind = f"connection: {type(exc).__name__}"
            else:
                elapsed = time.perf_counter() - started
                kind = None
                if status != 200:
                    kind = f"HTTP {status}"
                else:
                    try:
                        got = [p["key"] for p in json.loads(payload)["predictions"]]
                    except (ValueError, KeyError, TypeError):
                        got = None
                    if got != keys:
                        kind = "wrong or missing keys"
            with self.lock:
                if kind:
                    self.errors[kind] += 1
                else:
                    self.latencies.append(elapsed)

    def go(self, concurrency: int) -> dict:
        """Run the phase; its figures as a dict."""
        started = time.monotonic()
        stop_at = started + self.deadline_s
        threads = [threading.Thread(target=self._worker, args=(i, stop_at), daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.deadline_s + self.timeout + 5)  # bounded even if a request hangs
        wall = time.monotonic() - started
        lat = np.asarray(self.latencies) * 1000
        done = len(self.latencies)
        return {
            "concurrency": concurrency,
            "seconds": round(wall, 2),
            "requests": done + sum(self.errors.values()),
            "ok": done,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "throughput_rps": round(done / wall, 1) if wall else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if done else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if done else None,
            "max_ms": round(float(lat.max()), 2) if done else None,
        }


@contextlib.contextmanager
def api(url: str | None) -> Iterator[tuple[str, dict[str, str]]]:
    """(base URL, auth header) of the given API (must be on 127.0.0.1/localhost), or of a local cloud of
    template.yaml started for the run."""
    from localcloud.auth import bearer, read_token

    if url:
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"refusing to load-test {url}: only the local API on 127.0.0.1")
        token = read_token(os.environ.get("LOCALCLOUD_STATE_DIR") or ROOT / ".localcloud")
        if not token:
            raise SystemExit("no API token: set LITESERVE_LOCAL_TOKEN or start the API with `make up`")
        yield url.rstrip("/"), bearer(token)
        return
    from localcloud import LocalCloud

    with (
        tempfile.TemporaryDirectory(prefix="liteserve-load-") as state,
        LocalCloud(ROOT / "template.yaml", state_dir=state, moto_port=0, api_port=0, schedules=False) as lc,
    ):
        yield lc.api_url, bearer(lc.token)


def main(argv: list[str] | None = None) -> dict:
    """Parse flags, run the baseline and the load phase, print and return the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="API base URL on 127.0.0.1 (default: start a local cloud)")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--seconds", type=float, default=60.0, help="load phase length (default 60)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=200_000, help="stop after this many requests")
    parser.add_argument("--instances", type=int, default=1, help="keyed instances per request")
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help="concurrency-1 phase first (0: skip)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request")
    args = parser.parse_args(argv)

    with api(args.url) as (base, headers):
        request = urllib.request.Request(f"{base}/v2/models/{args.model}", headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            meta = json.loads(response.read())
        width = int(meta["inputs"][0]["shape"][-1])
        url = f"{base}/v1/models/{args.model}:predict"
        timeout, most = args.timeout, args.max_requests
        # Warm every container the load phase will use, so cold starts do not count as latency.
        Run(url, width, args.instances, 3.0, 10 * args.concurrency, timeout, headers).go(args.concurrency)
        baseline = None
        if args.baseline_seconds > 0:
            baseline = Run(url, width, args.instances, args.baseline_seconds, most, timeout, headers).go(1)
        load = Run(url, width, args.instances, args.seconds, most, timeout, headers).go(args.concurrency)
    result = {
        "load": {
            "target": f"POST /v1/models/{args.model}:predict, {args.instances} keyed instance(s) per request",
            "goal": {"errors": 0},
            **load,
            "baseline_concurrency_1": baseline,
            "throughput_vs_concurrency_1": (
                round(load["throughput_rps"] / baseline["throughput_rps"], 2)
                if baseline and baseline["throughput_rps"]
                else None
            ),
        }
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(1 if main()["load"]["errors"] else 0)
