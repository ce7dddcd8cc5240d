"""Local CodeBuild: run an ``AWS::CodeBuild::Project``'s buildspec on this machine, in a chosen venv.

Phases run in one bash session (buildspec 0.2 semantics: environment changes carry over), ``post_build`` runs even
when ``build`` failed, and a "CodeBuild Build State Change" event goes to the default bus when a build ends, so rules
can react. Builds of one project run one at a time.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcloud.template import ACCOUNT_ID, Template, TemplateError

log = logging.getLogger("localcloud.builds")
PHASES = ("install", "pre_build", "build", "post_build")


@dataclass
class _Timeout:
    timeout: float


@dataclass
class BuildProject:
    """One CodeBuild project from the template."""

    logical_id: str
    name: str
    arn: str
    buildspec: dict[str, Any]
    source_dir: Path
    env: dict[str, str]
    timeout_s: float
    builds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spec(self) -> _Timeout:
        """Timeout holder, so that event sources treat a project like a function."""
        return _Timeout(self.timeout_s)


def project_specs(tpl: Template) -> dict[str, BuildProject]:
    """Every ``AWS::CodeBuild::Project`` of the template (inline or file buildspec, plaintext variables)."""
    out = {}
    for lid in tpl.of_type("AWS::CodeBuild::Project"):
        p = tpl.props(lid)
        src = p.get("Source") or {}
        spec_text = src.get("BuildSpec") or "buildspec.yml"
        if "\n" not in spec_text and not spec_text.lstrip().startswith(("version", "{")):
            path = tpl.base_dir / spec_text
            if not path.is_file():
                raise TemplateError(f"{lid}: buildspec file {path} not found")
            spec_text = path.read_text()
        spec = yaml.safe_load(spec_text)
        if not isinstance(spec, dict) or "phases" not in spec:
            raise TemplateError(f"{lid}: buildspec has no phases")
        env: dict[str, str] = {}
        for var in (p.get("Environment") or {}).get("EnvironmentVariables") or []:
            if var.get("Type", "PLAINTEXT") != "PLAINTEXT":
                raise TemplateError(f"{lid}: environment variable {var['Name']} of type {var['Type']} not emulated")
            env[var["Name"]] = str(var["Value"])
        out[lid] = BuildProject(
            lid, tpl.name(lid), tpl.arn(lid), spec, tpl.base_dir, env, float(p.get("TimeoutInMinutes", 60)) * 60
        )
    return out


def _script(spec: dict[str, Any]) -> str:
    """One bash script running the phases with CodeBuild's failure rules."""
    lines = ["__failed=''", "export CODEBUILD_BUILD_SUCCEEDING=1"]
    for phase in PHASES:
        cmds = ((spec.get("phases") or {}).get(phase) or {}).get("commands") or []
        if not cmds:
            continue
        guard = '[ -z "$__failed" ] || [ "$__failed" = BUILD ]' if phase == "post_build" else '[ -z "$__failed" ]'
        lines.append(f"if {guard}; then echo '[Container] Entering phase {phase.upper()}'")
        for cmd in cmds:
            lines += [
                f"  if {guard}; then echo {shlex.quote(f'[Container] Running command {cmd}')}",
                f"    {cmd}",
                f'    __rc=$?; if [ $__rc -ne 0 ]; then echo "[Container] Command did not exit successfully '
                f'(exit status $__rc)"; __failed={phase.upper()}; export CODEBUILD_BUILD_SUCCEEDING=0; fi',
                "  fi",
            ]
        lines.append(
            f'  echo "[Container] Phase complete: {phase.upper()} State: '
            f'$([ "$__failed" = {phase.upper()} ] && echo FAILED || echo SUCCEEDED)"'
        )
        lines.append("fi")
    lines.append('[ -z "$__failed" ]')
    return "\n".join(lines) + "\n"


