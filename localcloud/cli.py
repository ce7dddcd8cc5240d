"""localcloud: run the SAM template locally without Docker (moto server + local Lambda + HTTP API + sources)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from localcloud import control
from localcloud.auth import TOKEN_ENV, new_token, token_path, write_token

EXIT_USAGE = 2


def _env(name: str, default: str) -> str:
    return os.environ.get(f"LOCALCLOUD_{name}", default)


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("local cloud options (also LOCALCLOUD_<NAME> environment variables)")
    g.add_argument("--template", "-t", default=_env("TEMPLATE", "template.yaml"), help="SAM template (%(default)s)")
    g.add_argument(
        "--state-dir", default=_env("STATE_DIR", ".localcloud"), help="pid file, logs and /opt overlays (%(default)s)"
    )
    g.add_argument("--region", default=_env("REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")))
    g.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="bind address (%(default)s)")
    g.add_argument("--moto-port", type=int, default=int(_env("MOTO_PORT", "5000")), help="AWS endpoint port")
    g.add_argument("--api-port", type=int, default=int(_env("API_PORT", "3000")), help="HTTP API port")
    g.add_argument(
        "--control-port",
        type=int,
        default=int(_env("CONTROL_PORT", "3001")),
        help="port of the daemon's control API (status, invoke, fire-schedule)",
    )
    g.add_argument("--stack-name", default=_env("STACK_NAME", "liteserve"))
    g.add_argument("--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE", help="template parameters")
    return p


def _key_values(items: list[str], option: str) -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict; anything else is a usage error naming the option."""
    out = {}
    for kv in items:
        if "=" not in kv:
            raise _UsageError(f"{option} expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        out[k] = v
    return out


def _params(args: argparse.Namespace) -> dict[str, str]:
    return _key_values(args.parameter_overrides, "--parameter-overrides")


def _paths(args: argparse.Namespace) -> dict[str, Path]:
    d = Path(args.state_dir)
    return {
        "dir": d,
        "pid": d / "localcloud.pid",
        "info": d / "daemon.json",
        "log": d / "logs" / "daemon.log",
        "logs": d / "logs",
    }


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _running(args: argparse.Namespace) -> dict[str, Any] | None:
    """The running daemon's info, or None (stale files are ignored)."""
    info_p = _paths(args)["info"]
    try:
        info = json.loads(info_p.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and pid_alive(int(info.get("pid", 0))) else None


def _control(info: dict[str, Any], method: str, path: str, body: Any = None, timeout: float = 900) -> Any:
    return control.call(info["control_url"], method, path, body, timeout)


# ---------------------------------------------------------------------------------------------------------- verbs


def cmd_up(args: argparse.Namespace) -> int:
    """Start the daemon in the background and wait until it is ready."""
    info = _running(args)
    if info:
        print(f"local cloud already running (pid {info['pid']})")
        _print_endpoints(info)
        return 0
    paths = _paths(args)
    paths["logs"].mkdir(parents=True, exist_ok=True)
    paths["info"].unlink(missing_ok=True)
    argv = [sys.executable, "-m", "localcloud.cli", "serve", *_passthrough(args)]
    # The daemon gets the token through its environment (never argv: `ps` shows that to every user).
    env = {**os.environ, TOKEN_ENV: _api_token(args)}
    t0 = time.monotonic()
    with open(paths["log"], "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
    while time.monotonic() - t0 < args.wait:
        if proc.poll() is not None:
            print(
                f"error: the local cloud failed to start (exit {proc.returncode}); last lines of {paths['log']}:",
                file=sys.stderr,
            )
            lines = paths["log"].read_text(errors="replace").splitlines()[-25:]
            print("\n".join(lines), file=sys.stderr)
            return 1
        info = _running(args)
        if info and info["pid"] == proc.pid:
            print(f"local cloud up in {time.monotonic() - t0:.1f} s (pid {proc.pid}, logs: {paths['logs']})")
            _print_endpoints(info)
            return 0
        time.sleep(0.1)
    print(f"error: not ready after {args.wait} s; see {paths['log']}", file=sys.stderr)
    os.killpg(proc.pid, signal.SIGTERM)
    return 1


def _passthrough(args: argparse.Namespace) -> list[str]:
    out = [
        "--template",
        args.template,
        "--state-dir",
        args.state_dir,
        "--region",
        args.region,
        "--host",
        args.host,
        "--moto-port",
        str(args.moto_port),
        "--api-port",
        str(args.api_port),
        "--control-port",
        str(args.control_port),
        "--stack-name",
        args.stack_name,
        "--time-scale",
        str(args.time_scale),
    ]
    if args.parameter_overrides:
        out += ["--parameter-overrides", *args.parameter_overrides]
    if args.no_schedules:
        out.append("--no-schedules")
    if args.concurrency:
        out += ["--concurrency", str(args.concurrency)]
    if args.no_log_subscriptions:
        out.append("--no-log-subscriptions")
    return out


def _api_token(args: argparse.Namespace) -> str:
    """``LITESERVE_LOCAL_TOKEN``, else a new token written to ``<state dir>/token`` (0600) for the clients."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        token_path(args.state_dir).unlink(missing_ok=True)  # a file left by an earlier run would now be wrong
        return token
    token = new_token()
    write_token(args.state_dir, token)
    return token


def _print_endpoints(info: dict[str, Any]) -> None:
    print(f"  HTTP API      {info['api_url']}")
    where = info.get("token_file") or f"${TOKEN_ENV}"
    print(f"  auth          protected routes need 'Authorization: Bearer <token>', the token in {where}")
    print(f"  AWS endpoint  {info['endpoint_url']}   (export AWS_ENDPOINT_URL={info['endpoint_url']})")
    print(f"  control       {info['control_url']}")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the local cloud in the foreground until SIGTERM/SIGINT."""
    from localcloud.cloud import LocalCloud

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = _paths(args)
    token = os.environ.get(TOKEN_ENV, "").strip() or _api_token(args)  # set by `up`; else a foreground run's own
    cloud = LocalCloud(
        args.template,
        state_dir=args.state_dir,
        region=args.region,
        host=args.host,
        moto_port=args.moto_port,
        api_port=args.api_port,
        stack_name=args.stack_name,
        parameters=_params(args),
        schedules=not args.no_schedules,
        time_scale=args.time_scale,
        concurrency=args.concurrency,
        log_subscriptions=not args.no_log_subscriptions,
        token=token,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cloud.start()
    # Loopback only, whatever --host says: the control port is not behind the API token and can invoke anything.
    control_api = control.server(cloud, "127.0.0.1", args.control_port)
    threading.Thread(target=control_api.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    info = {
        "pid": os.getpid(),
        "api_url": cloud.api_url,
        "endpoint_url": cloud.endpoint_url,
        "control_url": f"http://127.0.0.1:{control_api.server_address[1]}",
        "template": str(cloud.template_path),
        "state_dir": str(cloud.state_dir),
        "token_file": str(token_path(args.state_dir).resolve()) if token_path(args.state_dir).exists() else None,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    paths["pid"].write_text(str(os.getpid()))
    tmp = paths["info"].with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(paths["info"])
    logging.info("ready: %s", info)
    try:
        stop.wait()
    finally:
        logging.info("stopping")
        control_api.shutdown()
        cloud.stop()
        paths["info"].unlink(missing_ok=True)
        paths["pid"].unlink(missing_ok=True)
        logging.info("stopped")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the daemon and everything it started."""
    paths = _paths(args)
    try:
        pid = int(paths["pid"].read_text())
        if not pid_alive(pid):
            raise ProcessLookupError(pid)
    except (OSError, ValueError):
        print("local cloud not running")
        paths["info"].unlink(missing_ok=True)
        paths["pid"].unlink(missing_ok=True)
        token_path(args.state_dir).unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    else:
        print(f"daemon {pid} did not stop in {args.timeout} s: killing its process group", file=sys.stderr)
    # Whatever survived in the daemon's own session (moto, containers) goes too.
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    paths["info"].unlink(missing_ok=True)
    paths["pid"].unlink(missing_ok=True)
    token_path(args.state_dir).unlink(missing_ok=True)  # the token dies with the daemon
    print("local cloud stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print processes, containers, queue and DLQ depths."""
    info = _running(args)
    if not info:
        print("local cloud not running")
        return 1
    st = _control(info, "GET", "/status", timeout=30)["result"]
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    print(f"daemon pid {st['pid']}   moto pid {st['moto_pid']}   since {info['started_at']}")
    print(f"HTTP API {st['api_url']}   AWS endpoint {st['endpoint_url']}")
    print(f"\n{'functions':44s}  containers busy conc  invocations errors timeouts cold")
    for fn, f in st["functions"].items():
        print(
            f"  {fn:42s} {f['containers']:>10} {f['busy']:>4} {f['concurrency']:>4}  {f['invocations']:>11}"
            f" {f['errors']:>6} {f['timeouts']:>8} {f['cold_starts']:>4}"
        )
    aliased = {fn: f for fn, f in st["functions"].items() if f.get("alias")}
    if aliased:  # localcloud.lambdas: alias routing and each version's layers
        print("\naliases (version: weight; layers)")
        for fn, f in aliased.items():
            a = f["alias"]
            extra = sum(a["weights"].values())
            routes = [f"{a['version']}: {1 - extra:g}", *(f"{v}: {w:g}" for v, w in a["weights"].items())]
            print(f"  {fn}:{a['name']:36s} {', '.join(routes) if a['version'] else 'not read yet'}")
            for v, d in f["versions"].items():
                names = ", ".join(arn.split(":layer:")[-1] for arn in d["layers"])
                print(f"    version {v:>4}  containers {d['containers']:>2}  calls {d['invocations']:>6}  {names}")
    for title, key in (
        ("queues", "queues"),
        ("dead-letter queues", "dlqs"),
        ("event transport queues", "transport_queues"),
    ):
        if st[key]:
            print(f"\n{title:44s}   visible in-flight")
            for q, d in st[key].items():
                print(f"  {q:42s} {d['visible']:>9} {d['in_flight']:>9}")
    if st["schedules"]:
        print("\nschedules")
        for s in st["schedules"]:
            print(
                f"  {s['name']:42s} {s['expression']:24s} {'enabled' if s['enabled'] else 'disabled'}  next {s['next']}"
            )
    if st.get("log_subscriptions"):
        print("\nlog subscriptions (function log -> Firehose -> S3)")
        for sub in st["log_subscriptions"]:
            print(f"  {sub['name']:42s} {sub['function']} -> {sub['stream']} -> s3://{sub['bucket']}")
    if st.get("builds"):
        print("\nbuild projects (last builds)")
        for proj, builds in st["builds"].items():
            last = ", ".join(f"#{b['number']} {b['status']} {b['duration_s']:.1f} s" for b in builds) or "none yet"
            print(f"  {proj:42s} {last}")
    if st["not_emulated"]:
        print("\nnot emulated: " + ", ".join(st["not_emulated"]))
    return 0


def _read_event(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise _UsageError(f"cannot read event file {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _UsageError(
            f"event file {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


class _UsageError(Exception):
    pass


class _NotRunning(Exception):
    pass


def _require_running(args: argparse.Namespace) -> dict[str, Any]:
    """The running daemon's info; verbs that need the daemon stop here (exit 1) when there is none."""
    info = _running(args)
    if not info:
        raise _NotRunning
    return info


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke a function once with an event file; print its JSON result."""
    event = _read_event(args.event) if args.event else {}
    info = _running(args)
    if info:
        reply = _control(info, "POST", f"/invoke/{args.function}", event)
    else:
        print(
            "note: local cloud not running; invoking standalone (AWS calls go to "
            f"http://{args.host}:{args.moto_port}, nothing is provisioned)",
            file=sys.stderr,
        )
        reply = _standalone_invoke(args, event)
    if reply.get("error", {}).get("errorType") == "ResourceNotFound":
        print(f"error: {reply['error']['errorMessage']}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(reply["result"] if reply["ok"] else reply["error"], indent=None if args.compact else 2))
    if not reply["ok"]:
        print(
            f"error: function failed: {reply['error'].get('errorType')}: {reply['error'].get('errorMessage')}",
            file=sys.stderr,
        )
        return 1
    return 0


def _standalone_invoke(args: argparse.Namespace, event: Any) -> dict[str, Any]:
    from localcloud.runtime import FunctionPool, InvocationError, base_environment, function_specs
    from localcloud.template import Template

    endpoint = f"http://{args.host}:{args.moto_port}"
    tpl = Template.load(
        args.template,
        stack_name=args.stack_name,
        region=args.region,
        parameters=_params(args),
        endpoint_url=endpoint,
        api_url=f"http://{args.host}:{args.api_port}",
    )
    specs = function_specs(tpl)
    if args.function not in specs:
        return {
            "ok": False,
            "error": {
                "errorType": "ResourceNotFound",
                "errorMessage": f"unknown function {args.function!r} (known: {', '.join(specs)})",
            },
        }
    pool = FunctionPool(specs[args.function], base_environment(args.region, endpoint), Path(args.state_dir), 1)
    try:
        return {"ok": True, "result": pool.invoke(event)}
    except InvocationError as exc:
        return {"ok": False, "error": exc.payload}
    finally:
        pool.close()


def cmd_fire_schedule(args: argparse.Namespace) -> int:
    """Fire a schedule now (needs a running local cloud)."""
    info = _require_running(args)
    reply = _control(info, "POST", f"/fire/{args.name}")
    if not reply["ok"]:
        print(f"error: {reply['error'].get('errorType', '')}: {reply['error'].get('errorMessage')}", file=sys.stderr)
        return EXIT_USAGE if reply["error"].get("errorType") == "ResourceNotFound" else 1
    print(json.dumps(reply["result"], indent=2))
    return 0


def cmd_start_build(args: argparse.Namespace) -> int:
    """Run a CodeBuild project of the template now (needs a running local cloud)."""
    info = _require_running(args)
    reply = _control(info, "POST", f"/build/{args.project}", _key_values(args.env, "--env"))
    if not reply["ok"]:
        print(f"error: {reply['error'].get('errorMessage')}", file=sys.stderr)
        return EXIT_USAGE if reply["error"].get("errorType") == "ResourceNotFound" else 1
    print(json.dumps(reply["result"], indent=2))
    return 0 if reply["result"]["status"] == "SUCCEEDED" else 1


def cmd_exec(args: argparse.Namespace) -> int:
    """Run a command with a function's environment from the template (endpoint, names), e.g. the promotion CLI."""
    info = _require_running(args)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise _UsageError("exec: give the command after --, e.g. `localcloud exec EvaluateFunction -- python -V`")
    reply = _control(info, "GET", f"/env/{args.function}")
    if not reply["ok"]:
        raise _UsageError(reply["error"].get("errorMessage"))
    return subprocess.call(command, env={**os.environ, **reply["result"]})


def cmd_flush_logs(args: argparse.Namespace) -> int:
    """Deliver the pending subscribed log lines now."""
    info = _require_running(args)
    print(f"{_control(info, 'POST', '/flush-logs')['result']} object(s) written")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    """Wipe moto and provision the template again."""
    info = _require_running(args)
    _control(info, "POST", "/reset")
    print("reset: moto wiped, resources provisioned again from the template, warm containers discarded")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """Print the CloudWatch metrics (EMF) the functions published, aggregated per metric and dimensions."""
    from localcloud.metrics import from_logs

    series = from_logs(_paths(args)["logs"], args.function)
    if args.json:
        print(json.dumps([s.as_dict() for s in series], indent=1))
        return 0
    if not series:
        print("no metrics received yet")
        return 0
    print(f"{'metric':28s} {'dimensions':44s} {'count':>7} {'average':>12} {'min':>12} {'max':>12}")
    for s in series:
        d = s.as_dict()
        dims = ",".join(f"{k}={v}" for k, v in s.dimensions.items())
        print(f"{s.name:28s} {dims:44s} {d['count']:>7} {d['average']:>12.4g} {d['min']:>12.4g} {d['max']:>12.4g}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Print (and with -f follow) the daemon's and the functions' logs."""
    logs = _paths(args)["logs"]
    files = sorted(logs.glob("*.log")) if not args.function else [logs / f"{args.function}.log"]
    missing = [f for f in files if not f.exists()]
    if not files or missing:
        print(f"error: no log {'files' if not files else missing[0]} under {logs}", file=sys.stderr)
        return 1
    handles = {f: open(f, errors="replace") for f in files}  # noqa: SIM115
    multi = len(files) > 1

    def emit(f: Path, line: str) -> None:
        sys.stdout.write(f"[{f.stem}] {line}" if multi else line)

    for f, h in handles.items():
        lines = h.readlines()
        for line in lines[-args.lines :] if args.lines else lines:
            emit(f, line)
    sys.stdout.flush()
    try:
        while args.follow:
            quiet = True
            for f in sorted(logs.glob("*.log")) if not args.function else files:
                if f not in handles:
                    handles[f] = open(f, errors="replace")  # noqa: SIM115
                    multi = True
                for line in handles[f].readlines():
                    emit(f, line)
                    quiet = False
            sys.stdout.flush()
            if quiet:
                time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    """Print the template translated from SAM to plain CloudFormation (offline)."""
    from localcloud.sam_translate import translate

    out = translate(args.template, parameters=_params(args) or None)
    text = json.dumps(out, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with one subcommand per verb."""
    common = _common()
    parser = argparse.ArgumentParser(prog="localcloud", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    for name, func, help_ in (
        ("up", cmd_up, "start the local cloud in the background; returns when ready"),
        ("serve", cmd_serve, "run the local cloud in the foreground (what `up` runs)"),
    ):
        p = verb(name, func, help_)
        p.add_argument("--no-schedules", action="store_true", help="do not fire schedules on the clock")
        p.add_argument(
            "--no-log-subscriptions",
            action="store_true",
            help="do not deliver log subscription filters (function logs -> Firehose -> S3)",
        )
        p.add_argument(
            "--concurrency",
            type=int,
            default=int(_env("CONCURRENCY", "0")) or None,
            help="containers per function without ReservedConcurrentExecutions (default: cores, at least 2)",
        )
        p.add_argument(
            "--time-scale",
            type=float,
            default=float(_env("TIME_SCALE", "1")),
            help="schedule clock speed-up, e.g. 3600 = one hour per second (%(default)s)",
        )
        if name == "up":
            p.add_argument("--wait", type=float, default=120, help="seconds to wait for readiness (%(default)s)")
    p = verb("down", cmd_down, "stop the local cloud and everything it started")
    p.add_argument("--timeout", type=float, default=20, help="seconds before killing (%(default)s)")
    p = verb("status", cmd_status, "processes, containers, queue and DLQ depths, schedules")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb("metrics", cmd_metrics, "the CloudWatch metrics (EMF) the functions published, per metric and dimensions")
    p.add_argument("--function", help="one function's (logical id), e.g. PredictFunction")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb("invoke", cmd_invoke, "invoke FUNCTION (template logical id) once; its JSON result goes to stdout")
    p.add_argument("function", help="logical id, e.g. PredictFunction")
    p.add_argument("-e", "--event", help="event JSON file ('-' = stdin; default: {})")
    p.add_argument("--compact", action="store_true", help="one-line JSON")
    p = verb(
        "fire-schedule",
        cmd_fire_schedule,
        "fire a schedule now: NAME = function logical id, event name, Function.Event or rule name",
    )
    p.add_argument("name")
    p = verb("exec", cmd_exec, "run a command with FUNCTION's environment: localcloud exec FN -- CMD ARGS...")
    p.add_argument("function", help="template logical id, e.g. EvaluateFunction")
    p.add_argument("command", nargs=argparse.REMAINDER)
    verb("flush-logs", cmd_flush_logs, "deliver pending log-subscription lines (logs -> Firehose -> S3) now")
    p = verb("start-build", cmd_start_build, "run a CodeBuild project's buildspec locally now (logical id)")
    p.add_argument("project")
    p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="environment variable overrides")
    verb("reset", cmd_reset, "wipe moto's state, provision the template again, discard warm containers")
    p = verb("logs", cmd_logs, "show logs (daemon, moto, one file per function)")
    p.add_argument("function", nargs="?", help="only this function's (or 'daemon', 'moto') log")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, default=200, help="last N lines per file first (0 = all)")
    p = verb("translate", cmd_translate, "translate the SAM template to plain CloudFormation JSON (offline)")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``localcloud`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _NotRunning:
        print("error: local cloud not running (`localcloud up`)", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `localcloud translate | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        from localcloud.template import TemplateError

        if isinstance(exc, TemplateError | FileNotFoundError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
