"""The ``localcloud`` console script: invoke's error handling, and the up/status/invoke/fire/logs/down lifecycle."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from localcloud.cli import pid_alive
from tests.integration.conftest import FIXTURES

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def run(state: Path, *args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "LITESERVE_LOCAL_TOKEN"},
        "PYTHONPATH": str(REPO),
        "LOCALCLOUD_TEMPLATE": str(FIXTURES / "template.yaml"),
        "LOCALCLOUD_STATE_DIR": str(state),
        "LOCALCLOUD_MOTO_PORT": "0",
        "LOCALCLOUD_API_PORT": "0",
        "LOCALCLOUD_CONTROL_PORT": "0",
        **extra_env,
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
        token = (state / "token").read_text().strip()
        request = urllib.request.Request(info["api_url"] + "/items/7", headers={"authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as resp:
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

        # exec: a person's command with a function's template environment and the local endpoint
        show = "import os; print(os.environ['RECORD_BUCKET'], os.environ['AWS_ENDPOINT_URL'])"
        r = run(state, "exec", "SlowFunction", "--", sys.executable, "-c", show)
        assert r.returncode == 0, r.stderr
        bucket, endpoint = r.stdout.split()
        assert endpoint == info["endpoint_url"] and "record" in bucket
        assert run(state, "exec", "SlowFunction", "--", sys.executable, "-c", "raise SystemExit(3)").returncode == 3
        assert run(state, "exec", "Nope", "--", "true").returncode == 2
        assert run(state, "exec", "SlowFunction").returncode == 2  # no command
    finally:
        down = run(state, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (state / "daemon.json").exists()
    assert not pid_alive(info["pid"])  # gone (or a zombie its parent has not reaped yet)
    assert run(state, "status").returncode == 1


def _status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_up_writes_a_private_token_file_that_the_api_requires(tmp_path: Path) -> None:
    state = tmp_path / "state"
    template = str(FIXTURES / "auth.yaml")
    up = run(state, "up", "--no-schedules", LOCALCLOUD_TEMPLATE=template)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        token_file = state / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40 and "Bearer <token>" in up.stdout and str(token_file.resolve()) in up.stdout
        protected = json.loads((state / "daemon.json").read_text())["api_url"] + "/data/x"
        assert (_status(protected), _status(protected, "wrong"), _status(protected, token)) == (401, 403, 200)
    finally:
        run(state, "down", LOCALCLOUD_TEMPLATE=template)
    assert not token_file.exists()  # the token dies with the daemon

    # LITESERVE_LOCAL_TOKEN set: the daemon uses it, and no file is written.
    up = run(state, "up", "--no-schedules", LOCALCLOUD_TEMPLATE=template, LITESERVE_LOCAL_TOKEN="from-the-env")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert not token_file.exists() and "$LITESERVE_LOCAL_TOKEN" in up.stdout
        protected = json.loads((state / "daemon.json").read_text())["api_url"] + "/data/x"
        assert (_status(protected, token), _status(protected, "from-the-env")) == (403, 200)
    finally:
        run(state, "down", LOCALCLOUD_TEMPLATE=template)
