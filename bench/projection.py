"""Projection of a batch job to AWS scale: wall time and cost of 10 M / 100 M / 1 B keyed rows on Lambda + SQS + S3 +
DynamoDB, from per-shard costs measured here and AWS's documented list prices and limits, and the shard size that
costs least. Says which limit binds first, and which make a size impossible with today's pipeline.

Every input is either measured (``measure()``, this machine, printed with the result) or one of the constants below,
each with its source and the date it was read. Assumptions that no document fixes are marked ``assumption``.

Usage: python -m bench.projection [--concurrency 1000] [--memory-mb 1024] [--results bench/results.json]
(prints JSON, and the Markdown table with --table)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.report import duration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MIB = 1024 * 1024
READ_ON = "2026-12-02"


@dataclass(frozen=True)
class Source:
    """One documented (or assumed) input: its value, unit and where it comes from."""

    value: float
    unit: str
    source: str


# ------------------------------------------------------------------ documented inputs (us-east-1 list prices)
# Read on READ_ON from stored copies of the AWS pages named; where the page renders its table client-side the figure
# is the widely published us-east-1 list price, cross-checked in the named secondary source.
LAMBDA = "docs.aws.amazon.com/lambda/latest/dg/"
S3 = "docs.aws.amazon.com/AmazonS3/latest/userguide/"
DDB = "docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
SQS = "docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/"
PRICES: dict[str, Source] = {
    "lambda_gb_s": Source(0.0000166667, "USD per GB-second (x86)", "aws.amazon.com/lambda/pricing"),
    "lambda_request": Source(0.20e-6, "USD per request", "aws.amazon.com/lambda/pricing"),
    "sqs_request": Source(0.40e-6, "USD per standard-queue request (64 KB chunk)", "aws.amazon.com/sqs/pricing"),
    "s3_put": Source(0.005e-3, "USD per PUT/COPY/POST/LIST", "aws.amazon.com/s3/pricing (S3 Standard)"),
    "s3_get": Source(0.0004e-3, "USD per GET/HEAD", "aws.amazon.com/s3/pricing (S3 Standard)"),
    "s3_storage_gb_month": Source(0.023, "USD per GB-month, first 50 TB", "aws.amazon.com/s3/pricing (S3 Standard)"),
    "ddb_wru": Source(0.625e-6, "USD per on-demand write request unit", "aws.amazon.com/dynamodb/pricing/on-demand"),
    "ddb_rru": Source(0.125e-6, "USD per on-demand read request unit", "aws.amazon.com/dynamodb/pricing/on-demand"),
}

LIMITS: dict[str, Source] = {
    "lambda_timeout_s": Source(900, "s per invocation", LAMBDA + "gettingstarted-limits.html"),
    "lambda_memory_mb_max": Source(10240, "MB", LAMBDA + "gettingstarted-limits.html"),
    "lambda_account_concurrency": Source(
        1000, "concurrent executions (default)", LAMBDA + "gettingstarted-limits.html"
    ),
    "lambda_mb_per_vcpu": Source(1769, "MB for one vCPU", LAMBDA + "configuration-memory.html"),
    "esm_start_concurrency": Source(5, "SQS batches at start", LAMBDA + "services-sqs-scaling.html"),
    "esm_ramp_per_minute": Source(300, "more concurrent batches per minute", LAMBDA + "services-sqs-scaling.html"),
    "esm_max_concurrency": Source(1000, "concurrent batches per event source", LAMBDA + "services-sqs-scaling.html"),
    "sqs_in_flight": Source(120000, "in-flight messages per standard queue", SQS + "quotas-queues.html"),
    "s3_put_per_prefix_s": Source(3500, "PUT/COPY/POST/DELETE per s per prefix", S3 + "optimizing-performance.html"),
    "s3_get_per_prefix_s": Source(5500, "GET/HEAD per s per prefix", S3 + "optimizing-performance.html"),
    "s3_stream_mb_s": Source(85, "MB/s per connection (85-90)", S3 + "optimizing-performance-guidelines.html"),
    "ddb_item_bytes": Source(400 * 1024, "bytes per item", DDB + "ServiceQuotas.html"),
    "ddb_partition_wcu_s": Source(1000, "write units per s per partition", DDB + "bp-partition-key-design.html"),
    "ddb_partition_rcu_s": Source(3000, "read units per s per partition", DDB + "bp-partition-key-design.html"),
    "ddb_new_table_wru_s": Source(4000, "write units per s, new on-demand table", DDB + "on-demand-capacity-mode.html"),
    "ddb_peak_doubling_s": Source(1800, "s to double the previous peak", DDB + "on-demand-capacity-mode.html"),
    "ddb_table_wru_s_max": Source(40000, "write units per s per table (default)", DDB + "ServiceQuotas.html"),
}
# Billing rules used below: UpdateItem is billed on the larger of the item's sizes before and after, in 1 KB write
# units; a strongly consistent read in 4 KB units (DDB + "read-write-operations.html"). Lambda bills the INIT phase
# of on-demand functions too (since 2025-08-01, aws.amazon.com/lambda/pricing).

ASSUMED: dict[str, Source] = {
    "s3_request_latency_s": Source(
        0.03,
        "s per small S3 request",
        "assumption within 'median latencies often in the tens of milliseconds' (S3 performance guidelines)",
    ),
    "ddb_request_latency_s": Source(0.01, "s per DynamoDB call", "assumption: 'single-digit millisecond' (DynamoDB)"),
    "sqs_request_latency_s": Source(0.03, "s per SQS SendMessageBatch", "assumption (no documented figure)"),
    "lambda_core_vs_local": Source(
        1.0, "Lambda vCPU speed / this machine's core", "assumption: one full vCPU = one local core (not measured)"
    ),
}


@dataclass(frozen=True)
class PipelineShape:
    """What one job costs in requests besides compute, read from liteserve/batch/jobs.py, storage.py and adapters.py
    as they are at this commit (update when the batch rewrite lands)."""

    s3_get_per_shard: int = 1  # the shard's byte range
    s3_put_per_shard: int = 2  # results part + prediction-log batch object (an error part only when rows fail)
    sqs_per_shard: float = 2.1  # receive + delete by the event source, 1/10 of a SendMessageBatch by the planner
    ddb_reads_per_shard: int = 1  # strongly consistent GetItem of the job item
    ddb_writes_per_shard: int = 1  # conditional UpdateItem adding the shard to the job item's `done` number set
    job_item_base_bytes: int = 700  # the job item without its `done` set (ids, etag, options JSON, counts, times)
    planner_memory_mb: int = 1024  # template.yaml BatchSplitFunction MemorySize


@dataclass(frozen=True)
class Measured:
    """Per-row and per-shard costs measured on this machine (see ``measure``)."""

    bytes_per_row: float
    worker_fixed_s: float  # CPU seconds per shard regardless of size
    worker_s_per_byte: float  # CPU seconds per input byte: parse + predict + part lines + log object
    planner_s_per_byte: float  # CPU seconds per input byte: cut shards + key ledger
    worker_peak_bytes_per_byte: float  # extra peak memory per input byte of a shard (tracemalloc)
    ledger_bytes_per_key: float  # planner memory per distinct key (tracemalloc)
    output_bytes_per_row: float  # results part + gzip prediction-log object
    part_bytes_per_row: float  # the results line alone (what the key-lookup cache stores per row)
    worker_base_mb: float  # peak RSS of a function that has loaded its models (bench/cold_start.py)
    init_s: float  # cold start of one worker instance (bench/cold_start.py, handler median)


# ------------------------------------------------------------------ pure math
def cpu_share(memory_mb: float, mb_per_vcpu: float = LIMITS["lambda_mb_per_vcpu"].value) -> float:
    """Fraction of a vCPU a single-threaded function gets at ``memory_mb`` (CPU is proportional to memory)."""
    return min(1.0, memory_mb / mb_per_vcpu)


def number_bytes(n: int) -> int:
    """DynamoDB's size of a number: one byte per two significant digits, plus one."""
    digits = str(abs(n)).rstrip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def set_bytes(count: int) -> int:
    """Bytes of a number set holding 0..count-1 (the job item's `done` set when ``count`` shards are done)."""
    return sum(number_bytes(i) for i in range(count))


