"""The ``localcloud`` console script: invoke's error handling, and the up/status/invoke/fire/logs/down lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from localcloud.cli import pid_alive
from tests.integration.conftest import FIXTURES

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def run(state: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LOCALCLOUD_TEMPLATE": str(FIXTURES / "template.yaml"),
        "LOCALCLOUD_STATE_DIR": str(state),
        "LOCALCLOUD_MOTO_PORT": "0",
        "LOCALCLOUD_API_PORT": "0",
        "LOCALCLOUD_CONTROL_PORT": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "localcloud.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        cwd=REPO,
    )


def test_invoke_rejects_a_malformed_event_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"seconds": 1,,}')
    r = run(tmp_path, "invoke", "SlowFunction", "-e", str(bad))
    assert r.returncode == 2 and r.stdout == ""
    assert f"event file {bad} is not valid JSON" in r.stderr and "line 1, column 15" in r.stderr
    r = run(tmp_path, "invoke", "SlowFunction", "-e", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "cannot read event file" in r.stderr


def test_invoke_standalone_prints_the_result(tmp_path: Path) -> None:
    r = run(tmp_path, "invoke", "SlowFunction", "-e", "-", "--compact", stdin='{"seconds": 0}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["slept"] == 0
    r = run(tmp_path, "invoke", "NoSuchFunction", "-e", "-", stdin="{}")
    assert r.returncode == 2 and "unknown function 'NoSuchFunction'" in r.stderr


def test_every_verb_has_help(tmp_path: Path) -> None:
    for verb in ("up", "down", "status", "invoke", "fire-schedule", "logs", "reset", "translate", "serve"):
        r = run(tmp_path, verb, "--help")
        assert r.returncode == 0 and "--template" in r.stdout, verb


def test_lifecycle_up_status_invoke_fire_logs_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = run(state, "up", "--no-schedules")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        info = json.loads((state / "daemon.json").read_text())
        assert run(state, "up").stdout.startswith("local cloud already running")
        with urllib.request.urlopen(info["api_url"] + "/items/7", timeout=30) as resp:
            assert json.loads(resp.read())["event"]["pathParameters"] == {"id": "7"}

        r = run(state, "invoke", "SlowFunction", "-e", "-", stdin='{"seconds": 0}')
        assert r.returncode == 0 and json.loads(r.stdout)["slept"] == 0
        r = run(state, "invoke", "SlowFunction", "-e", "-", stdin='{"seconds": 3}')
        assert r.returncode == 1 and json.loads(r.stdout)["errorType"] == "Sandbox.Timedout"

        r = run(state, "fire-schedule", "Nightly")
        assert r.returncode == 0 and json.loads(r.stdout) == [{"recorded": "schedule"}]
        assert run(state, "fire-schedule", "Nope").returncode == 2

        st = run(state, "status", "--json")
        status = json.loads(st.stdout)
        assert status["functions"]["SlowFunction"]["timeouts"] == 1
        assert set(status["dlqs"]) == {"WorkDLQ"} and set(status["queues"]) == {"WorkQueue", "FailureQueue"}
        assert "WorkDLQ" in run(state, "status").stdout

        logs = run(state, "logs", "SlowFunction").stdout
        assert "Task timed out after 1.00 seconds" in logs and "REPORT RequestId" in logs
    finally:
        down = run(state, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (state / "daemon.json").exists()
    assert not pid_alive(info["pid"])  # gone (or a zombie its parent has not reaped yet)
    assert run(state, "status").returncode == 1
