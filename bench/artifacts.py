"""Artifact sizes: every function's code plus its layers, unzipped and zipped (deflate estimate), from the last
`sam build` (.aws-sam/build, made by `make sam-check`), next to Lambda's limits and liteserve's own budget.
Prints JSON; measures the existing build rather than rebuilding (a build takes minutes and needs the network).

Usage: python -m bench.artifacts [BUILD_DIR]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from localcloud.sam_translate import check_size

ROOT = Path(__file__).resolve().parents[1]

MIB = 1024 * 1024
UNZIPPED_LIMIT_MIB = 250  # Lambda: function code + all its layers, unzipped
ZIPPED_UPLOAD_LIMIT_MIB = 50  # Lambda: one zip (function or layer) uploaded directly
GOAL_UNZIPPED_MB = 80  # issue 2: function + layers


def main(build_dir: Path) -> dict:
    if not (build_dir / "template.yaml").is_file():
        return {"error": f"{build_dir} has no template.yaml: run `make sam-check` first"}
    report = check_size(build_dir, zipped=True)
    functions = {}
    for name, entry in report["functions"].items():
        largest_zip = max((p.get("zipped_bytes") or 0 for p in entry["parts"].values()), default=0)
        functions[name] = {
            "unzipped_mb": entry["total_mb"],
            "unzipped_mib": entry["total_mib"],
            "zipped_mib": entry["total_zipped_mib"],
            "largest_zip_mib": round(largest_zip / MIB, 2),
        }
    largest = max(functions, key=lambda n: functions[n]["unzipped_mb"])
    return {
        "build_dir": report["build_dir"],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((build_dir / "template.yaml").stat().st_mtime)),
        "functions": functions,
        "largest": largest,
        "limits": {"unzipped_mib": UNZIPPED_LIMIT_MIB, "zipped_upload_mib": ZIPPED_UPLOAD_LIMIT_MIB},
        "goal": {"unzipped_mb_max": GOAL_UNZIPPED_MB},
    }


if __name__ == "__main__":
    build = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".aws-sam" / "build"
    print(json.dumps({"artifacts": main(build)}, indent=2))
