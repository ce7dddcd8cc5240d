"""The shared layer holds only deployed code: every module under layers/shared/python is imported (transitively) by
what the template deploys — a function's handler module (CodeUri + Handler), or a `python -m` command of a CodeBuild
project's buildspec (the retraining build runs `training.retrain` and `liteserve.promotion`). A module only tests or
tools import belongs in the dev package (liteserve_dev)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from localcloud.template import load_yaml
from tests.support import ROOT, imported_names

LAYER = ROOT / "layers" / "shared" / "python"


def module_file(name: str, roots: list[Path]) -> Path | None:
    """The file of a dotted module name (a package's __init__.py) under the first root that has it."""
    for root in roots:
        base = root.joinpath(*name.split("."))
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
    return None


def reachable(roots: list[tuple[str, Path]], search: list[Path]) -> set[Path]:
    """Files reached from the root modules through imports that resolve under `search` (parent packages included)."""
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        name, path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for imported in imported_names(path, name):
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
                dotted = ".".join(parts[:i])
                target = module_file(dotted, search)
                if target is not None and target not in seen:
                    todo.append((dotted, target))
    return seen


def deployed_roots() -> list[tuple[str, Path]]:
    """Handler modules of the template's functions (every one is called `app`) and the modules its buildspecs run
    with `python -m`, as (module name, file)."""
    template = load_yaml(ROOT / "template.yaml")
    roots: list[tuple[str, Path]] = []
    for lid, res in template["Resources"].items():
        props = res.get("Properties") or {}
        if res["Type"] == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            module = props["Handler"].rpartition(".")[0]
            path = ROOT / props["CodeUri"] / f"{module.replace('.', '/')}.py"
            assert path.is_file(), f"{lid}: handler module {path} missing"
            roots.append((module, path))
        elif res["Type"] == "AWS::CodeBuild::Project":
            spec = props.get("Source", {}).get("BuildSpec")
            if isinstance(spec, str) and (ROOT / spec).is_file():
                phases = yaml.safe_load((ROOT / spec).read_text()).get("phases", {})
                commands = [c for phase in phases.values() for c in phase.get("commands", [])]
                for module in re.findall(r"\bpython -m ([\w.]+)", "\n".join(commands)):
                    base = module_file(module, [LAYER, ROOT])
                    main = module_file(f"{module}.__main__", [LAYER, ROOT])
                    assert base is not None, f"{spec}: `python -m {module}` runs no module of the repository"
                    roots.append((module, base))
                    if main is not None:
                        roots.append((f"{module}.__main__", main))
    return roots


def test_the_deployed_roots_are_found():
    roots = deployed_roots()
    assert {path for name, path in roots if name == "app"} == set(ROOT.glob("functions/*/app.py"))
    assert {"liteserve.promotion", "liteserve.promotion.__main__", "training.retrain"} <= {name for name, _ in roots}


def test_every_module_of_the_shared_layer_is_imported_by_deployed_code():
    seen = reachable(deployed_roots(), [LAYER, ROOT])
    layer_modules = set(LAYER.rglob("*.py"))
    unreachable = sorted(str(p.relative_to(LAYER)) for p in layer_modules - seen)
    assert not unreachable, f"in the layer but imported by no deployed code (move to liteserve_dev): {unreachable}"