def ledger_units(shards: int, base_bytes: int) -> tuple[int, int, int]:
    """(write units, strongly consistent read units, final item bytes) of counting ``shards`` shards on one item:
    each update is billed on the item's size after it grows (1 KB units), each read before (4 KB units)."""
    wru = rru = 0
    size = base_bytes
    for i in range(shards):
        rru += math.ceil(size / 4096)
        size += number_bytes(i)
        wru += math.ceil(size / 1024)
    return wru, rru, size


def ramp_seconds(
    instance_seconds: float,
    concurrency: float,
    start: float = LIMITS["esm_start_concurrency"].value,
    per_minute: float = LIMITS["esm_ramp_per_minute"].value,
) -> float:
    """Wall seconds to spend ``instance_seconds`` of work when concurrency starts at ``start`` and grows by
    ``per_minute`` each minute up to ``concurrency`` (the SQS event source's scaling)."""
    if instance_seconds <= 0:
        return 0.0
    start = min(start, concurrency)
    rate = per_minute / 60
    ramp = (concurrency - start) / rate
    ramp_work = (start + concurrency) / 2 * ramp
    if instance_seconds <= ramp_work:
        return (-start + math.sqrt(start * start + 2 * rate * instance_seconds)) / rate
    return ramp + (instance_seconds - ramp_work) / concurrency


