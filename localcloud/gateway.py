"""Local API Gateway HTTP API: route matching, payload format 2.0 events, and Lambda-proxy response mapping."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from localcloud.auth import RouteAuth, check_request, route_auth
from localcloud.template import ACCOUNT_ID

log = logging.getLogger("localcloud.gateway")
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
# What HTTP APIs deliver as text (isBase64Encoded false); everything else, a missing Content-Type and
# application/x-www-form-urlencoded included, arrives base64-encoded (observed on AWS, not documented).
_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})


@dataclass(frozen=True)
class Route:
    """One HTTP API route bound to a function."""

    method: str  # "ANY" or an HTTP verb; "$default" routes use "ANY"
    path: str  # "/v1/models/{proxy+}" or "$default"
    function: str  # logical id
    timeout_ms: int = 30000
    auth: RouteAuth | None = None  # None: an open route

    @property
    def route_key(self) -> str:
        """The routeKey as API Gateway reports it."""
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> tuple[tuple[int, ...], dict[str, str]] | None:
        """Return (specificity, pathParameters) if the route matches, else None."""
        if self.method not in ("ANY", method):
            return None
        if self.path == "$default":
            return (0,), {}
        want = self.path.strip("/").split("/") if self.path != "/" else []
        have = path.strip("/").split("/") if path.strip("/") else []
        params: dict[str, str] = {}
        literal = 0
        greedy = False
        for i, seg in enumerate(want):
            m = re.fullmatch(r"\{([^}+]+)(\+?)\}", seg)
            if m and m.group(2):  # greedy {proxy+}: the rest, at least one segment
                if i >= len(have) or i != len(want) - 1:
                    return None
                params[m.group(1)] = unquote("/".join(have[i:]))
                greedy = True
                break
            if i >= len(have):
                return None
            if m:
                if not have[i]:
                    return None
                params[m.group(1)] = unquote(have[i])
            elif seg != have[i]:
                return None
            else:
                literal += 1
        else:
            if len(have) != len(want):
                return None
        # Most specific wins: no greedy variable, then more literal segments, more segments, explicit method.
        return (1, int(not greedy), literal, len(want), int(self.method != "ANY")), params


def routes_from_functions(specs: dict[str, Any], apis: dict[str | None, dict[str, Any]] | None = None) -> list[Route]:
    """Collect the HttpApi routes of every function (one local API serves them all).

    ``apis`` maps each HttpApi's id (None: the implicit API) to its resolved ``Auth``
    (:func:`localcloud.auth.http_api_auth`); without it every route is open.
    """
    routes = []
    for lid, spec in specs.items():
        for name, ev in spec.events.items():
            if ev.get("Type") != "HttpApi":
                continue
            p = ev.get("Properties") or {}
            if str(p.get("PayloadFormatVersion", "2.0")) != "2.0":
                raise ValueError(f"{lid}: only HttpApi PayloadFormatVersion 2.0 is emulated")
            method = str(p.get("Method", "ANY")).upper()
            path = p.get("Path", "$default")
            routes.append(
                Route(
                    "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                    path if path != "$default" else "$default",
                    lid,
                    int(p.get("TimeoutInMillis", 30000)),
                    None if apis is None else route_auth(f"{lid} event {name}", p, apis),
                )
            )
    return routes


def find_route(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The most specific route matching ``method path``."""
    best = None
    for r in routes:
        m = r.match(method, path)
        if m and (best is None or m[0] > best[0]):
            best = (m[0], r, m[1])
    return (best[1], best[2]) if best else None


