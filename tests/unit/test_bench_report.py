"""bench/report.py: the Markdown benchmark table built from a results dict (the shape bench/*.py print)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bench.report import main, rows, table

RESULTS = {
    "cold_start": {
        "raw_interpreter": {"init_s_median": 0.3, "peak_rss_mb_max": 35.0},
        "handler": {
            "init_s_median": 0.414,
            "peak_rss_mb_max": 42.0,
            "init_ratio_vs_raw": 1.38,
            "rss_ratio_vs_raw": 1.2,
        },
        "handler_with_tracer": {
            "init_s_median": 1.2,
            "peak_rss_mb_max": 77.0,
            "init_ratio_vs_raw": 4.0,
            "rss_ratio_vs_raw": 2.2,
        },
        "goals": {"handler_init_ratio_max": 1.5, "handler_peak_rss_mb_max": 64},
    },
    "warm": {
        "1_instances": {
            "raw_runner": {"p50_us": 6.0, "p99_us": 9.0},
            "minimal_orjson_handler": {"p50_us": 14.0, "p99_us": 20.0},
            "handler_tfserving_keyed": {"p50_us": 130.0, "p99_us": 210.0},
            "handler_v2_keyed": {"p50_us": 140.0, "p99_us": 220.0},
            "tfserving_p50_ratio_vs_raw": 21.67,
            "tfserving_p50_ratio_vs_minimal": 9.29,
            "v2_p50_ratio_vs_raw": 23.33,
        },
        "100_instances": {
            "raw_runner": {"p50_us": 18.0, "p99_us": 25.0},
            "minimal_orjson_handler": {"p50_us": 550.0, "p99_us": 700.0},
            "handler_tfserving_keyed": {"p50_us": 1100.0, "p99_us": 1900.0},
            "tfserving_p50_ratio_vs_raw": 61.1,
            "tfserving_p50_ratio_vs_minimal": 2.0,
            "v2_p50_ratio_vs_raw": 70.0,
        },
        "goals": {"1_instances_p50_us_max": 100, "100_instances_p50_us_max": 1500},
    },
    "batch": {
        "rows": 1_000_000,
        "single_process_limit": {"seconds": 15.0, "rows_per_s": 66_000},
        "1_workers": {"rows_per_s": 18_000, "ratio_vs_limit": 0.27, "worker_peak_rss_mb": 140},
        "2_workers": {"rows_per_s": 30_000, "ratio_vs_limit": 0.45, "worker_peak_rss_mb": 138},
        "goal_ratio_vs_limit_2_workers_min": 0.5,
        "cost_per_million_predictions": {"batch_usd": 0.0019, "online_usd": 1.21, "online_over_batch": 636.8},
    },
    "load": {
        "concurrency": 16,
        "seconds": 60.02,
        "requests": 23_000,
        "errors": 0,
        "throughput_rps": 383.2,
        "p50_ms": 38.1,
        "p99_ms": 120.5,
        "baseline_concurrency_1": {"throughput_rps": 150.0},
        "throughput_vs_concurrency_1": 2.55,
    },
}


def by_what(results: dict) -> dict[str, tuple[str, ...]]:
    return {r.what: r.cells() for r in rows(results)}


def test_each_figure_sits_next_to_its_reference_goal_and_verdict():
    found = by_what(RESULTS)
    cold = found["cold start: import handler, load models, answer 1 request"]
    assert cold == (
        "cold start: import handler, load models, answer 1 request",
        "0.414 s = 1.38× raw",
        "raw interpreter loading 1 model: 0.300 s",
        "≤ 1.5× raw",
        "yes",
    )
    warm1 = found["warm handler, 1 keyed instance (TF Serving): p50 / p99"]
    assert warm1[1] == "130 / 210 µs"
    assert "raw runner p50 6 µs (21.67×)" in warm1[2]
    assert warm1[3:] == ("p50 ≤ 100 µs", "**no**")  # a missed goal shows, it is not hidden
    assert found["warm handler, 100 keyed instances (TF Serving): p50 / p99"][4] == "yes"
    two = found["batch, 1,000,000 keyed rows drop → _SUCCESS, 2 workers"]
    assert two[1:] == (
        "30,000 rows/s = 0.45× the limit",
        "single-process limit: 66,000 rows/s",
        "≥ 0.5× the limit",
        "**no**",
    )
    assert found["batch, 1,000,000 keyed rows drop → _SUCCESS, 1 worker"][3:] == ("—", "—")  # no goal of its own
    cost = found["AWS cost per million predictions, batch vs online"]
    assert cost[1] == "batch $0.0019 vs online $1.21 = 636.8×"
    assert cost[4] == "yes"
    load = found["load test, local HTTP API: 60 s at concurrency 16"]
    assert load[1] == "383.2 req/s, p50 38.1 ms, p99 120.5 ms, 0 errors of 23,000"
    assert load[4] == "yes"


def test_missing_benchmarks_are_listed_as_not_run():
    found = by_what(RESULTS)
    assert found["artifact sizes"][1] == "not run"
    assert found["two-phase prediction"][1] == "not run"
    assert by_what({})["load test"][1] == "not run"


def test_a_malformed_result_is_reported_not_raised():
    broken = copy.deepcopy(RESULTS)
    del broken["warm"]["1_instances"]["raw_runner"]
    assert by_what(broken)["warm latency"][1].startswith("unreadable result (KeyError")


@pytest.mark.parametrize(("errors", "verdict"), [(0, "yes"), (3, "**no**")])
def test_load_errors_decide_its_goal(errors, verdict):
    results = copy.deepcopy(RESULTS)
    results["load"]["errors"] = errors
    assert by_what(results)["load test, local HTTP API: 60 s at concurrency 16"][4] == verdict


def test_artifacts_and_two_phase_rows():
    results = {
        "artifacts": {
            "functions": {
                "PredictFunction": {
                    "unzipped_mb": 75.1,
                    "unzipped_mib": 71.62,
                    "zipped_mib": 22.87,
                    "largest_zip_mib": 22.57,
                }
            },
            "largest": "PredictFunction",
            "limits": {"unzipped_mib": 250, "zipped_upload_mib": 50},
            "goal": {"unzipped_mb_max": 80},
        },
        "two_phase": {
            "threshold": 0.9,
            "accuracy": {"edge_only": 0.9806, "cloud_only": 0.9861, "two_phase": 0.9861},
            "escalation_rate": 0.042,
            "two_phase_gap_to_cloud_points": 0.0,
            "goal": {"max_gap_points": 0.5, "max_escalation": 0.2},
        },
    }
    found = by_what(results)
    size = found["artifact: largest function + layers unzipped (PredictFunction)"]
    assert size[1:] == ("75.1 MB = 0.29× Lambda's limit", "Lambda: 250 MiB unzipped", "≤ 80 MB", "yes")
    assert found["two-phase at threshold 0.9: accuracy, escalated"][1:] == (
        "98.61%, 4.2% escalated",
        "cloud only 98.61%, edge only 98.06%",
        "within 0.5 pt of cloud, ≤ 20% escalated",
        "yes",
    )
    assert by_what({"artifacts": {"error": "no build"}})["artifact sizes"][1] == "not measured: no build"


def test_the_table_is_markdown_with_a_goal_summary(tmp_path: Path):
    text = table(RESULTS)
    lines = text.splitlines()
    assert lines[0] == "| what | measured | compared with | goal | met |"
    assert lines[1] == "| --- | --- | --- | --- | --- |"
    widths = {line.count(" | ") for line in lines if line.startswith("| ")}
    assert widths == {4}  # every row has five cells (no unescaped '|' inside one)
    assert lines[-1] == "5 of 7 goals met."
    src, dst = tmp_path / "results.json", tmp_path / "results.md"
    src.write_text(json.dumps(RESULTS))
    assert main([str(src), str(dst)]) == 0
    assert dst.read_text().endswith(text)


def test_spread_over_processes_shows_next_to_the_medians():
    results = copy.deepcopy(RESULTS)
    results["warm"]["spread"] = {"1_instances": {"handler_tfserving_keyed": {"p50_us": [120.0, 150.0]}}}
    results["warm"]["processes"] = 5
    cold = results["cold_start"]
    cold["handler"].update(init_s_min=0.4, init_s_max=0.5, init_ratio_per_round={"min": 1.2, "max": 1.6})
    cold["raw_interpreter"].update(init_s_min=0.29, init_s_max=0.33)
    cold.update(repeats=11, runtime_layer=".aws-sam/build/RuntimeLayer/python")
    found = by_what(results)
    warm = found["warm handler, 1 keyed instance (TF Serving): p50 / p99"]
    assert warm[1] == "130 / 210 µs (120–150 µs p50 over the processes)"
    assert warm[4] == "**no**"  # the median decides, not the best process
    start = found["cold start: import handler, load models, answer 1 request"]
    assert start[1] == "0.414 s = 1.38× raw (median of 11; 0.400–0.500 s; ratio per round 1.2–1.6×)"
    assert start[2].startswith("raw interpreter on the same Lambda-shaped path loading the same models: 0.300 s")


def test_packaging_rows_show_the_time_next_to_a_bare_tensorflow_import():
    model = {
        "wall_s": 7.2,
        "ratio_vs_import_tensorflow": 1.6,
        "packager_seconds": {"import_tensorflow": 4.3, "convert": 0.5, "total": 5.0},
        "beyond_tf_import_s": 0.7,
        "size_bytes": 4704,
        "quantization": "int8 full-integer",
        "spread": {"wall_s": [6.9, 8.0]},
    }
    results = {"packaging": {"rounds": 3, "import_tensorflow_s": 4.5, "models": {"diabetes": model}}}
    row = by_what(results)["packaging a small model: diabetes (regression SavedModel, 442 CSV rows), fresh process"]
    assert row[1] == "7.2 s (6.9–8.0 s over the processes); past the TF import (4.3 s) 0.7 s, conversion 0.5 s of it"
    assert row[2:] == ("a bare `import tensorflow`: 4.5 s (1.6×)", "—", "—")