def worker_work(shard_seconds: float, init_s: float, concurrency: float) -> tuple[float, float]:
    """(instance-seconds including cold starts, instances started): every instance the event source starts pays one
    (billed) INIT, and it starts as many as its ramp reaches before the work is done, at most ``concurrency``."""
    start, per_s = LIMITS["esm_start_concurrency"].value, LIMITS["esm_ramp_per_minute"].value / 60
    instances = min(concurrency, start)
    for _ in range(5):  # a fixed point: more instances add INIT work, which lengthens the ramp a little
        wall = ramp_seconds(shard_seconds + instances * init_s, concurrency)
        instances = min(concurrency, max(instances, start + per_s * wall))
    return shard_seconds + instances * init_s, instances


def on_demand_seconds(units: float, initial_per_s: float, doubling_s: float, max_per_s: float = math.inf) -> float:
    """Seconds to write ``units`` on an on-demand table that serves ``initial_per_s`` at first and doubles its
    peak every ``doubling_s`` while driven at it, up to ``max_per_s`` (the table's throughput quota)."""
    elapsed, rate = 0.0, min(initial_per_s, max_per_s)
    while units > rate * doubling_s and rate < max_per_s:
        units -= rate * doubling_s
        elapsed += doubling_s
        rate = min(2 * rate, max_per_s)
    return elapsed + units / rate


def worker_seconds(shard_bytes: float, memory_mb: float, m: Measured, shape: PipelineShape) -> float:
    """Duration of one worker invocation on one shard: CPU scaled to the vCPU share, plus S3/DynamoDB I/O."""
    cpu = (m.worker_fixed_s + m.worker_s_per_byte * shard_bytes) / (
        cpu_share(memory_mb) * ASSUMED["lambda_core_vs_local"].value
    )
    rows = shard_bytes / m.bytes_per_row
    stream = (shard_bytes + rows * m.output_bytes_per_row) / (LIMITS["s3_stream_mb_s"].value * 1e6)
    requests = (shape.s3_get_per_shard + shape.s3_put_per_shard) * ASSUMED["s3_request_latency_s"].value + (
        shape.ddb_reads_per_shard + shape.ddb_writes_per_shard
    ) * ASSUMED["ddb_request_latency_s"].value
    return cpu + stream + requests


