"""README "Serve your own model", run as written: its first ```bash block, command by command, in a copy of this
checkout (so `layers/model/models/diabetes/` and `.localcloud/` are the copy's), with the local cloud on free ports
(`LOCALCLOUD_*_PORT`, which the block reads). The commands come from the README itself, so the two cannot drift;
every answer (TF Serving and V2, keyed; the batch results) is checked against the source model within the fidelity
bound the packager wrote into the manifest. The AWS block is checked for its commands only (no AWS account here)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud.checkout import copy_checkout
from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECTION = "## Serve your own model"
ASSIGNMENT = re.compile(r"^(export\s+)?[A-Za-z_][A-Za-z0-9_]*=")

for tool in ("curl", "aws", "make"):
    if shutil.which(tool) is None:
        pytest.skip(f"the README's commands need `{tool}` on PATH", allow_module_level=True)
if not (ROOT / ".venv-train" / "bin" / "python").exists():
    pytest.skip("the example trains in .venv-train: run `make train-venv`", allow_module_level=True)


def readme_blocks() -> list[list[str]]:
    """The ```bash blocks of the README section, each as its list of commands (comment-only and blank lines out)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [[c for c in (line.strip() for line in b.splitlines()) if c and not c.startswith("#")] for b in blocks]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def checkout(dest: Path) -> Path:
    """A copy of this checkout: links to everything the commands only read, real folders for what they write; the
    training venv's contents with a stamp of its own (`make` compares it with requirements/, of checkout time)."""
    copy_checkout(ROOT, dest, ["template.yaml", "layers/model", "examples", ".venv-train/.stamp"])
    (dest / ".venv-train" / ".stamp").touch()
    return dest


class Shell:
    """Runs the block's commands in order in `cwd`, each in a fresh bash that first replays the assignments so far."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env, self.assignments = cwd, env, []

    def run(self, command: str, timeout: float = 900) -> str:
        script = "\n".join(["set -eo pipefail", *self.assignments, command])
        proc = subprocess.run(
            ["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, (
            f"`{command}` exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
        if ASSIGNMENT.match(command):
            self.assignments.append(command)
        return proc.stdout

    def value(self, name: str) -> str:
        """A variable as the block's own assignment of it sets it (the others may need the stopped cloud)."""
        own = [a for a in self.assignments if re.match(rf"^(export\s+)?{name}=", a)]
        script = "\n".join([*own, f'printf %s "${name}"'])
        return subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Shell, list[tuple[str, Any]]]]:
    """Every command of the first block run once in a fresh copy, with its output; the local cloud is stopped
    afterwards whatever happened."""
    local, _aws = readme_blocks()
    repo = checkout(tmp_path_factory.mktemp("readme") / "checkout")
    # A user's shell: none of this run's endpoints, and not inside a make (under `make test`, MAKELEVEL makes the
    # README's own `make` print "Entering/Leaving directory" around its output).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_ENDPOINT", "LITESERVE_", "LOCALCLOUD_"))
        and k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    }
    env |= {f"LOCALCLOUD_{p}_PORT": str(free_port()) for p in ("API", "MOTO", "CONTROL")}
    shell = Shell(repo, env)
    outputs: list[tuple[str, Any]] = []
    try:
        for command in local:
            outputs.append((command, shell.run(command)))
        yield repo, shell, outputs
    finally:
        subprocess.run([str(repo / ".venv" / "bin" / "localcloud"), "down"], cwd=repo, env=env, capture_output=True)


def output_of(outputs: list[tuple[str, Any]], fragment: str) -> str:
    found = [out for command, out in outputs if fragment in command]
    assert len(found) == 1, f"the README block has {len(found)} commands with {fragment!r}"
    return found[0]


def reference(repo: Path) -> dict[str, float]:
    with (repo / "examples" / "diabetes" / "out" / "reference.csv").open() as f:
        return {row["key"]: float(row["prediction"]) for row in csv.DictReader(f)}


def bound(repo: Path) -> float:
    """The packager's max |Δ| between the int8 model and its source on the data; 1e-3 more for float text."""
    manifest = json.loads((repo / "layers" / "model" / "models" / "diabetes" / "manifest.json").read_text())
    return manifest["fidelity"]["regression"]["max_abs_error"] + 1e-3


def test_the_readme_row_is_patient_000_of_the_batch_file(ran) -> None:
    repo, shell, _ = ran
    row = json.loads(shell.value("ROW"))
    with (repo / "examples" / "diabetes" / "out" / "batch.csv").open() as f:
        first = next(csv.DictReader(f))
    assert first.pop("key") == "patient-000" and row == [float(v) for v in first.values()]


def test_packaged_as_a_regression_model_within_its_fidelity_bound(ran) -> None:
    repo, _, outputs = ran
    summary = json.loads(output_of(outputs, "make package-model").strip().splitlines()[-1])
    assert summary["task"] == "regression" and summary["all_signatures_int8"]
    assert summary["path"] == "layers/model/models/diabetes" and (repo / summary["path"] / "model.tflite").is_file()
    assert 0 < summary["fidelity"]["max_abs_error"] < bound(repo)


def test_tf_serving_and_v2_answer_keyed_within_the_bound(ran) -> None:
    repo, _, outputs = ran
    want = reference(repo)["patient-000"]
    tf = json.loads(output_of(outputs, "/v1/models/diabetes:predict"))
    [prediction] = tf["predictions"]
    assert prediction["key"] == "patient-000" and abs(prediction["output_0"][0] - want) <= bound(repo)
    v2 = json.loads(output_of(outputs, "/v2/models/diabetes/infer"))
    tensors = {t["name"]: t for t in v2["outputs"]}
    assert v2["model_name"] == "diabetes" and tensors["key"]["data"] == ["patient-000"]
    assert tensors["output_0"]["shape"] == [1, 1] and abs(tensors["output_0"]["data"][0] - want) <= bound(repo)
    meta = json.loads(output_of(outputs, "/v1/models/diabetes/metadata"))
    inputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert list(inputs) == ["features"]


def test_the_batch_file_gives_every_key_once_within_the_bound(ran) -> None:
    repo, _, outputs = ran
    job = json.loads(output_of(outputs, "/v1/batch/jobs/diabetes.csv"))
    assert job["state"] == "SUCCEEDED" and job["counts"]["rows_predicted"] == 442, job
    rows = [json.loads(line) for line in output_of(outputs, "results/diabetes.csv/_SUCCESS -").splitlines()]
    want, limit = reference(repo), bound(repo)
    assert sorted(r["key"] for r in rows) == sorted(want)
    worst = max(abs(r["output_0"][0] - want[r["key"]]) for r in rows)
    assert worst <= limit and {r["model_version"] for r in rows} == {"1"}


def test_make_down_stopped_the_local_cloud(ran) -> None:
    repo, _, outputs = ran
    assert outputs[-1][0] == "make down" and not (repo / ".localcloud" / "daemon.json").exists()


def test_the_aws_block_builds_and_deploys_the_same_checkout() -> None:
    _, aws = readme_blocks()
    assert aws == [c for c in aws if c.startswith("make sam-check && .venv-sam/bin/sam deploy")] and len(aws) == 1
