"""Cost of the prediction log on the warm predict path: the handler with the log on (sample rate 1) and off
(rate 0: returns before composing anything), interleaved call by call in one process so that machine noise hits
both alike; plus the log call alone. Prints JSON (p50 in microseconds, ratios on/off): the medians over
BENCH_PROCESSES fresh processes (default 5) with their [min, max] under "spread"; ``--single`` runs one."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench import repeat
from tests.support import FakeLambdaContext, http_event, import_predict_handler

ROOT = Path(__file__).resolve().parents[1]


def paired(app, event: dict, iterations: int) -> dict[str, float]:
    """p50 of the handler with the log off and on, alternating every call."""
    from liteserve.predlog import PredictionLog

    logs = {"off": PredictionLog(sample_rate=0.0), "on": PredictionLog(sample_rate=1.0)}
    context = FakeLambdaContext()
    times: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(iterations + 100):
        for name in ("off", "on") if i % 2 else ("on", "off"):
            app.prediction_log = logs[name]
            started = time.perf_counter()
            app.lambda_handler(event, context)
            if i >= 100:  # warm-up
                times[name].append(time.perf_counter() - started)
    p50 = {name: round(float(np.percentile(t, 50)) * 1e6, 1) for name, t in times.items()}
    return {"off_p50_us": p50["off"], "on_p50_us": p50["on"], "p50_ratio_on_vs_off": round(p50["on"] / p50["off"], 3)}


def log_call(app, event: dict, iterations: int = 5000) -> float:
    """p50 of the log call alone (compose + write), microseconds."""
    from liteserve.http import serve
    from liteserve.predlog import PredictionLog

    exchange = serve(event, app.service.handle)
    app.prediction_log = PredictionLog(sample_rate=1.0)
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        app.log_prediction(event, exchange)
        times.append(time.perf_counter() - started)
    return round(float(np.percentile(times, 50)) * 1e6, 2)


def main() -> dict:
    real_stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - the log lines go to stdout
    try:
        app = import_predict_handler()
        from training.data import split

        x = split().x_test
        result = {}
        for batch, iterations in ((1, 3000), (100, 600)):
            rows = x[:batch]
            tf = http_event(
                "POST",
                "/v1/models/digits:predict",
                {"instances": [{"key": f"k{i}", "x": r.tolist()} for i, r in enumerate(rows)]},
            )
            v2 = http_event(
                "POST",
                "/v2/models/digits/infer",
                {
                    "inputs": [
                        {"name": "key", "datatype": "BYTES", "shape": [batch], "data": [f"k{i}" for i in range(batch)]},
                        {"name": "x", "datatype": "FP32", "shape": [batch, 64], "data": rows.reshape(-1).tolist()},
                    ]
                },
            )
            result[f"{batch}_instances"] = {
                "tfserving_keyed": paired(app, tf, iterations),
                "v2_keyed": paired(app, v2, iterations),
                "log_call_alone_p50_us": {"tfserving": log_call(app, tf), "v2": log_call(app, v2)},
                "request_body_bytes": len(tf["body"]),
            }
        result["goal"] = {"p50_ratio_on_vs_off_max": 1.10}
        return result
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout


if __name__ == "__main__":
    if "--single" in sys.argv:  # one worker process (bench/repeat.py runs several and folds them)
        print(json.dumps({"prediction_log": main()}, indent=2))
    else:
        print(json.dumps({"prediction_log": repeat.main(__spec__.name, "prediction_log")}, indent=2))