def project(
    rows: int,
    shard_bytes: int,
    memory_mb: int,
    concurrency: int,
    m: Measured,
    shape: PipelineShape = PipelineShape(),
) -> dict[str, Any]:
    """Wall time, cost and limits of one job of ``rows`` keyed rows."""
    p = {k: v.value for k, v in PRICES.items()}
    total_bytes = rows * m.bytes_per_row
    shards = max(1, math.ceil(total_bytes / shard_bytes))
    concurrency_eff = min(
        concurrency, LIMITS["lambda_account_concurrency"].value, LIMITS["esm_max_concurrency"].value, shards
    )
    d = worker_seconds(shard_bytes, memory_mb, m, shape)
    planner_share = cpu_share(shape.planner_memory_mb)
    planner_s = (
        total_bytes * m.planner_s_per_byte / planner_share
        + total_bytes / (LIMITS["s3_stream_mb_s"].value * 1e6)
        + math.ceil(shards / 10) * ASSUMED["sqs_request_latency_s"].value
    )
    wru, rru, item_bytes = ledger_units(shards, shape.job_item_base_bytes)
    work, instances = worker_work(shards * d, m.init_s / cpu_share(memory_mb), concurrency_eff)
    floors = {
        "worker concurrency (SQS event source ramp, then the cap)": ramp_seconds(work, concurrency_eff),
        "planner: one Lambda streams the whole file and reads every key": planner_s + d,
        "DynamoDB: every shard updates one job item (1,000 WCU/s per partition)": max(
            wru / LIMITS["ddb_partition_wcu_s"].value, rru / LIMITS["ddb_partition_rcu_s"].value
        ),
        "S3 PUTs under results/<job>/ (3,500/s per prefix)": shards
        * shape.s3_put_per_shard
        / LIMITS["s3_put_per_prefix_s"].value,
        "S3 GETs of the input's ranges (5,500/s per prefix)": shards
        * shape.s3_get_per_shard
        / LIMITS["s3_get_per_prefix_s"].value,
    }
    binding = max(floors, key=lambda k: floors[k])
    worker_mb = m.worker_base_mb + m.worker_peak_bytes_per_byte * shard_bytes / MIB
    planner_mb = m.worker_base_mb + m.ledger_bytes_per_key * rows / MIB + 2 * shard_bytes / MIB
    violations = []
    if planner_s > LIMITS["lambda_timeout_s"].value:
        violations.append(f"planner needs {planner_s:,.0f} s > Lambda's 900 s timeout")
    if planner_mb > shape.planner_memory_mb:
        violations.append(f"planner's key ledger needs {planner_mb:,.0f} MB > its {shape.planner_memory_mb} MB")
    if item_bytes > LIMITS["ddb_item_bytes"].value:
        violations.append(f"job item grows to {item_bytes / 1024:,.0f} KB > DynamoDB's 400 KB item limit")
    if d > LIMITS["lambda_timeout_s"].value:
        violations.append(f"one shard takes {d:,.0f} s > Lambda's 900 s timeout")
    if worker_mb > memory_mb:
        violations.append(f"a worker needs ~{worker_mb:,.0f} MB > its {memory_mb} MB")
    output_gb = rows * m.output_bytes_per_row / 1e9
    cost = {
        "lambda_workers": work * memory_mb / 1024 * p["lambda_gb_s"] + shards * p["lambda_request"],
        "lambda_planner": planner_s * shape.planner_memory_mb / 1024 * p["lambda_gb_s"] + p["lambda_request"],
        "sqs": shards * shape.sqs_per_shard * p["sqs_request"],
        "s3_requests": shards * (shape.s3_get_per_shard * p["s3_get"] + shape.s3_put_per_shard * p["s3_put"])
        + 2 * p["s3_get"],
        "dynamodb": wru * p["ddb_wru"] + rru * p["ddb_rru"],
        "s3_storage_1_month": output_gb * p["s3_storage_gb_month"],
    }
    total = sum(cost.values())
    # The job option cache=true also writes every prediction to the key-lookup table (one item per row).
    cache_wru = rows * math.ceil((m.part_bytes_per_row + 64) / 1024)
    cache = {
        "usd": round(cache_wru * p["ddb_wru"], 2),
        "write_units": cache_wru,
        "floor_s_on_a_new_table": round(
            on_demand_seconds(cache_wru, LIMITS["ddb_new_table_wru_s"].value, LIMITS["ddb_peak_doubling_s"].value),
            1,
        ),
    }
    return {
        "rows": rows,
        "shard_mib": round(shard_bytes / MIB, 3),
        "shards": shards,
        "memory_mb": memory_mb,
        "concurrency": int(concurrency_eff),
        "worker_instances": round(instances),
        "worker_s_per_shard": round(d, 3),
        "planner_s": round(planner_s, 1),
        "wall_s": round(floors[binding], 1),
        "binding": binding,
        "floors_s": {k: round(v, 1) for k, v in floors.items()},
        "violations": violations,
        "feasible": not violations,
        "cost_usd": {k: round(v, 4) for k, v in cost.items()},
        "total_usd": round(total, 2),
        "usd_per_million_rows": round(total / rows * 1e6, 4),
        "job_item_kb": round(item_bytes / 1024, 1),
        "with_cache_option": cache,
        "worker_mb_needed": round(worker_mb),
    }


