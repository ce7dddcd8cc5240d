"""Warm latency: the predict handler in-process on real events (1 and 100 keyed instances), next to the raw
signature runner on the same rows in the same process. Prints JSON (p50/p99 in microseconds, ratios): the medians
over BENCH_PROCESSES fresh processes (default 5) with their [min, max] under "spread"; ``--single`` runs one."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import orjson

from bench import repeat
from tests.support import FakeLambdaContext, http_event, import_predict_handler

ROOT = Path(__file__).resolve().parents[1]


def percentiles(fn, iterations: int) -> dict[str, float]:
    """p50/p99 of `fn()` in microseconds, after a warm-up."""
    for _ in range(min(50, iterations)):
        fn()
    times = np.empty(iterations)
    for i in range(iterations):
        started = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - started
    return {
        "p50_us": round(float(np.percentile(times, 50)) * 1e6, 1),
        "p99_us": round(float(np.percentile(times, 99)) * 1e6, 1),
    }


def _minimal_handler(runner, event: dict) -> dict:
    """The floor: orjson in, one runner call, numpy-native orjson out; no validation, routing or observability."""
    instances = orjson.loads(event["body"])["instances"]
    out = runner(x=np.asarray([i["x"] for i in instances], dtype=np.float32))
    predictions = [
        {"key": i["key"], "probabilities": p, "class_id": c}
        for i, p, c in zip(instances, out["probabilities"], out["class_id"].tolist(), strict=True)
    ]
    body = orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return {"statusCode": 200, "body": body}


def main() -> dict:
    # EMF lines go to stdout as on Lambda; keep them out of this benchmark's JSON on stdout.
    real_stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115
    try:
        return _measure()
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout


def _measure() -> dict:
    app = import_predict_handler()
    from training.data import split

    x = split().x_test
    runner = app.service.models.get("digits")._runners["serving_default"]
    context = FakeLambdaContext()
    result: dict = {}
    for batch, iterations in ((1, 3000), (100, 600)):
        rows = x[:batch]
        instances = [{"key": f"k{i}", "x": row.tolist()} for i, row in enumerate(rows)]
        event = http_event("POST", "/v1/models/digits:predict", {"instances": instances})
        v2_event = http_event(
            "POST",
            "/v2/models/digits/infer",
            {
                "inputs": [
                    {"name": "key", "datatype": "BYTES", "shape": [batch], "data": [f"k{i}" for i in range(batch)]},
                    {"name": "x", "datatype": "FP32", "shape": [batch, 64], "data": rows.reshape(-1).tolist()},
                ]
            },
        )
        assert app.lambda_handler(event, context)["statusCode"] == 200
        assert app.lambda_handler(v2_event, context)["statusCode"] == 200
        raw = percentiles(lambda rows=rows: runner(x=rows), iterations)
        minimal = percentiles(lambda event=event: _minimal_handler(runner, event), iterations)
        handler = percentiles(lambda event=event: app.lambda_handler(event, context), iterations)
        v2 = percentiles(lambda event=v2_event: app.lambda_handler(event, context), iterations)
        result[f"{batch}_instances"] = {
            "raw_runner": raw,
            "minimal_orjson_handler": minimal,
            "handler_tfserving_keyed": handler,
            "handler_v2_keyed": v2,
            "tfserving_p50_ratio_vs_raw": round(handler["p50_us"] / raw["p50_us"], 2),
            "tfserving_p50_ratio_vs_minimal": round(handler["p50_us"] / minimal["p50_us"], 2),
            "v2_p50_ratio_vs_raw": round(v2["p50_us"] / raw["p50_us"], 2),
        }
    result["goals"] = {"1_instances_p50_us_max": 100, "100_instances_p50_us_max": 1500}
    return result


if __name__ == "__main__":
    if "--single" in sys.argv:  # one worker process (bench/repeat.py runs several and folds them)
        print(json.dumps({"warm": main()}, indent=2))
    else:
        print(json.dumps({"warm": repeat.main(__spec__.name, "warm")}, indent=2))
