"""The local cloud: moto server + resources from the template + local functions + gateway + event sources."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

from localcloud.auth import http_api_auth, new_token
from localcloud.builds import BuildRunner, default_build_venv, project_specs
from localcloud.gateway import Gateway, routes_from_functions
from localcloud.lambdas import AliasRouter, Lambdas
from localcloud.logship import LogShipper, plan_subscriptions
from localcloud.provision import provision
from localcloud.runtime import FunctionPool, FunctionSpec, base_environment, function_specs
from localcloud.sources import Sources
from localcloud.template import Template

log = logging.getLogger("localcloud")


def default_concurrency() -> int:
    """Containers per function when the template reserves none: the machine's cores (at least 2)."""
    return max(2, os.cpu_count() or 2)


def wait_http(url: str, timeout: float) -> None:
    """Wait until ``url`` answers any HTTP response."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.05)


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port."""
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


class MotoServer:
    """moto's server in a subprocess (its own process: moto is CPU-heavy and must not share our GIL), run as
    ``python -m localcloud.motoserver``: moto.server with the local cloud's patches (Lambda, atomic DynamoDB writes).

    ``persist_log`` given: every mutating request is logged there and the log is replayed when moto starts again, so
    its state survives :meth:`restart` (see localcloud/motoserver.py for what is not restored). Recording costs time
    on every write; it is off unless asked for.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 5000, log_path: Path | None = None, persist_log: Path | None = None
    ) -> None:
        self.host, self.port, self.log_path, self.persist_log = host, port, log_path, persist_log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30, *, fresh: bool = True) -> MotoServer:
        """Start and wait until it serves. ``fresh=False`` (persisting servers only) restores the logged state."""
        if self.port == 0:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        if not port_free(self.host, self.port):
            raise RuntimeError(f"port {self.port} is in use: is a local cloud already running? (`localcloud down`)")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        persist: list[str] = []
        if self.persist_log:
            if fresh:
                self.persist_log.parent.mkdir(parents=True, exist_ok=True)
                self.persist_log.write_bytes(b"")
            persist = ["--log", str(self.persist_log)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localcloud.motoserver", *persist, "-H", self.host, "-p", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_http(f"{self.url}/moto-api/", timeout)
        except TimeoutError:
            self.stop()
            raise
        return self

    def restart(self, timeout: float = 60) -> float:
        """Fault injection: kill the server (SIGKILL, as a crash) and start it again on the same port.

        Returns the seconds it was unreachable. A persisting server comes back with its state; another comes
        back empty.
        """
        started = time.monotonic()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.start(timeout, fresh=False)
        return time.monotonic() - started

    def reset(self) -> None:
        """Wipe every resource (moto's reset endpoint)."""
        if self.persist_log:  # empty the log first: a write that lands in between is wiped in both places
            self._post("/moto-api/recorder/reset-recording")
        self._post("/moto-api/reset")

    def _post(self, path: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}{path}", method="POST"), timeout=30).close()

    def stop(self) -> None:
        """Terminate the server."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LocalCloud:
    """The whole template running locally. Use as a context manager, or ``start()`` / ``stop()``.

    ``endpoint_url`` given: use that (already running) moto server instead of starting one.
    """

    def __init__(
        self,
        template: str | Path = "template.yaml",
        *,
        state_dir: str | Path = ".localcloud",
        region: str = "us-east-1",
        host: str = "127.0.0.1",
        moto_port: int = 5000,
        api_port: int = 3000,
        endpoint_url: str | None = None,
        stack_name: str = "liteserve",
        parameters: dict[str, str] | None = None,
        schedules: bool = True,
        time_scale: float = 1.0,
        concurrency: int | None = None,
        retry_delay: int = 1,
        log_subscriptions: bool = False,
        log_ship_interval: float = 2.0,
        token: str | None = None,
        persist: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.region, self.host, self.api_port = region, host, api_port
        # persist: moto's state survives restart_moto() (a log of its mutating requests, replayed on start)
        state_log = self.state_dir / "moto-state.jsonl" if persist else None
        moto_log = self.state_dir / "logs" / "moto.log"
        self.moto = None if endpoint_url else MotoServer(host, moto_port, moto_log, state_log)
        self._endpoint = endpoint_url
        self.template_path = Path(template)
        self.stack_name, self.parameters = stack_name, parameters or {}
        self.schedules, self.time_scale, self.retry_delay = schedules, time_scale, retry_delay
        self.concurrency = concurrency or default_concurrency()
        self.log_subscriptions, self.log_ship_interval = log_subscriptions, log_ship_interval
        # Protected routes (localcloud.auth) require `Authorization: Bearer <token>`; one is generated when not given.
        self.token: str = token or new_token()
        self.logship: LogShipper | None = None
        self.log_notes: list[str] = []
        self.session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
        )
        self.pools: dict[str, FunctionPool | AliasRouter] = {}
        self.specs: dict[str, FunctionSpec] = {}
        self.lambdas: Lambdas
        self.builds: dict[str, BuildRunner] = {}
        self.gateway: Gateway | None = None
        self._routes: list[Any] = []
        self._api_lid = "ServerlessHttpApi"
        self.sources: Sources | None = None
        self.not_emulated: list[str] = []
        self.tpl: Template

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint_url(self) -> str:
        """The AWS endpoint (moto) every client and function uses."""
        return self._endpoint or (self.moto.url if self.moto else "")

    @property
    def api_url(self) -> str:
        """Base URL of the local HTTP API."""
        return self.gateway.url if self.gateway else f"http://{self.host}:{self.api_port}"

    def start(self) -> LocalCloud:
        """Start moto, provision the template, start the functions' gateway and event sources."""
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            if self.moto:
                self.moto.start()
            self.tpl = Template.load(
                self.template_path,
                stack_name=self.stack_name,
                region=self.region,
                parameters=self.parameters,
                endpoint_url=self.endpoint_url,
            )
            api_lid = next(iter(self.tpl.of_type("AWS::Serverless::HttpApi")), "ServerlessHttpApi")
            # Bind the port first: functions' environments may reference the API's endpoint.
            self._api_lid = api_lid
            self.gateway = Gateway(
                [], self.invoke, self.host, self.api_port, self.tpl.api_id(api_lid), token=self.token
            )
            self.tpl.api_url = self.gateway.url
            specs = function_specs(self.tpl)
            self.gateway.routes = routes_from_functions(specs, http_api_auth(self.tpl))
            base = base_environment(self.region, self.endpoint_url)
            self.specs = specs
            self.lambdas = Lambdas(self.tpl, self.session, self.endpoint_url, self.state_dir)
            for lid, spec in specs.items():
                conc = spec.reserved_concurrency if spec.reserved_concurrency is not None else self.concurrency
                self.pools[lid] = self.lambdas.pool(spec, base, conc)  # an alias router for AutoPublishAlias
            venv = default_build_venv(self.tpl.base_dir)
            events = self.client("events")
            self.builds = {
                lid: BuildRunner(proj, base, venv, self.state_dir / "logs", events, self.region)
                for lid, proj in project_specs(self.tpl).items()
            }
            self.sources = Sources(
                self.tpl,
                self.pools,
                self.session,
                self.endpoint_url,
                time_scale=self.time_scale,
                clock=self.schedules,
                retry_delay=self.retry_delay,
                builds=self.builds,
            )
            self._provision()
            self._plan_log_shipping()
            self.sources.start()
            self.gateway.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _plan_log_shipping(self) -> None:
        groups = {
            lid: (self.tpl.props(lid).get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{pool.spec.name}"
            for lid, pool in self.pools.items()
        }
        subs, skipped = plan_subscriptions(self.tpl, groups)
        self.log_notes = [f"{s} (not emulated)" for s in skipped]
        if subs and not self.log_subscriptions:
            self.log_notes += [f"{s.name} (log subscriptions off)" for s in subs]
            return
        files = {lid: pool.log_path for lid, pool in self.pools.items()}
        self.logship = LogShipper(subs, files, self.client("s3"), self.log_ship_interval)
        self.logship.start()

    def flush_logs(self) -> int:
        """Deliver pending subscribed log lines now (Firehose objects written); 0 when log subscriptions are off."""
        return self.logship.flush() if self.logship else 0

    def _provision(self) -> None:
        # Layers, functions, versions and aliases in moto's Lambda, alongside the rest (independent; ~free that way).
        with ThreadPoolExecutor(1) as ex:
            lambdas = ex.submit(self.lambdas.provision, self.specs)
            self.not_emulated = provision(self.tpl, self.session, self.endpoint_url)
            lambdas.result()
        for item in self.not_emulated:
            log.warning("not emulated: %s", item)
        assert self.sources is not None
        self.sources.setup()

    def reset(self, recycle: bool = False) -> None:
        """Wipe moto's state (its reset endpoint) and provision the template again.

        ``recycle`` also discards the warm containers, so that edited handler code is loaded.
        """
        if recycle:
            for pool in self.pools.values():
                pool.recycle()
        if self.logship:  # lines logged before the reset belong to the old state
            self.logship.flush()
        if self.moto:
            self.moto.reset()
        else:
            url = f"{self.endpoint_url}/moto-api/reset"
            urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30).close()
        self._provision()

    def restart_moto(self) -> float:
        """Fault injection: kill moto (as a crash) and start it again on the same port; returns the downtime (s).

        With ``persist=True`` moto comes back with its state (queued messages are delivered again); without it,
        everything in moto is lost and the template's resources are provisioned again, empty.
        """
        if self.moto is None:
            raise RuntimeError("moto runs outside this local cloud (endpoint_url): it cannot be restarted from here")
        down = self.moto.restart()
        if not self.moto.persist_log:
            self._provision()
        return down

    def stop(self) -> None:
        """Stop everything this instance started."""
        if self.gateway:
            self.gateway.stop()
            self.gateway = None
        if self.logship:
            self.logship.stop()
        if self.sources:
            self.sources.stop()
        for pool in self.pools.values():
            pool.close()
        if self.moto:
            self.moto.stop()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ using it

    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a function synchronously; return its result or raise InvocationError.

        ``function`` is a logical id, optionally qualified: ``Fn:3`` (version), ``Fn:live`` (alias), ``Fn:$LATEST``
        (the template). Unqualified, a function with ``AutoPublishAlias`` is invoked through its alias, as its event
        sources are.
        """
        name, _, qualifier = function.partition(":")
        if name not in self.pools:
            raise KeyError(f"unknown function {name!r} (known: {', '.join(self.pools)})")
        pool = self.pools[name]
        if isinstance(pool, AliasRouter):
            return pool.invoke(event, qualifier=qualifier or None)
        if qualifier not in ("", "$LATEST"):
            raise KeyError(f"{name} has no alias or published versions locally (only $LATEST): {qualifier!r}")
        return pool.invoke(event)

    def environment(self, function: str) -> dict[str, str]:
        """What a person's command needs to act as ``function`` against this cloud: the function's variables from
        the template, the AWS endpoint and test credentials, and its layers as the template declares them (each
        layer's ContentUri folder): their ``python/`` folders on PYTHONPATH, and every variable that names a path under
        /opt pointed at the layer folder that holds it."""
        if function not in self.specs:
            raise KeyError(f"unknown function {function!r} (known: {', '.join(sorted(self.specs))})")
        spec = self.specs[function]
        env = {**spec.env, **base_environment(self.region, self.endpoint_url)}
        for drop in ("PATH", "HOME", "LANG", "TZ"):  # keep the caller's shell
            env.pop(drop, None)
        env["PYTHONPATH"] = os.pathsep.join(str(d / "python") for d in spec.layer_dirs if (d / "python").is_dir())
        for name, value in spec.env.items():
            if value.startswith("/opt/"):
                # Later layers win in /opt, as build_opt overlays them.
                found = [d / value[5:] for d in spec.layer_dirs if (d / value[5:]).exists()]
                if found:
                    env[name] = str(found[-1])
        return env

    def start_build(self, project: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run a CodeBuild project's buildspec now (synchronously); return its id, status and log path."""
        if project not in self.builds:
            raise KeyError(f"unknown build project {project!r} (known: {', '.join(self.builds) or 'none'})")
        return self.builds[project].start_build(env)

    def stop_api(self) -> None:
        """Take the HTTP API offline (connections are refused); functions and event sources keep running."""
        if self.gateway:
            self.api_port = int(self.gateway.server.server_address[1])
            self._routes = self.gateway.routes
            self.gateway.stop()
            self.gateway = None

    def start_api(self) -> None:
        """Bring the HTTP API back on the same port after :meth:`stop_api`."""
        if self.gateway is None:
            self.gateway = Gateway(
                self._routes, self.invoke, self.host, self.api_port, self.tpl.api_id(self._api_lid), token=self.token
            )
            self.gateway.start()

    def kill_containers(self, function: str) -> int:
        """Fault injection: kill ``function``'s containers that are running an invocation; return how many."""
        return self.pools[function].kill_busy()

    def fire_schedule(self, name: str, when: datetime | None = None) -> list[Any]:
        """Fire the schedule(s) named ``name`` now (or as if at ``when``) and return the handlers' results."""
        assert self.sources is not None
        return self.sources.fire(name, when)

    def client(self, service: str) -> Any:
        """A boto3 client for the local endpoint."""
        return self.session.client(service, endpoint_url=self.endpoint_url)

    def name(self, logical_id: str) -> str:
        """Physical name of a resource."""
        return self.tpl.name(logical_id)

    def arn(self, logical_id: str) -> str:
        """ARN of a resource."""
        return self.tpl.arn(logical_id)

    def ref(self, logical_id: str) -> str:
        """What ``!Ref`` gives for a resource (a queue's URL, a bucket's name, ...)."""
        return self.tpl.ref(logical_id)

    def wait_idle(self, timeout: float = 60, settle: float = 0.3) -> None:
        """Wait until every source queue is empty and no container is busy (stable for ``settle`` seconds)."""
        assert self.sources is not None
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            busy = any(p.counts()["busy"] for p in self.pools.values())
            depths = self.sources.depths()
            pending = any(
                d["visible"] + d["in_flight"]
                for q, d in depths.items()
                if q in self.sources.transport or self._is_source_queue(q)
            )
            if busy or pending:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return
            time.sleep(0.05)
        raise TimeoutError(f"local cloud not idle after {timeout} s")

    def _is_source_queue(self, logical_id: str) -> bool:
        if logical_id not in self.tpl.resources:
            return False
        for pool in self.pools.values():
            for ev in pool.spec.events.values():
                if ev.get("Type") == "SQS":
                    q = self.tpl.resolve((ev.get("Properties") or {}).get("Queue"))
                    if q in (self.tpl.arn(logical_id), self.tpl.queue_url(logical_id)):
                        return True
        return False

    def status(self) -> dict[str, Any]:
        """Processes, containers and invocation counts per function, queue and DLQ depths."""
        assert self.sources is not None
        dlqs = set()
        for q in self.tpl.of_type("AWS::SQS::Queue"):
            rp = self.tpl.props(q).get("RedrivePolicy")
            if isinstance(rp, dict):
                dlqs.add(self.tpl.logical_id_of(rp["deadLetterTargetArn"], ("queue",)))
        depths = self.sources.depths()
        return {
            "pid": os.getpid(),
            "endpoint_url": self.endpoint_url,
            "api_url": self.api_url,
            "moto_pid": self.moto.proc.pid if self.moto and self.moto.proc else None,
            "moto_alive": self.moto.proc.poll() is None if self.moto and self.moto.proc else None,
            "functions": {
                lid: {**p.counts(), "concurrency": p.concurrency, **vars(p.stats), **self.lambdas.describe(lid)}
                for lid, p in self.pools.items()
            },
            "layers": self.lambdas.layers_status(),
            "queues": {q: d for q, d in depths.items() if q not in dlqs and q not in self.sources.transport},
            "dlqs": {q: d for q, d in depths.items() if q in dlqs},
            "transport_queues": {q: d for q, d in depths.items() if q in self.sources.transport},
            "schedules": [
                {
                    "name": f"{s.function}.{s.event_name}",
                    "expression": s.expression.text,
                    "enabled": s.enabled,
                    "next": s.next_at.isoformat() if s.next_at else None,
                }
                for s in self.sources.schedules
            ],
            "builds": {lid: b.project.builds[-5:] for lid, b in self.builds.items()},
            "log_subscriptions": [
                {"name": s.name, "function": s.function, "stream": s.stream, "bucket": s.bucket}
                for s in (self.logship.subs if self.logship else [])
            ],
            "not_emulated": self.not_emulated + self.log_notes,
        }
