"""Cold start as Lambda pays it: a fresh interpreter whose ``sys.path`` is what the python3.11 runtime gives the
predict function (its code dir, the runtime layer's and the shared layer's ``python/`` folders, and the boto3 the
runtime itself provides), importing the handler, loading every model of the model layer and answering one request;
next to a fresh interpreter on the same path that only loads the same models with the raw LiteRT interpreter and
runs one inference. No editable install, no test helpers, no site-packages (``-S``), no bytecode written (``-B``:
/opt is read-only on Lambda).

The runtime layer is the `sam build` output (.aws-sam/build/RuntimeLayer) when present, else the same layer built
by layers/runtime/Makefile into bench/.cache (pip's cache makes that ~20 s once). The shared layer is built from the
working tree by its own Makefile, as `sam build` does (sources plus bytecode; a second case ships the sources alone);
the function's code is copied without ``__pycache__``, as `sam build` ships it.

Prints JSON: per case the median/min/max wall time over interleaved repeats, the peak RSS, the ratio to the raw
interpreter (median of the per-round ratios, their min/max, and the ratio of the medians), the phases measured
inside the child, and what the handler imports beyond the raw interpreter (``python -X importtime``). Two more
cases put the goal in context: ``libraries_floor`` (the raw interpreter plus importing orjson and Powertools' Logger
and Metrics: what the chosen libraries cost before any liteserve code), and the handler against the raw interpreter
both after what the Lambda runtime's own bootstrap imports before the handler (``*_after_runtime_bootstrap``).

Usage: python -m bench.cold_start [REPEATS]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from layers.runtime.check_layer import _runtime_standin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MODEL_ROOT = ROOT / "layers" / "model" / "models"
SAM_RUNTIME_LAYER = ROOT / ".aws-sam" / "build" / "RuntimeLayer"
CACHED_RUNTIME_LAYER = HERE / ".cache" / "runtime-layer"
REQUIREMENTS = ROOT / "layers" / "runtime" / "requirements.txt"
GOALS = {"handler_init_ratio_max": 1.3, "handler_peak_rss_mb_max": 64}

# The predict function's environment on Lambda (template.yaml Globals + PredictFunction), model layer at its local path.
LAMBDA_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "liteserve-dev-predict",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "POWERTOOLS_SERVICE_NAME": "liteserve",
    "POWERTOOLS_METRICS_NAMESPACE": "Liteserve",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "LOG_LEVEL": "INFO",
    "LITESERVE_MODEL_ROOT": str(MODEL_ROOT),
    "LITESERVE_DEFAULT_MODEL": "digits",
    "LITESERVE_LOG_SAMPLE_RATE": "1",
}

# Both children start their clock at their first line, so `in_child` phases exclude interpreter start-up;
# the wall time measured from outside includes it.
RAW = """
import time; t0 = time.perf_counter()
import os, sys, json
import numpy as np
from ai_edge_litert.interpreter import Interpreter
t1 = time.perf_counter()
root = os.environ["LITESERVE_MODEL_ROOT"]
runners = {}
for name in sorted(os.listdir(root)):
    with open(os.path.join(root, name, "model.tflite"), "rb") as f:
        interp = Interpreter(model_content=f.read(), num_threads=1)
    runners[name] = {s: interp.get_signature_runner(s) for s in interp.get_signature_list()}
t2 = time.perf_counter()
out = runners[os.environ["LITESERVE_DEFAULT_MODEL"]]["serving_default"](x=np.zeros((1, 64), np.float32))
assert out
t3 = time.perf_counter()
with open(sys.argv[2], "w") as f:
    json.dump({"import_s": t1 - t0, "load_s": t2 - t1, "answer_s": t3 - t2, "total_s": t3 - t0,
               "modules": sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())})}, f)
"""

HANDLER = """
import time; t0 = time.perf_counter()
import app
t1 = time.perf_counter()
import json, sys
class Context:
    function_name = "liteserve-dev-predict"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:liteserve-dev-predict:live"
    aws_request_id = "3f1c9a52-0000-4000-8000-000000000001"
