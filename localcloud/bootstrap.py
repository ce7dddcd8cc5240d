"""The "container" side of a local Lambda function: run as a script in a fresh interpreter, one per container.

It plays the part of the Lambda Python runtime: sets ``sys.path`` like ``/var/task`` + ``/opt/python`` + runtime
packages, imports the handler once (init), then serves invocations sent over a pipe by the local cloud, with a
real-shaped context object and START/END/REPORT log lines. Only the standard library is used, and nothing of
``localcloud`` is imported, so the handler sees no trace of the local cloud.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any


class LambdaContext:
    """Mirror of the Python runtime's context object (awslambdaric's ``LambdaContext``)."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]  # a str, as in the real runtime
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function times out."""
        return max(int(self._deadline_ms - time.time() * 1000), 0)

    def log(self, msg: str) -> None:
        """Write to the function's log."""
        sys.stdout.write(msg)


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _editable(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return str(module).startswith("__editable__")


def _max_rss_mb() -> int:
    # VmHWM is this process's own peak. ru_maxrss is carried across fork+exec, so a container started by a
    # large parent (a benchmark holding a 300 MB file) would report the parent's peak.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    """Init the handler, then loop: receive an invocation, run it, send back the result."""
    rfd, wfd = (int(x) for x in os.environ.pop("_LOCALCLOUD_FDS").split(","))
    extra_path = json.loads(os.environ.pop("_LOCALCLOUD_SYS_PATH"))
    conn_in, conn_out = Connection(rfd, writable=False), Connection(wfd, readable=False)
    here = os.path.dirname(os.path.abspath(__file__))
    # sys.path like Lambda's: /var/task, /opt/python..., then the runtime's own packages. Drop this script's dir.
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path[:] = [*extra_path, *rest]
    # The dev venv's editable installs (localcloud itself, ...) do not exist on Lambda: hide them from handlers.
    sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
    sys.path_hooks[:] = [h for h in sys.path_hooks if not _editable(h)]
    sys.path_importer_cache.clear()
    os.chdir(os.environ["LAMBDA_TASK_ROOT"])

    req_filter = _RequestIdFilter()
    handler_ = logging.StreamHandler(sys.stdout)
    handler_.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    logging.Formatter.converter = time.gmtime
    handler_.addFilter(req_filter)
    logging.getLogger().addHandler(handler_)

    t0 = time.perf_counter()
    handler_name = os.environ["_HANDLER"]
    module_name, _, func_name = handler_name.rpartition(".")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
        func = getattr(module, func_name)
    except Exception as exc:  # reported as Lambda does, then the container dies (next invoke re-inits)
        etype = (
            "Runtime.ImportModuleError"
            if isinstance(exc, ImportError)
            else "Runtime.HandlerNotFound"
            if isinstance(exc, AttributeError)
            else f"Runtime.{type(exc).__name__}"
        )
        err = _error(exc, etype)
        err["errorMessage"] = (
            f"Unable to import module '{module_name}': {exc}"
            if isinstance(exc, ImportError)
            else f"Handler '{func_name}' missing on module '{module_name}'"
            if isinstance(exc, AttributeError)
            else str(exc)
        )
        print(f"[ERROR] {err['errorType']}: {err['errorMessage']}", flush=True)
        traceback.print_exc(file=sys.stdout)
        conn_out.send_bytes(json.dumps({"init_error": err}).encode())
        return
    init_ms = (time.perf_counter() - t0) * 1000
    conn_out.send_bytes(json.dumps({"ready": True, "init_ms": init_ms}).encode())

    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    memory = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    first = True
    while True:
        try:
            msg = json.loads(conn_in.recv_bytes())
        except EOFError:
            return
        rid = msg["request_id"]
        req_filter.request_id = rid
        os.environ["_X_AMZN_TRACE_ID"] = msg.get("trace_id", "")
        print(f"START RequestId: {rid} Version: {version}", flush=True)
        t1 = time.perf_counter()
        ctx = LambdaContext(rid, msg["deadline_ms"], msg["function_arn"])
        reply: dict[str, Any]
        try:
            result = func(json.loads(msg["event"]), ctx)
            try:
                reply = {"ok": True, "result": json.dumps(result)}
            except (TypeError, ValueError) as exc:
                reply = {
                    "ok": False,
                    "error": {
                        "errorMessage": f"Unable to marshal response: {exc}",
                        "errorType": "Runtime.MarshalError",
                        "stackTrace": [],
                    },
                }
        except Exception as exc:
            err = _error(exc)
            err["requestId"] = rid
            print(f"[ERROR] {err['errorType']}: {err['errorMessage']}", flush=True)
            traceback.print_exc(file=sys.stdout)
            reply = {"ok": False, "error": err}
        dur = (time.perf_counter() - t1) * 1000
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"END RequestId: {rid}", flush=True)
        init = f"\tInit Duration: {init_ms:.2f} ms" if first else ""
        print(
            f"REPORT RequestId: {rid}\tDuration: {dur:.2f} ms\tBilled Duration: {max(1, int(dur + 0.999))} ms\t"
            f"Memory Size: {memory} MB\tMax Memory Used: {_max_rss_mb()} MB{init}",
            flush=True,
        )
        first = False
        reply["duration_ms"] = dur
        reply["max_memory_mb"] = _max_rss_mb()
        if reply["max_memory_mb"] > int(memory):
            print(
                f"WARNING: Max Memory Used {reply['max_memory_mb']} MB exceeds Memory Size {memory} MB: "
                "on Lambda this invocation would be killed (Runtime.OutOfMemory)",
                flush=True,
            )
        conn_out.send_bytes(json.dumps(reply).encode())


if __name__ == "__main__":
    main()