class BuildRunner:
    """Runs one project's builds, one at a time; usable as an event-source target (``invoke``)."""

    concurrency = 1

    def __init__(
        self, project: BuildProject, base_env: dict[str, str], venv: Path, log_dir: Path, events: Any, region: str
    ) -> None:
        self.project, self.base_env, self.venv, self.region = project, base_env, venv, region
        self.log_path = log_dir / f"{project.logical_id}.log"
        self.events = events
        self._lock = threading.Lock()

    @property
    def spec(self) -> _Timeout:
        """Timeout holder (event sources size their visibility timeouts with it)."""
        return self.project.spec

    def invoke(self, event: Any) -> dict[str, Any]:
        """EventBridge target semantics: the event (after any transform) is StartBuild's input."""
        overrides = event.get("environmentVariablesOverride") if isinstance(event, dict) else None
        return self.start_build({o["name"]: str(o["value"]) for o in overrides or []})

    def start_build(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run a build now (waits for the one running); return id, status, duration and the log path."""
        p = self.project
        number = len(p.builds) + 1
        build_id = f"{p.name}:{uuid.uuid4()}"
        arn = f"arn:aws:codebuild:{self.region}:{ACCOUNT_ID}:build/{build_id}"
        spec_env = {k: str(v) for k, v in ((p.buildspec.get("env") or {}).get("variables") or {}).items()}
        full_env = {
            **self.base_env,
            "PATH": f"{self.venv / 'bin'}:{self.base_env.get('PATH', '/usr/bin:/bin')}",
            "VIRTUAL_ENV": str(self.venv),
            "CODEBUILD_BUILD_ID": build_id,
            "CODEBUILD_BUILD_ARN": arn,
            "CODEBUILD_BUILD_NUMBER": str(number),
            "CODEBUILD_SRC_DIR": str(p.source_dir),
            "CODEBUILD_INITIATOR": "localcloud",
            "CODEBUILD_PROJECT_NAME": p.name,
            **p.env,
            **spec_env,
            **(env or {}),
        }
        with self._lock:
            t0 = time.monotonic()
            self._state_change(arn, build_id, "IN_PROGRESS")
            with open(self.log_path, "ab") as out:
                out.write(f"[Container] {time.strftime('%Y/%m/%d %H:%M:%S')} build {build_id} starting\n".encode())
                out.flush()
                if not (self.venv / "bin" / "python").exists():
                    # Empty, with pip: the install phase fills it as on CodeBuild, instead of installing into this venv.
                    out.write(f"[Container] creating the build venv {self.venv}\n".encode())
                    out.flush()
                    subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, stdout=out, stderr=out)
                try:
                    proc = subprocess.run(
                        ["bash", "-c", _script(p.buildspec)],
                        env=full_env,
                        cwd=p.source_dir,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        timeout=p.timeout_s,
                        start_new_session=True,
                    )
                    status = "SUCCEEDED" if proc.returncode == 0 else "FAILED"
                except subprocess.TimeoutExpired:
                    status = "TIMED_OUT"
                out.write(f"[Container] build {build_id} {status}\n".encode())
            result = {
                "id": build_id,
                "arn": arn,
                "number": number,
                "status": status,
                "duration_s": round(time.monotonic() - t0, 3),
                "log": str(self.log_path),
            }
            p.builds.append(result)
        log.info("build %s: %s in %.1f s", build_id, status, result["duration_s"])
        self._state_change(arn, build_id, status)
        return result

    def _state_change(self, arn: str, build_id: str, status: str) -> None:
        detail = {
            "build-status": status,
            "project-name": self.project.name,
            "build-id": arn,
            "additional-information": {"initiator": "localcloud"},
        }
        try:
            self.events.put_events(
                Entries=[
                    {
                        "Source": "aws.codebuild",
                        "DetailType": "CodeBuild Build State Change",
                        "Detail": json.dumps(detail),
                        "Resources": [arn],
                    }
                ]
            )
        except Exception as exc:  # reporting must not fail the build
            log.warning("could not put the build state change event: %s", exc)


def default_build_venv(base_dir: Path) -> Path:
    """The venv builds run in: ``LOCALCLOUD_BUILD_VENV`` (created by the first build if missing), else
    ``<template dir>/.venv-train``, else this one."""
    if os.environ.get("LOCALCLOUD_BUILD_VENV"):
        return Path(os.environ["LOCALCLOUD_BUILD_VENV"]).resolve()
    train = base_dir / ".venv-train"
    if (train / "bin" / "python").exists():
        return train
    return Path(sys.prefix)
