"""Run every benchmark in bench/ (each prints one JSON object), collect them in bench/results.json, and write and
print the Markdown report (bench/results.md, see bench/report.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import report

HERE = Path(__file__).resolve().parent

# Cheap, in-process ones first; the local-cloud ones start their own cloud. The projection reads the cold start's
# figures from results.json, which is therefore rewritten after every benchmark.
ORDER = [
    "cold_start.py",
    "warm.py",
    "predlog.py",
    "artifacts.py",
    "projection.py",
    "batch.py",
    "two_phase.py",
    "load.py",
    "packaging.py",
]


def main() -> int:
    results: dict = {}
    failed = []
    for name in ORDER:
        path = HERE / name
        if not path.exists():
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        module = f"bench.{path.stem}"
        proc = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True, cwd=HERE.parent)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-4000:], file=sys.stderr)
            continue
        results.update(json.loads(proc.stdout))
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"\n== report (bench/results.md)\n\n{report.write(results, HERE / 'results.md')}", end="")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
