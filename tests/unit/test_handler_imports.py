"""Functions without the model layer import no interpreter: each such handler of template.yaml is imported in a fresh
interpreter whose path is laid out as Lambda's (the function's folder, the shared layer's python/, the dependencies; no
site, no test helpers)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from localcloud.template import load_yaml

ROOT = Path(__file__).resolve().parents[2]
INTERPRETER = ("ai_edge_litert", "tflite_runtime", "liteserve.runtime")
ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "liteserve",
    "POWERTOOLS_METRICS_NAMESPACE": "Liteserve",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "LITESERVE_BUCKET": "bucket",
    "LITESERVE_JOBS_TABLE": "jobs",
    "LITESERVE_LABELS_TABLE": "labels",
    "LITESERVE_MODEL_ROOT": str(ROOT / "layers" / "model" / "models"),
}
CHILD = """
import json, sys
sys.path[:0] = {path!r}
import app
print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))
"""


def loaded_after_import(function: str) -> list[str]:
    """Which of the interpreter modules are in sys.modules after importing the function's handler."""
    layer = ROOT / "layers" / "shared" / "python"
    path = [str(ROOT / "functions" / function), str(layer), sysconfig.get_path("purelib")]
    out = subprocess.run(
        [sys.executable, "-S", "-B", "-c", CHILD.format(path=path, watched=INTERPRETER)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def without_model_layer() -> list[str]:
    """The function folders of template.yaml's functions that do not get the model layer."""
    resources = load_yaml(ROOT / "template.yaml")["Resources"].values()
    return sorted(
        Path(r["Properties"]["CodeUri"]).name
        for r in resources
        if r["Type"] == "AWS::Serverless::Function" and {"Ref": "ModelLayer"} not in r["Properties"].get("Layers", [])
    )


def test_the_batch_api_and_labels_functions_have_no_model_layer():
    assert {"batch_api", "labels"} <= set(without_model_layer())


@pytest.mark.parametrize("function", without_model_layer())
def test_handler_imports_without_the_interpreter(function):
    assert loaded_after_import(function) == []


def test_the_check_sees_the_interpreter_where_it_is_loaded():
    """The predict handler does load it (its init loads every model): the check above can fail."""
    assert "liteserve.runtime" in loaded_after_import("predict")
