"""Batch serving throughput: a keyed file through the local cloud end to end (drop -> _SUCCESS) with 1 and 2
workers, next to a single-process loop over the same file that parses, runs the batched runner and writes the
output (the local limit). Also a worker's peak RSS, an AWS cost estimate per million predictions (batch vs online),
and where the time goes: the limit's stages (read, parse, infer, serialize, write, plus the worker's prediction-log
object) and the end-to-end run's stages from the _SUCCESS manifest's timestamps (planning, workers, utilization).

Usage: python -m bench.batch [ROWS]   (default 1 000 000; prints JSON)
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from liteserve.batch.jobs import Pipeline
from liteserve.batch.records import RowFormat
from liteserve.records import batch_object
from liteserve.runtime import ModelRepository

from localcloud import LocalCloud
from training.data import load_xy

ROOT = Path(__file__).resolve().parents[1]

SHARD_BYTES = 4 * 1024 * 1024  # the template's default
# us-east-1 list prices (2026): Lambda x86 per GB-s and per request, SQS standard per request,
# S3 standard per PUT and per GET, API Gateway HTTP API per request (first 300 M).
PRICE = {
    "lambda_gb_s": 0.0000166667,
    "lambda_request": 0.20e-6,
    "sqs_request": 0.40e-6,
    "s3_put": 0.005e-3,
    "s3_get": 0.0004e-3,
    "http_api_request": 1.00e-6,
}


def make_file(rows: int) -> bytes:
    """Real digits inputs, cycled, with unique shuffled keys."""
    x, _ = load_xy()
    rng = np.random.default_rng(0)
    order = rng.permutation(rows)
    lines = [b'{"key":"k%07d","x":%s}' % (order[i], orjson.dumps(x[i % len(x)].tolist())) for i in range(rows)]
    return b"\n".join(lines) + b"\n"


def local_limit(path: Path, out_path: Path, rows: int) -> dict:
    """One process: read the file in shard-sized chunks, parse, predict in batches, write the output lines.

    Each stage is timed on its own; the worker's one extra stage (the gzip prediction-log object of every shard,
    liteserve.records.batch_object) is timed on the same chunks but kept out of the limit."""
    model = ModelRepository(ROOT / "layers" / "model" / "models").get("digits")
    sig = model.signature(None)
    fmt = RowFormat("jsonl")
    stages = dict.fromkeys(("read", "parse", "infer", "serialize", "write"), 0.0)
    log_object = 0.0
    started = time.perf_counter()
    predicted, line = 0, 1
    with open(path, "rb") as src, open(out_path, "wb") as out:
        carry = b""
        while True:
            t0 = time.perf_counter()
            chunk = src.read(SHARD_BYTES)
            t1 = time.perf_counter()
            stages["read"] += t1 - t0
            if not chunk:
                break
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            data, carry = data[:cut], data[cut:]
            parsed, values = fmt.parse(data, line, sig.inputs)
            t2 = time.perf_counter()
            line += data.count(b"\n")
            outputs = Pipeline._predict(model, sig.name, values)
            t3 = time.perf_counter()
            part = Pipeline._part_lines(parsed.keys, outputs, "key", model.version)
            t4 = time.perf_counter()
            out.write(part)
            t5 = time.perf_counter()
            stages["parse"] += t2 - t1
            stages["infer"] += t3 - t2
            stages["serialize"] += t4 - t3
            stages["write"] += t5 - t4
            predicted += len(parsed.keys)
            batch_object("bench", 0, 0.0, model.name, model.version, sig.name, parsed.keys, values, outputs)
            log_object += time.perf_counter() - t5
    seconds = time.perf_counter() - started - log_object
    assert predicted == rows, (predicted, rows)
    return {
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "worker_extra_stage_s": {"prediction_log_object": round(log_object, 2)},
    }


def through_local_cloud(body: bytes, rows: int, workers: int, state: Path) -> dict:
    """Drop the file into the local cloud and wait for _SUCCESS."""
    params = {"WorkerMaxConcurrency": str(max(2, workers)), "WorkerTimeout": "900", "ShardVisibilityTimeout": "5400"}
    with LocalCloud(
        ROOT / "template.yaml",
        state_dir=state,
        moto_port=0,
        api_port=0,
        schedules=False,
        concurrency=workers,
        parameters=params,
    ) as lc:
        s3, bucket = lc.client("s3"), lc.name("DataBucket")
        started = time.perf_counter()
        s3.put_object(Bucket=bucket, Key="incoming/bench.jsonl", Body=body)
        uploaded, uploaded_epoch = time.perf_counter(), time.time()
        while True:
            try:
                manifest = json.loads(s3.get_object(Bucket=bucket, Key="results/bench.jsonl/_SUCCESS")["Body"].read())
                break
            except s3.exceptions.NoSuchKey:
                time.sleep(0.5)
        seconds = time.perf_counter() - started
        log = (state / "logs" / "BatchWorkerFunction.log").read_text()
    assert manifest["counts"]["rows_predicted"] == rows, manifest["counts"]
    peak = max(int(m) for m in re.findall(r"Max Memory Used: (\d+) MB", log))
    return {
        "stages_s": stages_from_manifest(manifest.get("timings", {}), uploaded - started, uploaded_epoch, workers),
        "seconds": round(seconds, 2),
        "upload_seconds": round(uploaded - started, 2),
        "rows_per_s": round(rows / seconds),
        "shards": manifest["shards"]["total"],
        "worker_seconds": manifest["timings"]["worker_seconds"],
        "worker_peak_rss_mb": peak,
    }


def stages_from_manifest(timings: dict, upload_s: float, uploaded_epoch: float, workers: int) -> dict:
    """Where a job's wall time went, from the _SUCCESS manifest's timestamps (read from outside the pipeline):
    upload, S3 notification to the planner's start, planning, workers after planning, and how busy the workers were
    (their summed shard seconds over workers x the time from the job's start to its end)."""
    created, planned, finished = (timings.get(k) for k in ("created_at", "planned_at", "finished_at"))
    if None in (created, planned, finished):
        return {"upload": round(upload_s, 2), "note": "manifest has no created/planned/finished times"}
    busy = timings.get("worker_seconds", 0.0)
    return {
        "upload": round(upload_s, 2),
        "notification_to_planning": round(created - uploaded_epoch, 2),
        "planning": round(planned - created, 2),
        "workers_after_planning": round(finished - planned, 2),
        "worker_busy_total": round(busy, 2),
        "worker_utilization": round(busy / (workers * (finished - created)), 2) if finished > created else None,
    }


def cost_per_million(run: dict, rows: int, online_p50_ms: float) -> dict:
    """AWS cost per million predictions from measured durations (list prices, see PRICE)."""
    scale = 1_000_000 / rows
    shards = run["shards"] * scale
    worker_gb = 1.0  # WorkerMemorySize default, MB / 1024
    batch = {
        "lambda_compute": run["worker_seconds"] * scale * worker_gb * PRICE["lambda_gb_s"],
        "lambda_requests": shards * PRICE["lambda_request"],
        "sqs": shards * 3 * PRICE["sqs_request"],  # send, receive, delete
        "s3": shards * (PRICE["s3_get"] + 2 * PRICE["s3_put"]),  # range GET; part + error part PUT
    }
    billed_ms = max(1.0, np.ceil(online_p50_ms))  # Lambda bills per started ms
    online = {
        "http_api": 1_000_000 * PRICE["http_api_request"],
        "lambda_requests": 1_000_000 * PRICE["lambda_request"],
        "lambda_compute": 1_000_000 * billed_ms / 1000 * 0.5 * PRICE["lambda_gb_s"],  # 512 MB, one instance/request
    }
    total_batch, total_online = sum(batch.values()), sum(online.values())
    return {
        "batch_usd": round(total_batch, 4),
        "online_usd": round(total_online, 4),
        "online_over_batch": round(total_online / total_batch, 1),
        "batch_breakdown": {k: round(v, 5) for k, v in batch.items()},
        "online_breakdown": {k: round(v, 5) for k, v in online.items()},
        "goal_ratio_min": 20,
    }


def main(rows: int) -> dict:
    body = make_file(rows)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "bench.jsonl"
        src.write_bytes(body)
        limit = local_limit(src, Path(tmp) / "out.jsonl", rows)
        runs = {f"{w}_workers": through_local_cloud(body, rows, w, Path(tmp) / f"lc{w}") for w in (1, 2)}
    result = {"rows": rows, "file_mb": round(len(body) / 1e6, 1), "single_process_limit": limit, **runs}
    for run in runs.values():
        run["ratio_vs_limit"] = round(run["rows_per_s"] / limit["rows_per_s"], 2)
    result["goal_ratio_vs_limit_2_workers_min"] = 0.5
    # bench/warm.py's 1-instance p50 is ~0.15 ms; Lambda bills whole milliseconds, so any value below 1 costs 1 ms.
    online_p50_ms = float(os.environ.get("ONLINE_P50_MS", "0.15"))
    result["cost_per_million_predictions"] = cost_per_million(runs["2_workers"], rows, online_p50_ms)
    return result


if __name__ == "__main__":
    print(json.dumps({"batch": main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)}, indent=2))