SHARD_CANDIDATES = [2**k for k in range(18, 29)]  # 256 KiB .. 256 MiB


def cheapest_shard(rows: int, memory_mb: int, concurrency: int, m: Measured, shape: PipelineShape = PipelineShape()):
    """The projection at the shard size that costs least among those a worker can run (memory, timeout); the
    job-wide limits (planner, job item) do not depend on it enough to choose, so they are reported, not filtered."""
    runs = [project(rows, s, memory_mb, concurrency, m, shape) for s in SHARD_CANDIDATES]
    per_worker = [r for r in runs if not any(v.startswith(("one shard", "a worker")) for v in r["violations"])]
    return min(per_worker or runs, key=lambda r: r["total_usd"])


# ------------------------------------------------------------------ measurement (this machine)
def measure(cold_start: dict | None = None, shard_sizes: tuple[int, ...] = (1 * MIB, 4 * MIB)) -> Measured:
    """Time the worker's and the planner's CPU work on real digits rows, outside the batch package's adapters."""
    from liteserve.batch.jobs import Pipeline
    from liteserve.batch.plan import KeyLedger, cut_shards
    from liteserve.batch.records import RowFormat
    from liteserve.records import batch_object
    from liteserve.runtime import ModelRepository

    from bench.batch import make_file

    model = ModelRepository(ROOT / "layers" / "model" / "models").get("digits")
    sig = model.signature(None)
    fmt = RowFormat("jsonl")
    body = make_file(40_000)
    bytes_per_row = len(body) / 40_000

    def shard_of(size: int) -> bytes:
        data = (body * (size // len(body) + 1))[:size]
        return data[: data.rfind(b"\n") + 1]

    def work(data: bytes) -> tuple[int, int]:
        rows, values = fmt.parse(data, 1, sig.inputs)
        out = Pipeline._predict(model, sig.name, values)
        part = Pipeline._part_lines(rows.keys, out, "key", model.version)
        _, log = batch_object("bench", 0, time.time(), model.name, model.version, sig.name, rows.keys, values, out)
        return len(part), len(log)

    timings = []
    for size in shard_sizes:
        data = shard_of(size)
        work(data)  # warm-up
        best = min(_timed(work, data) for _ in range(3))
        timings.append((len(data), best))
    (b0, t0), (b1, t1) = timings[0], timings[-1]
    per_byte = (t1 - t0) / (b1 - b0)
    data = shard_of(shard_sizes[0])
    part_bytes, log_bytes = work(data)
    rows_in_shard = data.count(b"\n")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    work(data)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()

    def plan(data: bytes) -> KeyLedger:
        ledger = KeyLedger(fmt, sig.inputs)
        chunks = (data[i : i + MIB] for i in range(0, len(data), MIB))
        for shard in cut_shards(chunks, shard_sizes[0]):
            ledger.scan(shard)
        return ledger

    big = shard_of(shard_sizes[-1])
    planner = min(_timed(plan, big) for _ in range(3)) / len(big)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ledger = plan(body)
    ledger_bytes = (tracemalloc.get_traced_memory()[0] - before) / len(ledger)
    tracemalloc.stop()
    cold = (cold_start or {}).get("handler", {})
    return Measured(
        bytes_per_row=round(bytes_per_row, 1),
        worker_fixed_s=round(max(0.0, t0 - per_byte * b0), 5),
        worker_s_per_byte=per_byte,
        planner_s_per_byte=planner,
        worker_peak_bytes_per_byte=round(peak / len(data), 2),
        ledger_bytes_per_key=round(ledger_bytes, 1),
        output_bytes_per_row=round((part_bytes + log_bytes) / rows_in_shard, 1),
        part_bytes_per_row=round(part_bytes / rows_in_shard, 1),
        worker_base_mb=cold.get("peak_rss_mb_max", 64.0),
        init_s=cold.get("init_s_median", 1.0),
    )


def _timed(fn: Any, arg: Any) -> float:
    started = time.perf_counter()
    fn(arg)
    return time.perf_counter() - started


# ------------------------------------------------------------------ report
SIZES = (10_000_000, 100_000_000, 1_000_000_000)


def table(result: dict[str, Any]) -> str:
    """Markdown table of a ``main()`` result."""
    lines = [
        "| rows | shard | shards | worker s/shard | wall time | binds first | wall if planning were parallel | "
        "cost (USD) | USD per M rows | job option cache=true adds | cannot run today because |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["projections"]:
        others = max(v for k, v in r["floors_s"].items() if not k.startswith("planner"))
        cache = r["with_cache_option"]
        lines.append(
            f"| {r['rows']:,} | {r['shard_mib']:g} MiB{' (cheapest)' if r.get('cheapest') else ''} | "
            f"{r['shards']:,} | {r['worker_s_per_shard']:.2f} | {duration(r['wall_s'])} | {r['binding']} | "
            f"{duration(others)} | {r['total_usd']:,.2f} | {r['usd_per_million_rows']:.4f} | "
            f"${cache['usd']:,.2f}, ≥ {duration(cache['floor_s_on_a_new_table'])} of writes | "
            f"{'; '.join(r['violations']) or '—'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1000, help="worker MaximumConcurrency (2..1000)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="WorkerMemorySize")
    parser.add_argument("--shard-mib", type=float, default=4.0, help="ShardBytes in MiB (template default 4)")
    parser.add_argument("--results", type=Path, default=HERE / "results.json", help="for the cold-start figures")
    parser.add_argument("--table", action="store_true", help="print the Markdown table instead of JSON")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    measured = measure(results.get("cold_start"))
    shape = PipelineShape()
    projections = []
    for rows in SIZES:
        projections.append(project(rows, int(args.shard_mib * MIB), args.memory_mb, args.concurrency, measured, shape))
        projections.append(
            {**cheapest_shard(rows, args.memory_mb, args.concurrency, measured, shape), "cheapest": True}
        )
    batch = results.get("batch", {}).get("2_workers", {})
    cross_check = {
        "cpu_s_per_4mib_shard_here": round(measured.worker_fixed_s + measured.worker_s_per_byte * 4 * MIB, 3),
        "local_cloud_worker_s_per_shard": round(batch["worker_seconds"] / batch["shards"], 3)
        if batch.get("shards")
        else None,
    }
    out = {
        "measured": asdict(measured),
        "cross_check": cross_check,
        "measured_on": "this machine; worker/planner CPU per byte from real digits rows (bench/projection.py)",
        "pipeline_shape": asdict(shape),
        "prices": {k: asdict(v) for k, v in PRICES.items()},
        "limits": {k: asdict(v) for k, v in LIMITS.items()},
        "assumed": {k: asdict(v) for k, v in ASSUMED.items()},
        "read_on": READ_ON,
        "region": "us-east-1",
        "projections": projections,
    }
    if args.table:
        print(table(out), end="")
    return out


if __name__ == "__main__":
    result = main()
    if "--table" not in sys.argv:
        print(json.dumps({"projection": result}, indent=2))