def build_event(
    route: Route,
    params: dict[str, str],
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    api_id: str,
    host: str,
) -> dict[str, Any]:
    """Build the HTTP API payload-v2.0 event exactly as API Gateway does."""
    hdrs: dict[str, str] = {}
    cookies: list[str] = []
    for k, v in headers:
        lk = k.lower()
        if lk == "cookie":
            cookies.extend(c.strip() for c in v.split(";") if c.strip())
            continue
        hdrs[lk] = f"{hdrs[lk]},{v}" if lk in hdrs else v
    # Headers API Gateway adds in front of the integration.
    hdrs["x-amzn-trace-id"] = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    hdrs["x-forwarded-for"] = f"{hdrs['x-forwarded-for']}, {source_ip}" if "x-forwarded-for" in hdrs else source_ip
    hdrs["x-forwarded-port"] = host.rpartition(":")[2] if ":" in host else "80"
    hdrs["x-forwarded-proto"] = "http"
    now = time.time()
    request_id = base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("=")[:14] + "="
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = hdrs
    if raw_query:
        qs: dict[str, str] = {}
        for k, v in parse_qsl(raw_query, keep_blank_values=True):
            qs[k] = f"{qs[k]},{v}" if k in qs else v
        event["queryStringParameters"] = qs
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split(".")[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": hdrs.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if route.auth:
        event["requestContext"]["authorizer"] = route.auth.context()
    if params:
        event["pathParameters"] = params
    if body:
        media = hdrs.get("content-type", "").split(";", 1)[0].strip().lower()
        text = media.startswith("text/") or media in _TEXT_TYPES
        event["body"] = body.decode("utf-8", "replace") if text else base64.b64encode(body).decode()
        event["isBase64Encoded"] = not text
    else:
        event["isBase64Encoded"] = False
    return event


def map_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Turn a handler's result into (status, headers, body) the way HTTP API payload 2.0 does."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # "If your Lambda function returns valid JSON and doesn't return a statusCode, API Gateway assumes" 200/JSON.
        body = result if isinstance(result, str) else json.dumps(result)
        return 200, [("content-type", "application/json")], body.encode()
    status = int(result["statusCode"])
    headers: list[tuple[str, str]] = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
    body_v = result.get("body")
    if body_v is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(body_v)
    else:
        body = (body_v if isinstance(body_v, str) else json.dumps(body_v)).encode()
    return status, headers, body


class Gateway:
    """A ThreadingHTTPServer serving the template's HTTP API routes by invoking local functions."""

    def __init__(
        self,
        routes: list[Route],
        invoke: Callable[[str, dict[str, Any]], Any],
        host: str,
        port: int,
        api_id: str = "localapi00",
        token: str | None = None,
    ) -> None:
        self.routes = routes
        self.token = token  # the bearer token protected routes require (None: they refuse every request)
        self.invoke = invoke
        self.api_id = api_id
        gw = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "localcloud"
            # Headers and body go out as two writes: with Nagle and delayed ACKs that cost ~40 ms per keep-alive
            # request (bench/load.py).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                log.info("%s %s", self.address_string(), format % args)

            def _handle(self) -> None:
                gw.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default backlog of 5 dropped connections under 16 concurrent clients
            daemon_threads = True

        self.server = Server((host, port), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name="gateway", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL of the API."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in a background thread."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        """Serve one request."""
        raw_path, _, raw_query = req.path.partition("?")
        length = int(req.headers.get("content-length") or 0)
        if length > MAX_BODY:
            remaining = length  # drain the body, so that the client gets to read the answer
            while remaining > 0:
                chunk = req.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            self._send(
                req, 413, [("content-type", "application/json")], b'{"message":"Request Entity Too Large"}', close=True
            )
            return
        body = req.rfile.read(length) if length else b""
        found = find_route(self.routes, req.command, raw_path)
        if not found:
            self._send(req, 404, [("content-type", "application/json")], b'{"message":"Not Found"}')
            return
        route, params = found
        if route.auth:
            refused = check_request(req.headers.get_all("authorization") or [], self.token)
            if refused:
                self._send(req, refused[0], [("content-type", "application/json")], refused[1])
                return
        event = build_event(
            route,
            params,
            req.command,
            raw_path,
            raw_query,
            list(req.headers.items()),
            body,
            req.client_address[0],
            self.api_id,
            req.headers.get("host", "localhost"),
        )
        rid = event["requestContext"]["requestId"]
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append(map_response(self.invoke(route.function, event)))
            except Exception as exc:  # function error, timeout, or a malformed response: API Gateway answers 500
                log.warning("%s %s -> %s: %s", req.command, raw_path, route.function, exc)
                outcome.append((500, [("content-type", "application/json")], b'{"message":"Internal Server Error"}'))

        # The integration timeout (TimeoutInMillis, at most 30 s): API Gateway answers 503, the function runs on.
        worker = threading.Thread(target=call, name=f"integration-{rid}", daemon=True)
        worker.start()
        worker.join(route.timeout_ms / 1000)
        if not outcome:
            log.warning("%s %s -> %s: integration timeout", req.command, raw_path, route.function)
            outcome.append((503, [("content-type", "application/json")], b'{"message":"Service Unavailable"}'))
        status, headers, out = outcome[0]
        self._send(req, status, [*headers, ("apigw-requestid", rid)], out)

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes, close: bool = False
    ) -> None:
        try:
            req.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
        except ValueError:
            req.send_response(status)
        names = {k.lower() for k, _ in headers}
        for k, v in headers:
            req.send_header(k, v)
        if "content-type" not in names and body:
            req.send_header("content-type", "application/json")
        req.send_header("content-length", str(len(body)))
        if close:
            req.send_header("connection", "close")
            req.close_connection = True
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)
