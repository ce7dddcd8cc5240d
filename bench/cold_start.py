"""Cold start: a fresh process that imports the predict handler and answers one request, next to a fresh process
that only imports the interpreter and loads the model. Prints JSON (median wall time, peak RSS, ratios)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import predict_env  # noqa: E402

MODEL = ROOT / "layers" / "model" / "models" / "digits" / "model.tflite"

RAW = f"""
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interp = Interpreter(model_path={str(MODEL)!r}, num_threads=1)
runner = interp.get_signature_runner("serving_default")
runner(x=np.zeros((1, 64), np.float32))
"""

HANDLER = f"""
import sys
sys.path[:0] = [{str(ROOT)!r}]
from tests.support import FakeLambdaContext, http_event, import_predict_handler
app = import_predict_handler()
event = http_event("POST", "/v1/models/digits:predict", {{"instances": [{{"key": "a", "x": [0.0] * 64}}]}})
out = app.lambda_handler(event, FakeLambdaContext())
assert out["statusCode"] == 200, out
"""


def run(code: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh python process running `code`."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"benchmark process failed ({status}): {code}")
    return elapsed, usage.ru_maxrss / 1024


def main(repeats: int = 7) -> dict:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS", "LITESERVE"))}
    handler_env = {**base_env, **predict_env()}
    traced_env = {**handler_env, "POWERTOOLS_TRACE_DISABLED": "false"}
    cases = {
        "raw_interpreter": (RAW, base_env),
        "handler": (HANDLER, handler_env),
        "handler_with_tracer": (HANDLER, traced_env),
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(repeats):  # interleaved, so machine noise hits every case alike
        for name, (code, env) in cases.items():
            samples[name].append(run(code, env))
    result = {
        name: {
            "init_s_median": round(statistics.median(s[0] for s in runs), 4),
            "peak_rss_mb_max": round(max(s[1] for s in runs), 1),
        }
        for name, runs in samples.items()
    }
    raw = result["raw_interpreter"]
    for name in ("handler", "handler_with_tracer"):
        result[name]["init_ratio_vs_raw"] = round(result[name]["init_s_median"] / raw["init_s_median"], 2)
        result[name]["rss_ratio_vs_raw"] = round(result[name]["peak_rss_mb_max"] / raw["peak_rss_mb_max"], 2)
    result["goals"] = {"handler_init_ratio_max": 1.5, "handler_peak_rss_mb_max": 64}
    result["repeats"] = repeats
    return result


if __name__ == "__main__":
    print(json.dumps({"cold_start": main()}, indent=2))
