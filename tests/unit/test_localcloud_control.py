"""localcloud.control: the control API's route table and error map, on a stand-in cloud (the daemon's lifecycle runs
in tests/integration/test_cli.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from localcloud import control
from localcloud.runtime import InvocationError


class FakeCloud:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {"functions": 1}

    def environment(self, name: str) -> dict[str, str]:
        if name != "Fn":
            raise KeyError(f"no function {name}")
        return {"A": "1"}

    def invoke(self, name: str, event: Any) -> Any:
        if event == "fail":
            raise InvocationError({"errorType": "Boom", "errorMessage": "x"})
        if event == "crash":
            raise RuntimeError("broken")
        self.calls.append(("invoke", (name, event)))
        return {"echo": event}

    def fire_schedule(self, name: str) -> str:
        return f"fired {name}"

    def start_build(self, name: str, env: dict[str, str] | None) -> dict[str, Any]:
        return {"project": name, "env": env}

    def flush_logs(self) -> int:
        return 3

    def reset(self, recycle: bool) -> None:
        self.calls.append(("reset", recycle))


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "answer"),
    [
        ("GET", "/status", None, 200, {"ok": True, "result": {"functions": 1}}),
        ("GET", "/env/Fn", None, 200, {"ok": True, "result": {"A": "1"}}),
        ("POST", "/invoke/Fn", {"a": 1}, 200, {"ok": True, "result": {"echo": {"a": 1}}}),
        ("POST", "/fire/Nightly", None, 200, {"ok": True, "result": "fired Nightly"}),
        ("POST", "/build/Retrain", {}, 200, {"ok": True, "result": {"project": "Retrain", "env": None}}),
        ("POST", "/build/Retrain", {"K": "v"}, 200, {"ok": True, "result": {"project": "Retrain", "env": {"K": "v"}}}),
        ("POST", "/flush-logs", None, 200, {"ok": True, "result": 3}),
        ("POST", "/reset", None, 200, {"ok": True, "result": None}),
        ("POST", "/invoke/Fn", "fail", 200, {"ok": False, "error": {"errorType": "Boom", "errorMessage": "x"}}),
        (
            "GET",
            "/env/Other",
            None,
            404,
            {"ok": False, "error": {"errorType": "ResourceNotFound", "errorMessage": "no function Other"}},
        ),
        (
            "POST",
            "/invoke/Fn",
            "crash",
            500,
            {"ok": False, "error": {"errorType": "RuntimeError", "errorMessage": "broken"}},
        ),
        ("POST", "/teleport/Fn", None, 404, {"ok": False, "error": {"errorMessage": "unknown verb teleport"}}),
        ("GET", "/invoke/Fn", None, 404, {"ok": False, "error": {"errorMessage": "not found"}}),
        ("GET", "/status/extra", None, 404, {"ok": False, "error": {"errorMessage": "not found"}}),
    ],
)
def test_routes_and_error_map(method, path, body, status, answer) -> None:
    assert control.dispatch(FakeCloud(), method, path, body) == (status, answer)


def test_the_server_and_its_client_speak_json_over_http() -> None:
    cloud = FakeCloud()
    httpd = control.server(cloud, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert control.call(url, "POST", "/invoke/Fn", {"x": [1]}) == {"ok": True, "result": {"echo": {"x": [1]}}}
        assert control.call(url, "GET", "/env/Nope")["error"]["errorType"] == "ResourceNotFound"
        assert control.call(url, "POST", "/reset") == {"ok": True, "result": None}
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert cloud.calls == [("invoke", ("Fn", {"x": [1]})), ("reset", True)]
