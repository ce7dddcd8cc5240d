"""Smoke-test a built runtime layer the way Lambda would load it.

Usage: python layers/runtime/check_layer.py LAYER_DIR [MODEL_PATH]

LAYER_DIR is the built layer (the folder that holds ``python/``). A child interpreter runs with
``-S -E`` (no site-packages, no user environment) and ``sys.path`` = the layer's ``python/`` plus a
stand-in for what the Lambda python3.11 runtime itself provides (boto3 and its dependencies, linked
from this interpreter's environment). It imports numpy, ``ai_edge_litert.interpreter``, orjson and
Powertools (Logger, Metrics, Tracer), runs every signature of the model once if it exists, and
fails if any module was loaded from anywhere but the layer, the stand-in or the standard library.
Prints a JSON summary; exit status 1 on failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# Packages the Lambda python3.11 runtime ships in /var/runtime (the layer Makefile drops them).
LAMBDA_RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "dateutil", "six", "urllib3")
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "model/models/digits/model.tflite"

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np
import orjson
from ai_edge_litert.interpreter import Interpreter
from aws_lambda_powertools import Logger, Metrics, Tracer
Logger(service="check"); Metrics(namespace="Check", service="check"); Tracer(service="check")
import aws_xray_sdk.core  # what Tracer loads when tracing is enabled on Lambda
import_s = time.perf_counter() - t0
result = {"import_s": round(import_s, 3), "numpy": np.__version__, "signatures": {}}
model = sys.argv[1]
if model and os.path.exists(model):
    interp = Interpreter(model_path=model, num_threads=1)
    for name in interp.get_signature_list():
        runner = interp.get_signature_runner(name)
        inputs = {}
        for key, d in runner.get_input_details().items():
            shape = [2 if i == 0 else int(s) for i, s in enumerate(d["shape"])]
            inputs[key] = np.full(shape, 0.5, dtype=d["dtype"])
        out = runner(**inputs)
        assert all(np.all(np.isfinite(v)) for v in out.values()), name
        result["signatures"][name] = {k: list(v.shape) for k, v in out.items()}
    orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
result["module_files"] = sorted(f for f in files if f)
print(json.dumps(result))
"""


def _runtime_standin(dest: Path) -> None:
    """Symlink the Lambda-runtime-provided packages from this environment into ``dest``."""
    for name in LAMBDA_RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SystemExit(f"{name} is not installed here; run with the dev venv's python")
        origin = Path(spec.origin)
        src = origin.parent if origin.name == "__init__.py" else origin
        (dest / src.name).symlink_to(src)


def check(layer_dir: Path, model: Path | None) -> dict[str, object]:
    """Run the child interpreter against ``layer_dir`` and return its summary plus any problems."""
    site = layer_dir / "python"
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        standin = Path(tmp)
        _runtime_standin(standin)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{site}{os.pathsep}{standin}"}
        env.update(AWS_REGION="us-east-1", POWERTOOLS_TRACE_DISABLED="false")
        # -E would drop PYTHONPATH, so the environment is built from scratch instead.
        proc = subprocess.run(
            [sys.executable, "-S", "-B", "-c", CHILD, str(model or "")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            return {"ok": False, "error": proc.stderr.strip().splitlines()[-20:]}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        roots = (site, site.resolve(), standin, stdlib)
        files = result.pop("module_files")
        outside = [
            f
            for f in files
            if not any(Path(f).is_relative_to(r) for r in roots) and not Path(f).resolve().is_relative_to(stdlib)
        ]
        from_standin = sorted({Path(f).relative_to(standin).parts[0] for f in files if Path(f).is_relative_to(standin)})
    result.update(
        ok=not outside and (model is None or bool(result["signatures"])),
        modules_outside_layer=outside,
        from_lambda_runtime=from_standin,
    )
    return result


def main(argv: list[str]) -> int:
    """CLI entry point."""
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    model = Path(argv[2]) if len(argv) == 3 else DEFAULT_MODEL
    result = check(Path(argv[1]).resolve(), model if model.exists() else None)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
