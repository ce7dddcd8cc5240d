"""Run an in-process micro-benchmark in several fresh worker processes, one after the other, and fold their JSON
into one result of the same shape whose numbers are the medians over the processes, plus ``spread`` ([min, max]
of every number) — so that one noisy process cannot flip a goal, and the report can show how far runs disagree.

A benchmark opts in by printing its own result when run with ``--single`` and calling ``main`` otherwise.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROCESSES = 5


def fold(runs: list[Any]) -> tuple[Any, Any]:
    """(medians, spread) of runs that share one shape: a number becomes its median and ``[min, max]`` in the spread;
    any other leaf is the first run's; a key missing from some runs is folded over the runs that have it. Keys that
    start with "goal" are settings, not measurements: taken as they are."""
    first = runs[0]
    if isinstance(first, dict):
        medians, spread = {}, {}
        for key in first:
            m, s = fold([r[key] for r in runs if isinstance(r, dict) and key in r])
            medians[key] = m
            if s is not None and not key.startswith("goal"):
                spread[key] = s
        return medians, spread or None
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first, None
    values = [r for r in runs if isinstance(r, int | float) and not isinstance(r, bool)]
    median = statistics.median(values)
    return (median if isinstance(median, int) else round(median, 4)), [min(values), max(values)]


def processes_from_env() -> int:
    """BENCH_PROCESSES (default 5): how many worker processes each micro-benchmark runs in."""
    return max(1, int(os.environ.get("BENCH_PROCESSES", DEFAULT_PROCESSES)))


def main(module: str, key: str, processes: int | None = None) -> dict[str, Any]:
    """Run ``python -m module --single`` in ``processes`` fresh processes (from the repository root, the environment
    inherited: PYTHONPATH has the shared layer) and fold the ``key`` part of their JSON."""
    processes = processes or processes_from_env()
    runs = []
    for _ in range(processes):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--single"], capture_output=True, text=True, cwd=ROOT, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"{module} --single failed:\n{proc.stderr[-4000:]}")
        runs.append(json.loads(proc.stdout)[key])
    medians, spread = fold(runs)
    return {**medians, "spread": spread, "processes": processes}
