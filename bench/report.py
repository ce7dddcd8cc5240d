"""The benchmark report: one Markdown table built from bench/results.json, each figure next to its reference and
its goal (ratios, not lone times). `bench/run_all.py` writes it to bench/results.md after a run; on its own:

    python -m bench.report [results.json] [results.md]     # prints the table and writes the .md file
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HEADER = ("what", "measured", "compared with", "goal", "met")


@dataclass(frozen=True)
class Row:
    """One line of the table; ``met`` is None when the figure has no goal."""

    what: str
    measured: str
    compared: str = ""
    goal: str = ""
    met: bool | None = None

    def cells(self) -> tuple[str, ...]:
        met = "—" if self.met is None else ("yes" if self.met else "**no**")
        return (self.what, self.measured, self.compared or "—", self.goal or "—", met)


def _num(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _spread(values: list[float] | None, digits: int = 0, unit: str = "") -> str:
    """' (min–max …)' for a [min, max] pair, '' without one."""
    if not values:
        return ""
    return f" ({_num(values[0], digits)}–{_num(values[1], digits)}{unit} over the processes)"


def _cold(r: dict[str, Any]) -> list[Row]:
    raw, handler = r["raw_interpreter"], r["handler"]
    goals = r.get("goals", {})
    init_max, rss_max = goals.get("handler_init_ratio_max", 1.5), goals.get("handler_peak_rss_mb_max", 64)
    measured = f"{handler['init_s_median']:.3f} s = {handler['init_ratio_vs_raw']}× raw"
    compared = f"raw interpreter loading 1 model: {raw['init_s_median']:.3f} s"
    if "init_s_min" in handler:  # Lambda-shaped runs (bench/cold_start.py) carry their spread
        per_round = handler.get("init_ratio_per_round", {})
        measured += (
            f" (median of {r.get('repeats', '?')}; {handler['init_s_min']:.3f}–{handler['init_s_max']:.3f} s; "
            f"ratio per round {per_round.get('min')}–{per_round.get('max')}×)"
        )
        compared = (
            f"raw interpreter on the same Lambda-shaped path loading the same models: {raw['init_s_median']:.3f} s "
            f"({raw['init_s_min']:.3f}–{raw['init_s_max']:.3f} s)"
        )
    rows = [
        Row(
            "cold start: import handler, load models, answer 1 request",
            measured,
            compared,
            f"≤ {init_max}× raw",
            handler["init_ratio_vs_raw"] <= init_max,
        ),
        Row(
            "cold start peak RSS",
            f"{handler['peak_rss_mb_max']:.0f} MB = {handler['rss_ratio_vs_raw']}× raw",
            f"raw interpreter: {raw['peak_rss_mb_max']:.0f} MB",
            f"≤ {rss_max} MB",
            handler["peak_rss_mb_max"] <= rss_max,
        ),
    ]
    sources = r.get("handler_shared_layer_without_bytecode")
    if sources:
        rows.append(
            Row(
                "cold start if the shared layer shipped its sources alone (no bytecode, as before its build)",
                f"{sources['init_s_median']:.3f} s = {sources['init_ratio_vs_raw']}× raw",
                "raw interpreter",
            )
        )
    traced = r.get("handler_with_tracer")
    if traced:
        rows.append(
            Row(
                "cold start with X-Ray Tracer (TracingMode=Active)",
                f"{traced['init_ratio_vs_raw']}× raw, {traced['peak_rss_mb_max']:.0f} MB",
                "raw interpreter",
            )
        )
    costs = r.get("handler_import_costs")
    if costs:
        top = ", ".join(f"{name} {ms:g}" for name, ms in costs["extra_self_ms_by_package"][:5])
        rows.append(
            Row(
                "cold start: what the handler imports beyond the raw interpreter (-X importtime, ms)",
                f"{costs['extra_self_ms_total']:g} ms: {top}",
                f"raw interpreter's own imports: {costs['raw_self_ms_total']:g} ms",
            )
        )
    return rows


def _warm(r: dict[str, Any]) -> list[Row]:
    goals = r.get("goals", {})
    rows = []
    for n in (1, 100):
        w = r[f"{n}_instances"]
        h, raw, minimal = w["handler_tfserving_keyed"], w["raw_runner"], w["minimal_orjson_handler"]
        spread = (r.get("spread") or {}).get(f"{n}_instances", {})
        goal_us = goals.get(f"{n}_instances_p50_us_max", 100 if n == 1 else 1500)
        rows.append(
            Row(
                f"warm handler, {n} keyed instance{'s' if n > 1 else ''} (TF Serving): p50 / p99",
                f"{_num(h['p50_us'], 0)} / {_num(h['p99_us'], 0)} µs"
                + _spread(spread.get("handler_tfserving_keyed", {}).get("p50_us"), 0, " µs p50"),
                f"raw runner p50 {_num(raw['p50_us'], 0)} µs ({w['tfserving_p50_ratio_vs_raw']}×); "
                f"minimal orjson handler {_num(minimal['p50_us'], 0)} µs ({w['tfserving_p50_ratio_vs_minimal']}×)",
                f"p50 ≤ {_num(goal_us, 0)} µs",
                h["p50_us"] <= goal_us,
            )
        )
        v2 = w.get("handler_v2_keyed")
        if v2:
            rows.append(
                Row(
                    f"warm handler, {n} keyed instance{'s' if n > 1 else ''} (Open Inference V2): p50 / p99",
                    f"{_num(v2['p50_us'], 0)} / {_num(v2['p99_us'], 0)} µs"
                    + _spread(spread.get("handler_v2_keyed", {}).get("p50_us"), 0, " µs p50"),
                    f"raw runner ({w['v2_p50_ratio_vs_raw']}×)",
                )
            )
    return rows


def _predlog(r: dict[str, Any]) -> list[Row]:
    limit = r.get("goal", {}).get("p50_ratio_on_vs_off_max", 1.10)
    rows = []
    for n in (1, 100):
        p = r[f"{n}_instances"]["tfserving_keyed"]
        spread = ((r.get("spread") or {}).get(f"{n}_instances") or {}).get("tfserving_keyed", {})
        rows.append(
            Row(
                f"prediction log on, {n} instance{'s' if n > 1 else ''}: warm p50",
                f"{_num(p['on_p50_us'], 0)} µs = {p['p50_ratio_on_vs_off']}× off"
                + _spread(spread.get("p50_ratio_on_vs_off"), 3, "×"),
                f"log off: {_num(p['off_p50_us'], 0)} µs",
                f"≤ {limit}× off",
                p["p50_ratio_on_vs_off"] <= limit,
            )
        )
    return rows


def _batch(r: dict[str, Any]) -> list[Row]:
    limit = r["single_process_limit"]
    goal = r.get("goal_ratio_vs_limit_2_workers_min", 0.5)
    rows = []
    for w in (1, 2):
        run = r[f"{w}_workers"]
        rows.append(
            Row(
                f"batch, {r['rows']:,} keyed rows drop → _SUCCESS, {w} worker{'s' if w > 1 else ''}",
                f"{run['rows_per_s']:,} rows/s = {run['ratio_vs_limit']}× the limit",
                f"single-process limit: {limit['rows_per_s']:,} rows/s",
                f"≥ {goal}× the limit" if w == 2 else "",
                run["ratio_vs_limit"] >= goal if w == 2 else None,
            )
        )
    stages = limit.get("stages_s")
    if stages:
        extra = limit.get("worker_extra_stage_s", {}).get("prediction_log_object")
        two = r["2_workers"].get("stages_s", {})
        rows.append(
            Row(
                "batch: where the time goes",
                "limit "
                + ", ".join(f"{k} {v:g} s" for k, v in stages.items())
                + (f"; the worker also builds the prediction-log object: {extra:g} s" if extra is not None else ""),
                "2 workers: " + ", ".join(f"{k} {v}" for k, v in two.items()) if two else "",
            )
        )
    peak = max(r[f"{w}_workers"].get("worker_peak_rss_mb", 0) for w in (1, 2))
    rows.append(Row("batch worker peak RSS", f"{peak} MB", "WorkerMemorySize 1024 MB"))
    cost = r.get("cost_per_million_predictions")
    if cost:
        floor = cost.get("goal_ratio_min", 20)
        rows.append(
            Row(
                "AWS cost per million predictions, batch vs online",
                f"batch ${cost['batch_usd']:.4f} vs online ${cost['online_usd']:.2f} = {cost['online_over_batch']}×",
                "list prices × measured worker seconds; online: HTTP API + Lambda per request",
                f"batch ≥ {floor}× cheaper",
                cost["online_over_batch"] >= floor,
            )
        )
    return rows


def _artifacts(r: dict[str, Any]) -> list[Row]:
    if "error" in r:
        return [Row("artifact sizes", f"not measured: {r['error']}")]
    name = r["largest"]
    f = r["functions"][name]
    limits, goal = r["limits"], r["goal"]["unzipped_mb_max"]
    return [
        Row(
            f"artifact: largest function + layers unzipped ({name})",
            f"{f['unzipped_mb']} MB = {f['unzipped_mib'] / limits['unzipped_mib']:.2f}× Lambda's limit",
            f"Lambda: {limits['unzipped_mib']} MiB unzipped",
            f"≤ {goal} MB",
            f["unzipped_mb"] <= goal,
        ),
        Row(
            "artifact: zipped (deflate estimate)",
            f"{f['zipped_mib']} MiB total; largest zip {f['largest_zip_mib']} MiB",
            f"Lambda: {limits['zipped_upload_mib']} MiB per directly uploaded zip",
            f"≤ {limits['zipped_upload_mib']} MiB per zip",
            f["largest_zip_mib"] <= limits["zipped_upload_mib"],
        ),
    ]


def _two_phase(r: dict[str, Any]) -> list[Row]:
    acc, goal = r["accuracy"], r.get("goal", {})
    gap_max, esc_max = goal.get("max_gap_points", 0.5), goal.get("max_escalation", 0.2)
    return [
        Row(
            f"two-phase at threshold {r['threshold']}: accuracy, escalated",
            f"{acc['two_phase']:.2%}, {r['escalation_rate']:.1%} escalated",
            f"cloud only {acc['cloud_only']:.2%}, edge only {acc['edge_only']:.2%}",
            f"within {gap_max} pt of cloud, ≤ {esc_max:.0%} escalated",
            r["two_phase_gap_to_cloud_points"] <= gap_max + 1e-9 and r["escalation_rate"] <= esc_max,
        )
    ]


def _load(r: dict[str, Any]) -> list[Row]:
    base = r.get("baseline_concurrency_1") or {}
    ratio = r.get("throughput_vs_concurrency_1")
    compared = f"concurrency 1: {base['throughput_rps']} req/s ({ratio}×)" if base else ""
    return [
        Row(
            f"load test, local HTTP API: {r['seconds']:.0f} s at concurrency {r['concurrency']}",
            f"{r['throughput_rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['errors']} errors "
            f"of {r['requests']:,}",
            compared,
            "0 errors",
            r["errors"] == 0,
        )
    ]


def duration(seconds: float) -> str:
    """Seconds as s, min or h, whichever reads best."""
    if seconds < 120:
        return f"{seconds:,.0f} s"
    return f"{seconds / 60:,.1f} min" if seconds < 3600 else f"{seconds / 3600:,.2f} h"


def _projection(r: dict[str, Any]) -> list[Row]:
    rows = []
    for p in r["projections"]:
        shard = f"{p['shard_mib']:g} MiB shards{', cheapest' if p.get('cheapest') else ''}"
        rows.append(
            Row(
                f"AWS projection: {p['rows']:,} rows, {shard}, concurrency {p['concurrency']}",
                f"{duration(p['wall_s'])}, ${p['total_usd']:,.2f} (${p['usd_per_million_rows']:.4f} per M rows)",
                f"binds first: {p['binding']}"
                + (f"; cannot run today: {'; '.join(p['violations'])}" if p["violations"] else ""),
            )
        )
    return rows


def _packaging(r: dict[str, Any]) -> list[Row]:
    base = r["import_tensorflow_s"]
    what = {"diabetes": "regression SavedModel, 442 CSV rows", "two_input": "two-input .keras, 600 rows"}
    rows = []
    for name, m in r["models"].items():
        wall, seconds = (m.get("spread") or {}).get("wall_s"), m["packager_seconds"]
        rows.append(
            Row(
                f"packaging a small model: {name} ({what.get(name, m['quantization'])}), fresh process",
                f"{m['wall_s']:.1f} s{_spread(wall, 1, ' s')}; past the TF import "
                f"({seconds['import_tensorflow']:.1f} s) {m['beyond_tf_import_s']:.1f} s, conversion "
                f"{seconds['convert']:.1f} s of it",
                f"a bare `import tensorflow`: {base:.1f} s ({m['ratio_vs_import_tensorflow']}×)",
            )
        )
    return rows


SECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], list[Row]]]] = [
    ("cold_start", "cold start", _cold),
    ("warm", "warm latency", _warm),
    ("prediction_log", "prediction log overhead", _predlog),
    ("batch", "batch throughput and cost", _batch),
    ("projection", "AWS projection", _projection),
    ("artifacts", "artifact sizes", _artifacts),
    ("two_phase", "two-phase prediction", _two_phase),
    ("load", "load test", _load),
    ("packaging", "packaging time", _packaging),
]


def rows(results: dict[str, Any]) -> list[Row]:
    """Every row of the report; a benchmark missing from ``results`` (or malformed) gets one 'not run' row."""
    out: list[Row] = []
    for key, title, build in SECTIONS:
        if key not in results:
            out.append(Row(title, "not run"))
            continue
        try:
            out.extend(build(results[key]))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            out.append(Row(title, f"unreadable result ({type(err).__name__}: {err})"))
    return out


def table(results: dict[str, Any]) -> str:
    """The Markdown table of ``results`` (the JSON bench/run_all.py writes)."""
    found = rows(results)
    body = [HEADER, tuple("---" for _ in HEADER), *(r.cells() for r in found)]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    met = [r.met for r in found if r.met is not None]
    summary = f"{sum(met)} of {len(met)} goals met."
    return "\n".join(lines) + "\n\n" + summary + "\n"


def write(results: dict[str, Any], path: Path) -> str:
    """Write the report (title, table) to ``path``; return the table."""
    text = table(results)
    path.write_text("# Benchmark report\n\nGenerated by `make bench` from bench/results.json.\n\n" + text)
    return text


def main(argv: list[str] | None = None) -> int:
    import json

    args = sys.argv[1:] if argv is None else argv
    src = Path(args[0]) if args else HERE / "results.json"
    dst = Path(args[1]) if len(args) > 1 else src.with_suffix(".md")
    print(write(json.loads(src.read_text()), dst), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
