"""No module of the repository edits `sys.path` except the local cloud's function start-up (localcloud/bootstrap.py),
which lays out /var/task + /opt/python as Lambda does. Everything else gets its imports from how it is run: the dev
venv's editable install (localcloud, liteserve_dev), PYTHONPATH=layers/shared/python (Makefile) or pytest's
`pythonpath` setting. layers/runtime/check_layer.py and bench/cold_start.py only build a child's PYTHONPATH."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

ALLOWED = {"localcloud/bootstrap.py"}
# Environments, build output and local state: not the repository's own code.
SKIPPED_DIRS = {".git", ".aws-sam", ".localcloud", ".cache", ".build", "build", "__pycache__", "node_modules"}
MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear", "__setitem__", "__iadd__"}


def own_python_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts[:-1]
        if any(p in SKIPPED_DIRS or p.startswith(".venv") or p.endswith(".egg-info") for p in parts):
            continue
        files.append(path)
    return files


def _is_sys_path(node: ast.AST) -> bool:
    """`sys.path` (a `from sys import path` would go unseen; the repository has none)."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def sys_path_edits(source: str, filename: str) -> list[int]:
    """Line numbers where `sys.path` is changed: a mutating method call, an assignment to it or to a slice or item of
    it, an augmented assignment."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        func = node.func if isinstance(node, ast.Call) else None
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS and _is_sys_path(func.value):
            lines.append(node.lineno)
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            inner = target.value if isinstance(target, ast.Subscript) else target
            if _is_sys_path(inner):
                lines.append(node.lineno)
    return sorted(lines)


def test_the_detector_sees_every_form_of_edit():
    source = "import sys\nsys.path.insert(0, 'a')\nsys.path.append('b')\nsys.path[:0] = ['c']\nsys.path = []\n"
    source += "sys.path += ['d']\nx = list(sys.path)\nprint(sys.path)\n"
    assert sys_path_edits(source, "example.py") == [2, 3, 4, 5, 6]


def test_no_sys_path_edits_outside_the_local_cloud_function_bootstrap():
    files = own_python_files()
    assert len(files) > 100 and ROOT / "localcloud" / "bootstrap.py" in files
    found = {
        str(path.relative_to(ROOT)): lines
        for path in files
        if (lines := sys_path_edits(path.read_text(encoding="utf-8"), str(path)))
    }
    assert "localcloud/bootstrap.py" in found, "the detector no longer sees the bootstrap's (allowed) sys.path layout"
    assert {name: lines for name, lines in found.items() if name not in ALLOWED} == {}
