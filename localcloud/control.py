"""The daemon's control API (loopback only, not behind the API token): status, a function's environment, invoke,
fire a schedule, start a build, flush log subscriptions, reset — one route table, one error map — and its client.

Every answer is JSON ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"errorType", "errorMessage"}}``:
a function error is 200 with its Lambda error payload, an unknown resource or route 404, anything else 500.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("localcloud.control")


@dataclass(frozen=True)
class Route:
    """``METHOD /<verb>[/<name>]``: `call(cloud, name, body)` returns the result."""

    call: Callable[[Any, str, Any], Any]
    named: bool = True  # the route takes a resource name after the verb


def _reset(cloud: Any, _name: str, _body: Any) -> None:
    cloud.reset(recycle=True)


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "status"): Route(lambda cloud, _n, _b: cloud.status(), named=False),
    ("GET", "env"): Route(lambda cloud, name, _b: cloud.environment(name)),
    ("POST", "invoke"): Route(lambda cloud, name, body: cloud.invoke(name, body)),
    ("POST", "fire"): Route(lambda cloud, name, _b: cloud.fire_schedule(name)),
    ("POST", "build"): Route(lambda cloud, name, body: cloud.start_build(name, body or None)),
    ("POST", "flush-logs"): Route(lambda cloud, _n, _b: cloud.flush_logs(), named=False),
    ("POST", "reset"): Route(_reset, named=False),
}


def dispatch(cloud: Any, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    """The status and JSON answer of one control request."""
    from localcloud.runtime import InvocationError

    verb, sep, name = path.strip("/").partition("/")
    route = ROUTES.get((method, verb))
    if route is None or route.named != bool(sep):
        message = f"unknown verb {verb}" if method == "POST" else "not found"
        return 404, {"ok": False, "error": {"errorMessage": message}}
    try:
        result = route.call(cloud, name, body)
    except InvocationError as exc:
        return 200, {"ok": False, "error": exc.payload}
    except KeyError as exc:
        return 404, {"ok": False, "error": {"errorType": "ResourceNotFound", "errorMessage": str(exc.args[0])}}
    except Exception as exc:
        log.exception("control %s %s failed", method, path)
        return 500, {"ok": False, "error": {"errorType": type(exc).__name__, "errorMessage": str(exc)}}
    return 200, {"ok": True, "result": result}


def server(cloud: Any, host: str, port: int) -> ThreadingHTTPServer:
    """The control API of `cloud` on host:port (not started: run its `serve_forever`)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: Any) -> None:
            log.info(format, *a)

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = dispatch(cloud, method, self.path, body)
            data = json.dumps(answer, default=str).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd


def call(control_url: str, method: str, path: str, body: Any = None, timeout: float = 900) -> Any:
    """One request to a running daemon's control API; its JSON answer (error answers included)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        control_url + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