with open(sys.argv[1]) as f:
    event = json.load(f)
out = app.lambda_handler(event, Context())
assert out["statusCode"] == 200, out
t2 = time.perf_counter()
with open(sys.argv[2], "w") as f:
    json.dump({"import_s": t1 - t0, "answer_s": t2 - t1, "total_s": t2 - t0,
               "modules": sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())})}, f)
"""


# What the Lambda runtime interface client's bootstrap (awslambdaric: bootstrap.py, lambda_runtime_log_utils.py,
# lambda_runtime_marshaller.py) imports from the standard library before it imports the handler module; not its
# simplejson and runtime_client, which are not here, nor the ThreadPoolExecutor newer clients import. Lambda's Init
# Duration includes them for any function, so a handler pays nothing more for these; the `*_after_runtime_bootstrap`
# pair runs both children after them. The goal figure stays the bare pair above, which charges them to the handler.
RUNTIME_BOOTSTRAP = """
import importlib, json, logging, traceback, decimal, math
from datetime import datetime, timezone
from enum import IntEnum
"""

# What the chosen libraries alone cost on top of the raw interpreter: orjson and Powertools' Logger and Metrics
# imported and built, nothing of liteserve. No handler using them can start faster than this.
LIBRARIES_FLOOR = RAW.replace(
    "from ai_edge_litert.interpreter import Interpreter\n",
    "from ai_edge_litert.interpreter import Interpreter\n"
    "import orjson\n"
    "from aws_lambda_powertools import Logger, Metrics\n"
    "Logger(), Metrics()\n",
)
assert LIBRARIES_FLOOR != RAW
# Each case's ratio is paired with the raw interpreter run in the same round after the same prelude.
BASELINE = {"handler_after_runtime_bootstrap": "raw_interpreter_after_runtime_bootstrap"}


def runtime_layer() -> Path:
    """The runtime layer's ``python/`` dir: sam build output if present, else built once into bench/.cache."""
    if (SAM_RUNTIME_LAYER / "python").is_dir():
        return SAM_RUNTIME_LAYER / "python"
    stamp = CACHED_RUNTIME_LAYER / ".stamp"
    if not stamp.exists() or stamp.stat().st_mtime < REQUIREMENTS.stat().st_mtime:
        print("building the runtime layer into bench/.cache (once)", file=sys.stderr, flush=True)
        subprocess.run(
            [
                *("make", "-s", "-C", str(ROOT / "layers" / "runtime"), "build-RuntimeLayer"),
                *(f"ARTIFACTS_DIR={CACHED_RUNTIME_LAYER}", f"PYTHON={base_python()}"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        stamp.touch()
    return CACHED_RUNTIME_LAYER / "python"


def base_python() -> str:
    """The interpreter under the venv (Lambda has no venv); with -S it sees no site-packages at all."""
    return getattr(sys, "_base_executable", None) or sys.executable


def lambda_tree(dest: Path, layer_bytecode: bool = True) -> dict[str, Path]:
    """Lay out /var/task, the shared layer and the runtime's own boto3 under ``dest``; return the paths.

    The shared layer is what `sam build` makes of it (layers/shared/Makefile: the package plus its bytecode), built
    from the working tree; ``layer_bytecode=False`` ships the sources alone, as the layer did before it had a build.
    The function's code is copied without bytecode, as `sam build` ships it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "requirements.txt")
    task, shared, standin = dest / "task", dest / "shared" / "python", dest / "var-runtime"
    shutil.copytree(ROOT / "functions" / "predict", task, ignore=ignore)
    if layer_bytecode:
        subprocess.run(
            [
                *("make", "-s", "-C", str(ROOT / "layers" / "shared"), "build-SharedLayer"),
                *(f"ARTIFACTS_DIR={shared.parent}", f"PYTHON={base_python()}"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    else:
        shutil.copytree(ROOT / "layers" / "shared" / "python", shared, ignore=ignore)
    standin.mkdir()
    _runtime_standin(standin)
    return {"task": task, "shared": shared, "standin": standin}


def child_env(pythonpath: list[Path], extra: dict[str, str] | None = None) -> dict[str, str]:
    """A from-scratch environment (nothing of this shell's venv leaks in) with Lambda's sys.path order."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # this machine's settings, kept as they are
        if name in os.environ:
            env[name] = os.environ[name]
    return {**env, **LAMBDA_ENV, **(extra or {})}


def run(code: str, env: dict[str, str], event_path: Path, out_path: Path, flags: tuple[str, ...] = ()) -> dict:
    """Wall seconds and peak RSS (MB) of one fresh interpreter running ``code``, plus the phases it reports."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [base_python(), "-S", "-B", *flags, "-c", code, str(event_path), str(out_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if flags else subprocess.DEVNULL,
        cwd=env["PYTHONPATH"].split(os.pathsep)[0],
    )
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"cold-start child failed ({status}); rerun by hand with PYTHONPATH={env['PYTHONPATH']}")
    inner = json.loads(out_path.read_text())
    return {"wall_s": elapsed, "rss_mb": usage.ru_maxrss / 1024, "inner": inner, "stderr": stderr}


def foreign_modules(files: list[str], allowed: list[Path]) -> list[str]:
    """Modules loaded from anywhere but the Lambda-shaped paths and the standard library."""
    stdlib = Path(os.__file__).resolve().parent
    return [
        f
        for f in files
        if f and not any(Path(f).is_relative_to(r) for r in allowed) and not Path(f).resolve().is_relative_to(stdlib)
    ]


def _importtime(stderr: str) -> list[tuple[int, int, str, str]]:
    """``-X importtime`` lines as (self µs, depth, module, importer); children are printed before parents."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|( *)(\S+)", line)
        if m:
            rows.append((int(m[1]), len(m[2]) // 2, m[3]))
    return [
        (us, depth, name, next((r[2] for r in rows[i + 1 :] if r[1] < depth), "-"))
        for i, (us, depth, name) in enumerate(rows)
    ]


def import_costs(handler_stderr: str, raw_stderr: str, top: int = 12) -> dict:
    """What the handler imports that the raw interpreter does not: self time by package and the largest modules
    (with their importer). ``-X importtime`` inflates every figure alike; read them as shares, not as seconds."""
    raw = {name for _, _, name, _ in _importtime(raw_stderr)}
    extra = [row for row in _importtime(handler_stderr) if row[2] not in raw]
    by_package: dict[str, int] = defaultdict(int)
    for us, _, name, _ in extra:
        by_package[name.split(".")[0]] += us
    return {
        "extra_self_ms_total": round(sum(r[0] for r in extra) / 1000, 1),
        "raw_self_ms_total": round(sum(r[0] for r in _importtime(raw_stderr)) / 1000, 1),
        "extra_self_ms_by_package": [
            [name, round(us / 1000, 1)] for name, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
        ],
        "extra_largest_modules_ms": [
            [name, round(us / 1000, 1), importer] for us, _, name, importer in sorted(extra, reverse=True)[:top]
        ],
    }


def _event() -> dict:
    """An API Gateway HTTP API (payload v2.0) event for one keyed TF Serving instance."""
    body = json.dumps({"instances": [{"key": "a", "x": [0.0] * 64}]})
    return {
        "version": "2.0",
        "routeKey": "ANY /v1/models/{proxy+}",
        "rawPath": "/v1/models/digits:predict",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "content-length": str(len(body))},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "http": {"method": "POST", "path": "/v1/models/digits:predict", "protocol": "HTTP/1.1"},
            "requestId": "Jd1xYgJ9IAMEbXw=",
            "routeKey": "ANY /v1/models/{proxy+}",
            "stage": "$default",
            "timeEpoch": 1795835400000,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _summary(runs: list[dict]) -> dict:
    walls = [r["wall_s"] for r in runs]
    phases = {k: round(statistics.median(r["inner"][k] for r in runs), 4) for k in runs[0]["inner"] if k != "modules"}
    return {
        "init_s_median": round(statistics.median(walls), 4),
        "init_s_min": round(min(walls), 4),
        "init_s_max": round(max(walls), 4),
        "peak_rss_mb_median": round(statistics.median(r["rss_mb"] for r in runs), 1),
        "peak_rss_mb_max": round(max(r["rss_mb"] for r in runs), 1),
        "in_child_median_s": phases,
    }


def main(repeats: int = 15) -> dict:
    layer = runtime_layer()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        event_path = tmp / "event.json"
        event_path.write_text(json.dumps(_event()))
        built = lambda_tree(tmp / "built")
        sources = lambda_tree(tmp / "sources", layer_bytecode=False)
        path_of = {
            "built": [built["task"], layer, built["shared"], built["standin"]],
            "sources": [sources["task"], layer, sources["shared"], sources["standin"]],
        }
        cases = {
            "raw_interpreter": (RAW, child_env([layer])),
            "handler": (HANDLER, child_env(path_of["built"])),
            "handler_shared_layer_without_bytecode": (HANDLER, child_env(path_of["sources"])),
            "handler_with_tracer": (HANDLER, child_env(path_of["built"], {"POWERTOOLS_TRACE_DISABLED": "false"})),
            "libraries_floor": (LIBRARIES_FLOOR, child_env([layer])),
            "raw_interpreter_after_runtime_bootstrap": (RUNTIME_BOOTSTRAP + RAW, child_env([layer])),
            "handler_after_runtime_bootstrap": (RUNTIME_BOOTSTRAP + HANDLER, child_env(path_of["built"])),
        }
        out_path = tmp / "out.json"
        # One untimed run each: checks that nothing comes from outside the Lambda-shaped paths, and warms the page
        # cache so that the first timed round is not the only one reading the layer from disk.
        foreign = {}
        for name, (code, env) in cases.items():
            first = run(code, env, event_path, out_path)
            foreign[name] = foreign_modules(first["inner"]["modules"], [Path(p) for p in env["PYTHONPATH"].split(":")])
        if any(foreign.values()):  # then it would not be what Lambda pays
            raise SystemExit(f"modules loaded from outside the Lambda-shaped paths: {foreign}")
        samples: dict[str, list[dict]] = {name: [] for name in cases}
        for _ in range(repeats):  # interleaved, so machine noise hits every case alike
            for name, (code, env) in cases.items():
                samples[name].append(run(code, env, event_path, out_path))
        profiles = {
            name: run(cases[name][0], cases[name][1], event_path, out_path, flags=("-X", "importtime"))["stderr"]
            for name in ("raw_interpreter", "handler")
        }
    result: dict = {name: _summary(runs) for name, runs in samples.items()}
    for name in cases:
        if name.startswith("raw_interpreter"):
            continue
        base = BASELINE.get(name, "raw_interpreter")
        # Each round runs every case back to back, so the per-round ratio cancels most of the machine's drift;
        # its median is the figure the goal is judged on (the ratio of the medians is kept next to it).
        paired = [h["wall_s"] / r["wall_s"] for h, r in zip(samples[name], samples[base], strict=True)]
        result[name]["init_ratio_vs_raw"] = round(statistics.median(paired), 2)
        result[name]["init_ratio_of_medians"] = round(result[name]["init_s_median"] / result[base]["init_s_median"], 2)
        result[name]["init_ratio_per_round"] = {
            "median": round(statistics.median(paired), 2),
            "min": round(min(paired), 2),
            "max": round(max(paired), 2),
        }
        result[name]["rss_ratio_vs_raw"] = round(result[name]["peak_rss_mb_max"] / result[base]["peak_rss_mb_max"], 2)
    result["handler_import_costs"] = import_costs(profiles["handler"], profiles["raw_interpreter"])
    result["modules_from_outside_lambda_paths"] = 0  # checked above: any would have stopped the run
    result["runtime_layer"] = str(layer.relative_to(ROOT))
    result["interpreter"] = f"{base_python()} -S -B"
    result["goals"] = GOALS
    result["repeats"] = repeats
    return result


if __name__ == "__main__":
    print(json.dumps({"cold_start": main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)}, indent=2))
