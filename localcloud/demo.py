"""``make demo``: the end-to-end story on the embedded default, on a fresh local cloud.

Each step prints its progress and result; a summary follows; the exit code is 0 only if every step passed.
Add steps with ``demo.step("title")`` blocks in :func:`run` (each check raises ``StepFailed`` or any exception).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.cloud import LocalCloud

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events" / "predict"


class StepFailed(Exception):
    """A demo check did not hold."""


@dataclass
class Demo:
    """Step runner: numbered progress lines, timings, a summary."""

    results: list[tuple[str, bool, float, str]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """Run one step; append short notes to the yielded list to show them next to the result."""
        n = len(self.results) + 1
        print(f"[{n}] {title} ...", flush=True)
        notes: list[str] = []
        t0 = time.perf_counter()
        try:
            yield notes
        except Exception as exc:  # a failed step is reported, and the demo goes on with the next one
            dt = time.perf_counter() - t0
            self.results.append((title, False, dt, f"{type(exc).__name__}: {exc}"))
            print(f"    FAILED ({dt:.2f} s): {type(exc).__name__}: {exc}", flush=True)
            return
        dt = time.perf_counter() - t0
        self.results.append((title, True, dt, "; ".join(notes)))
        print(f"    ok ({dt:.2f} s){': ' + '; '.join(notes) if notes else ''}", flush=True)

    def summary(self) -> int:
        """Print the summary; return the exit code."""
        ok = sum(r[1] for r in self.results)
        print(f"\nsummary: {ok}/{len(self.results)} steps passed")
        for title, passed, dt, note in self.results:
            print(f"  {'PASS' if passed else 'FAIL'}  {dt:6.2f} s  {title}{'  — ' + note if note else ''}")
        return 0 if self.results and ok == len(self.results) else 1


def http(
    base: str, method: str, path: str, body: str | bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """Call the local HTTP API; return (status, parsed JSON body or raw text)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(
        base + path, data=data, method=method, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def expect(cond: bool, message: str) -> None:
    """Fail the current step unless ``cond``."""
    if not cond:
        raise StepFailed(message)


def replay(base: str, event_file: Path) -> tuple[int, Any]:
    """Send the request an HTTP API event file describes (method, path, query, body) to the local API."""
    ev = json.loads(event_file.read_text())
    path = ev["rawPath"] + (f"?{ev['rawQueryString']}" if ev.get("rawQueryString") else "")
    return http(base, ev["requestContext"]["http"]["method"], path, ev.get("body"))


def run(demo: Demo, lc: LocalCloud) -> None:
    """The demo's steps (the online path today; batch, labels and evaluation extend it)."""
    api = lc.api_url
    with demo.step("HTTP API: Open Inference V2 readiness") as notes:
        status, body = http(api, "GET", "/v2/health/ready")
        expect(status == 200, f"GET /v2/health/ready -> {status} {body}")
        notes.append(f"{status} {body}")
    for name in ("tfserving-predict-keyed.json", "v2-infer-keyed.json"):
        path = EVENTS / name
        if not path.exists():
            continue
        with demo.step(f"HTTP API: replay events/predict/{name}") as notes:
            status, body = replay(api, path)
            expect(status == 200, f"{status} {str(body)[:200]}")
            notes.append(f"{status} {json.dumps(body)[:120]}...")


def main(argv: list[str] | None = None) -> int:
    """Start a fresh local cloud, run the steps, stop everything."""
    p = argparse.ArgumentParser(prog="python -m localcloud.demo", description=__doc__)
    p.add_argument("--template", default=os.environ.get("LOCALCLOUD_TEMPLATE", str(REPO / "template.yaml")))
    p.add_argument("--state-dir", default=str(REPO / ".localcloud" / "demo"))
    p.add_argument("--api-port", type=int, default=0, help="0 = any free port (default)")
    p.add_argument("--moto-port", type=int, default=0, help="0 = any free port (default)")
    args = p.parse_args(argv)
    demo = Demo()
    t0 = time.perf_counter()
    print("starting the local cloud (moto server, resources from the template, functions, HTTP API) ...", flush=True)
    try:
        lc = LocalCloud(
            args.template, state_dir=args.state_dir, api_port=args.api_port, moto_port=args.moto_port, schedules=False
        ).start()
    except Exception as exc:
        print(f"error: the local cloud did not start: {exc}", file=sys.stderr)
        return 1
    print(f"up in {time.perf_counter() - t0:.1f} s: HTTP API {lc.api_url}, AWS endpoint {lc.endpoint_url}\n")
    try:
        run(demo, lc)
    finally:
        lc.stop()
        print("\nlocal cloud stopped")
    return demo.summary()


if __name__ == "__main__":
    sys.exit(main())
