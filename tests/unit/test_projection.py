"""bench/projection.py: the pure math that turns measured per-shard costs and AWS's documented prices and limits into
wall time and cost of a batch job."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bench.projection import (
    LIMITS,
    MIB,
    PRICES,
    Measured,
    PipelineShape,
    cheapest_shard,
    cpu_share,
    ledger_units,
    number_bytes,
    on_demand_seconds,
    project,
    ramp_seconds,
    set_bytes,
    table,
    worker_seconds,
    worker_work,
)

MEASURED = Measured(
    bytes_per_row=340.0,
    worker_fixed_s=0.01,
    worker_s_per_byte=1e-7,
    planner_s_per_byte=4e-8,
    worker_peak_bytes_per_byte=12.0,
    ledger_bytes_per_key=110.0,
    output_bytes_per_row=200.0,
    part_bytes_per_row=150.0,
    worker_base_mb=45.0,
    init_s=0.3,
)


@pytest.mark.parametrize(("memory_mb", "share"), [(1769, 1.0), (884.5, 0.5), (3538, 1.0), (128, 128 / 1769)])
def test_cpu_share_is_proportional_to_memory_up_to_one_vcpu(memory_mb, share):
    assert cpu_share(memory_mb) == pytest.approx(share)


@pytest.mark.parametrize(("n", "size"), [(0, 2), (7, 2), (12, 2), (123, 3), (100, 2), (12345, 4), (-45, 2)])
def test_number_size_counts_significant_digits(n, size):
    assert number_bytes(n) == size


def test_set_size_adds_its_elements():
    assert set_bytes(0) == 0
    assert set_bytes(3) == 6
    assert set_bytes(101) == 2 * 100 + number_bytes(100)


def test_ledger_units_bill_every_update_on_the_grown_item():
    # 1000-byte item, each shard index adds 2 bytes: the 12th update reaches 1024 bytes, the 13th needs 2 units.
    assert ledger_units(12, 1000) == (12, 12, 1024)
    assert ledger_units(13, 1000) == (14, 13, 1026)
    # reads are billed on the item before the update, in 4 KB units
    wru, rru, size = ledger_units(3, 4095)
    assert (wru, rru, size) == (5 + 5 + 5, 1 + 2 + 2, 4101)


def test_ramp_seconds_follows_the_event_source_scaling():
    # starts at 5 instances, +5 per second: 20 instance-seconds take 2 s (5*2 + 5*2*2/2)
    assert ramp_seconds(20, 1000) == pytest.approx(2.0)
    # capped at 15: the ramp takes 2 s (20 instance-seconds), the remaining 30 run at 15 wide
    assert ramp_seconds(50, 15) == pytest.approx(4.0)
    assert ramp_seconds(10, 2) == pytest.approx(5.0)  # a cap below the starting width
    assert ramp_seconds(0, 100) == 0.0


def test_worker_work_adds_one_init_per_instance_the_ramp_reaches():
    # 20 instance-seconds at the start width of 5 and +5/s: ~2 s, so ~15 instances start, each paying its INIT
    work, instances = worker_work(20.0, 0.1, 1000)
    assert 14 < instances < 17
    assert work == pytest.approx(20.0 + instances * 0.1)
    assert worker_work(10_000.0, 0.1, 50) == pytest.approx((10_000.0 + 50 * 0.1, 50))  # capped
    assert worker_work(20.0, 0.0, 1000)[0] == 20.0


def test_worker_seconds_scale_cpu_by_the_vcpu_share():
    shape = PipelineShape()
    full, half = worker_seconds(4 * MIB, 1769, MEASURED, shape), worker_seconds(4 * MIB, 884.5, MEASURED, shape)
    cpu = MEASURED.worker_fixed_s + MEASURED.worker_s_per_byte * 4 * MIB
    assert half - full == pytest.approx(cpu)  # only the CPU part doubles; I/O stays


def test_projection_counts_shards_requests_and_prices():
    shape = PipelineShape()
    r = project(10_000_000, 4 * MIB, 1024, 1000, MEASURED, shape)
    shards = math.ceil(10_000_000 * 340 / (4 * MIB))
    assert r["shards"] == shards
    assert r["cost_usd"]["sqs"] == pytest.approx(shards * 2.1 * PRICES["sqs_request"].value, abs=1e-4)
    s3 = shards * (PRICES["s3_get"].value + 2 * PRICES["s3_put"].value) + 2 * PRICES["s3_get"].value
    assert r["cost_usd"]["s3_requests"] == pytest.approx(s3, abs=1e-4)
    assert r["total_usd"] == pytest.approx(sum(r["cost_usd"].values()), abs=0.01)
    assert r["usd_per_million_rows"] * 10 == pytest.approx(sum(r["cost_usd"].values()), abs=1e-3)
    assert r["concurrency"] == min(1000, shards)
    assert r["wall_s"] == max(r["floors_s"].values())
    assert r["floors_s"][r["binding"]] == r["wall_s"]


def test_a_serial_planner_binds_and_breaks_past_lambdas_timeout():
    r = project(100_000_000, 4 * MIB, 1024, 1000, MEASURED, PipelineShape())
    assert r["binding"].startswith("planner")
    assert any("900 s timeout" in v for v in r["violations"])
    assert any("key ledger" in v for v in r["violations"])  # 110 B x 100 M keys >> 1024 MB
    assert not r["feasible"]
    fast = replace(MEASURED, planner_s_per_byte=0.0, ledger_bytes_per_key=0.0)
    r = project(1_000_000, 4 * MIB, 1024, 1000, fast, PipelineShape())
    assert r["feasible"], r["violations"]


def test_tiny_shards_outgrow_the_job_item():
    r = project(1_000_000_000, 256 * 1024, 1024, 1000, MEASURED, PipelineShape())
    assert r["job_item_kb"] > LIMITS["ddb_item_bytes"].value / 1024
    assert any("400 KB item limit" in v for v in r["violations"])


def test_a_shard_too_big_for_the_worker_is_flagged():
    r = project(10_000_000, 256 * MIB, 1024, 1000, MEASURED, PipelineShape())
    assert any(v.startswith("a worker needs") for v in r["violations"])


def test_more_concurrency_never_slows_the_workers():
    key = "worker concurrency (SQS event source ramp, then the cap)"
    for rows in (10_000_000, 100_000_000):
        walls = [project(rows, 4 * MIB, 1024, c, MEASURED, PipelineShape())["floors_s"][key] for c in (20, 100, 1000)]
        assert walls == sorted(walls, reverse=True), walls
    assert project(100_000_000, 4 * MIB, 1024, 5000, MEASURED, PipelineShape())["concurrency"] == 1000


def test_cheapest_shard_is_one_a_worker_can_run_and_costs_no_more():
    best = cheapest_shard(100_000_000, 1024, 1000, MEASURED)
    assert not any(v.startswith(("a worker", "one shard")) for v in best["violations"])
    assert best["total_usd"] <= project(100_000_000, 4 * MIB, 1024, 1000, MEASURED)["total_usd"]


def test_table_has_one_row_per_projection():
    runs = [project(n, 4 * MIB, 1024, 1000, replace(MEASURED, ledger_bytes_per_key=0.0)) for n in (10**6, 10**7)]
    text = table({"projections": runs})
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| 1,000,000 | 4 MiB |")
    assert lines[2].endswith("| — |")  # a million rows runs as it is
    assert {line.count(" | ") for line in lines} == {10}


def test_on_demand_writes_double_their_peak_every_period():
    assert on_demand_seconds(2000, 4000, 1800) == pytest.approx(0.5)
    # 7.2 M units in the first 30 min at 4,000/s, then 8,000/s: 8 M more units take 1,000 s
    assert on_demand_seconds(7.2e6 + 8e6, 4000, 1800) == pytest.approx(1800 + 1000)
    # capped at 6,000/s: after the first period the rest runs at the cap
    assert on_demand_seconds(7.2e6 + 6e6, 4000, 1800, 6000) == pytest.approx(1800 + 1000)


def test_the_cache_option_writes_one_item_per_row():
    r = project(10_000_000, 4 * MIB, 1024, 1000, MEASURED)
    assert r["with_cache_option"]["write_units"] == 10_000_000  # a 150-byte line fits one 1 KB unit
    assert r["with_cache_option"]["usd"] == pytest.approx(10_000_000 * PRICES["ddb_wru"].value, abs=0.01)
