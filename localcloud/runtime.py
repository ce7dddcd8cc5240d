"""Local Lambda runtime: function specs from the template, "containers" (processes) and per-function pools."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from localcloud.template import Template, TemplateError

log = logging.getLogger("localcloud.runtime")
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
INIT_LIMIT_S = 10.0  # Lambda's init phase limit


class InvocationError(Exception):
    """The function invocation failed (handler error, timeout, crash). ``payload`` is Lambda's error payload."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = payload


@dataclass
class FunctionSpec:
    """Everything needed to run one template function locally."""

    logical_id: str
    name: str
    arn: str
    handler: str
    code_dir: Path
    timeout: float
    memory: int
    env: dict[str, str]
    layer_dirs: list[Path]
    reserved_concurrency: int | None
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    async_attempts: int = 3  # EventInvokeConfig.MaximumRetryAttempts + 1
    alias: str | None = None  # AutoPublishAlias: event sources invoke this alias (localcloud.lambdas)
    layers: list[str] = field(default_factory=list)  # logical ids of the template's layers, in order
    on_failure: list[tuple[str, str]] = field(default_factory=list)  # ("dlq" | "destination", ARN)


def function_specs(tpl: Template) -> dict[str, FunctionSpec]:
    """Build a :class:`FunctionSpec` for every ``AWS::Serverless::Function`` (Globals already merged)."""
    specs: dict[str, FunctionSpec] = {}
    for lid in tpl.of_type("AWS::Serverless::Function"):
        p = tpl.props(lid)
        runtime = p.get("Runtime", "")
        if runtime and not str(runtime).startswith("python"):
            raise TemplateError(f"{lid}: runtime {runtime} is not supported locally (python only)")
        code = p.get("CodeUri", ".")
        if not isinstance(code, str):
            raise TemplateError(f"{lid}: CodeUri must be a local directory")
        code_dir = (tpl.base_dir / code).resolve()
        if not code_dir.is_dir():
            raise TemplateError(f"{lid}: CodeUri {code_dir} is not a directory")
        layer_dirs: list[Path] = []
        layer_ids: list[str] = []
        for ref in p.get("Layers") or []:
            try:
                llid = tpl.logical_id_of(ref, ("layer",))
            except TemplateError:
                log.warning("%s: external layer %s is stood in for by the dev venv", lid, ref)
                continue
            layer_ids.append(llid)
            content = tpl.props(llid).get("ContentUri") or tpl.props(llid).get("Content")
            if not isinstance(content, str):
                raise TemplateError(f"layer {llid}: ContentUri must be a local directory")
            folder = tpl.layer_folder(llid)
            if folder is not None:  # None: a built layer of pip dependencies, which the dev venv provides
                layer_dirs.append(folder)
        env = {k: _env_str(v) for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()}
        specs[lid] = FunctionSpec(
            logical_id=lid,
            name=tpl.name(lid),
            arn=tpl.arn(lid),
            handler=p["Handler"],
            code_dir=code_dir,
            timeout=float(p.get("Timeout", 3)),
            memory=int(p.get("MemorySize", 128)),
            env=env,
            layer_dirs=layer_dirs,
            reserved_concurrency=int(p["ReservedConcurrentExecutions"])
            if "ReservedConcurrentExecutions" in p
            else None,
            events=p.get("Events") or {},
            alias=str(p["AutoPublishAlias"]) if p.get("AutoPublishAlias") else None,
            layers=layer_ids,
        )
        invoke_cfg = p.get("EventInvokeConfig") or {}
        specs[lid].async_attempts = int(invoke_cfg.get("MaximumRetryAttempts", 2)) + 1
        dest = ((invoke_cfg.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if dest:
            specs[lid].on_failure.append(("destination", dest))
        if (p.get("DeadLetterQueue") or {}).get("TargetArn"):
            specs[lid].on_failure.append(("dlq", p["DeadLetterQueue"]["TargetArn"]))
    return specs


def _env_str(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, dict | list):
        raise TemplateError(f"environment value {v!r} did not resolve to a string")
    return str(v)


def build_opt(target: Path, layer_dirs: list[Path]) -> None:
    """Overlay the layers' contents into ``target`` (like /opt): later layers win, directories merge."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)

    def merge(dst: Path, src: Path) -> None:
        for entry in sorted(src.iterdir()):
            out = dst / entry.name
            if out.is_symlink() and out.is_dir() and entry.is_dir():
                prev = out.resolve()
                out.unlink()
                out.mkdir()
                merge(out, prev)
                merge(out, entry)
            elif out.is_dir() and not out.is_symlink() and entry.is_dir():
                merge(out, entry)
            else:
                if out.is_symlink() or out.exists():
                    out.unlink()
                out.symlink_to(entry)

    for d in layer_dirs:
        merge(target, d)


class Container:
    """One execution environment: a Python process that imported the handler and serves invocations."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], sys_path: list[str], log_path: Path) -> None:
        self.spec = spec
        self.id = uuid.uuid4().hex[:8]
        p_r, c_w = os.pipe()
        c_r, p_w = os.pipe()
        env = {
            **env,
            "_LOCALCLOUD_FDS": f"{c_r},{c_w}",
            "_LOCALCLOUD_SYS_PATH": json.dumps(sys_path),
            "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[")
            + env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            + "]"
            + self.id,
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(BOOTSTRAP)],
            env=env,
            cwd=spec.code_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            pass_fds=(c_r, c_w),
        )
        os.close(c_r)
        os.close(c_w)
        self._in = Connection(p_r, writable=False)
        self._out = Connection(p_w, readable=False)
        self._kill_lock = threading.Lock()
        self._killed = False
        self.init_ms: float | None = None
        self.cold = True

    def wait_ready(self) -> None:
        """Wait for the init phase (handler import); raise InvocationError if it fails or hangs."""
        limit = max(INIT_LIMIT_S, self.spec.timeout)
        msg = self._recv(limit)
        if msg is None or "eof" in msg:
            self.kill()
            raise InvocationError(
                {
                    "errorType": "Runtime.InitTimeout" if msg is None else "Runtime.ExitError",
                    "errorMessage": f"init did not complete within {limit:.0f} s"
                    if msg is None
                    else f"the runtime exited during init (exit status {self.proc.returncode})",
                }
            )
        if "init_error" in msg:
            self.kill()
            raise InvocationError(msg["init_error"])
        self.init_ms = msg["init_ms"]

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None on timeout; ``{"eof": True}`` if the process went away."""
        try:
            if self._in.poll(timeout):
                return json.loads(self._in.recv_bytes())
        except (EOFError, OSError):
            return {"eof": True}
        return None

    def invoke(self, event_json: str, request_id: str) -> dict[str, Any]:
        """Run one invocation; return the reply ``{"ok", "result"|"error", "duration_ms"}``. Kills on timeout."""
        deadline = time.time() + self.spec.timeout
        try:
            self._send_invoke(event_json, request_id, deadline)
        except OSError:  # the process died while idle
            return self._exit_error(request_id)
        msg = self._recv(self.spec.timeout)
        self.cold = False
        if msg is not None and "eof" not in msg:
            return msg
        if msg is None:  # timed out: Lambda stops the environment
            self.proc.kill()
            self.proc.wait()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            text = f"{stamp} {request_id} Task timed out after {self.spec.timeout:.2f} seconds"
            with self._kill_lock:
                if not self._killed:
                    self._log.write(
                        f"{text}\nEND RequestId: {request_id}\nREPORT RequestId: {request_id}\t"
                        f"Duration: {self.spec.timeout * 1000:.2f} ms\tStatus: timeout\n".encode()
                    )
                    self._log.flush()
            self.kill()
            return {"ok": False, "timeout": True, "error": {"errorMessage": text, "errorType": "Sandbox.Timedout"}}
        return self._exit_error(request_id)

    def _send_invoke(self, event_json: str, request_id: str, deadline: float) -> None:
        self._out.send_bytes(
            json.dumps(
                {
                    "event": event_json,
                    "request_id": request_id,
                    "deadline_ms": int(deadline * 1000),
                    "function_arn": self.spec.arn,
                    "trace_id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
                }
            ).encode()
        )

    def _exit_error(self, request_id: str) -> dict[str, Any]:
        code = self.proc.wait()
        how = (
            f"signal: {'killed' if code == -signal.SIGKILL else signal.Signals(-code).name}"
            if code < 0
            else (f"exit status {code}")
        )
        return {
            "ok": False,
            "error": {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {how}",
            },
        }

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """Stop the process (no grace: Lambda freezes/destroys environments without notice)."""
        with self._kill_lock:  # idempotent and thread-safe: never close an fd twice (it may be reused)
            if self._killed:
                return
            self._killed = True
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for c in (self._in, self._out):
                c.close()
            self._log.close()


@dataclass
class Stats:
    """Invocation counters of one function."""

    invocations: int = 0
    errors: int = 0
    timeouts: int = 0
    cold_starts: int = 0
    max_memory_mb: int = 0  # peak RSS of any container (Lambda's "Max Memory Used")


class FunctionPool:
    """Warm containers of one function version, at most ``concurrency`` at a time (processes, not threads).

    ``version`` "$LATEST" runs the template as it is; a published version (localcloud.lambdas) gets its own ``/opt``
    folder, named after the version and its layers, so that its containers never see another version's layers.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        base_env: dict[str, str],
        state_dir: Path,
        concurrency: int,
        version: str = "$LATEST",
        opt_name: str | None = None,
    ) -> None:
        self.spec = spec
        self.concurrency = concurrency
        self.version = version
        opt = state_dir / "opt" / (opt_name or spec.logical_id)
        build_opt(opt, spec.layer_dirs)
        env = {k: (str(opt) + v[4:] if v.startswith("/opt/") or v == "/opt" else v) for k, v in spec.env.items()}
        self.env = {
            **base_env,
            **env,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": version,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "_HANDLER": spec.handler,
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": sys.prefix,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        }
        self.sys_path = [
            str(spec.code_dir),
            str(opt / "python"),
            str(opt / "python" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"),
        ]
        self.log_path = state_dir / "logs" / f"{spec.logical_id}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._idle: list[Container] = []
        self._all: set[Container] = set()
        self._spawning = 0
        self._cv = threading.Condition()
        self._closed = False
        self.stats = Stats()

    def _acquire(self) -> Container | None:
        with self._cv:
            while True:
                if self._closed:
                    raise InvocationError({"errorType": "ServiceException", "errorMessage": "local cloud stopping"})
                while self._idle:
                    c = self._idle.pop()
                    if c.alive:
                        return c
                    self._all.discard(c)
                if len(self._all) + self._spawning < self.concurrency:
                    self._spawning += 1  # reserve a slot while the new container starts
                    return None
                self._cv.wait()

    def _release(self, c: Container | None, keep: bool) -> None:
        with self._cv:
            if c is not None and keep and c.alive and not self._closed:
                self._idle.append(c)
            else:
                if c is None:
                    self._spawning -= 1
                else:
                    self._all.discard(c)
                    c.kill()
            self._cv.notify()

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        """Invoke synchronously with ``event`` (JSON-able). Return the handler's result or raise InvocationError."""
        if self.concurrency <= 0:
            raise InvocationError({"errorType": "TooManyRequestsException", "errorMessage": "Rate Exceeded."})
        request_id = request_id or str(uuid.uuid4())
        event_json = json.dumps(event)
        c = self._acquire()
        keep = False
        try:
            if c is None:
                c = Container(self.spec, self.env, self.sys_path, self.log_path)
                with self._cv:
                    self._spawning -= 1
                    self._all.add(c)
                self.stats.cold_starts += 1
                c.wait_ready()
            reply = c.invoke(event_json, request_id)
            keep = c.alive
        except InvocationError:
            self.stats.invocations += 1
            self.stats.errors += 1
            raise
        finally:
            self._release(c, keep)
        self.stats.invocations += 1
        self.stats.max_memory_mb = max(self.stats.max_memory_mb, int(reply.get("max_memory_mb", 0)))
        if not reply["ok"]:
            self.stats.errors += 1
            self.stats.timeouts += bool(reply.get("timeout"))
            raise InvocationError(reply["error"])
        return json.loads(reply["result"])

    def counts(self) -> dict[str, int]:
        """Container counts: total, idle, busy."""
        with self._cv:
            total = len(self._all)
            return {"containers": total, "idle": len(self._idle), "busy": total - len(self._idle)}

    def kill_busy(self) -> int:
        """Fault injection: kill the containers running an invocation now (those invocations fail)."""
        with self._cv:
            busy = [c for c in self._all if c not in self._idle]
        for c in busy:
            if c.alive:
                c.proc.kill()
        return len(busy)

    def recycle(self) -> int:
        """Kill the idle containers (busy ones finish first), so the next invocations load the code afresh."""
        with self._cv:
            idle, self._idle = self._idle, []
            for c in idle:
                self._all.discard(c)
            self._cv.notify_all()
        for c in idle:
            c.kill()
        return len(idle)

    def close(self) -> None:
        """Kill every container."""
        with self._cv:
            self._closed = True
            cs = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cv.notify_all()
        for c in cs:
            c.kill()


def base_environment(region: str, endpoint_url: str) -> dict[str, str]:
    """The environment every local container starts from (what the Lambda service sets, minus the function's)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "HOME": "/tmp",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
