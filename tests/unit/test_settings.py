"""Environment variable names live in liteserve.settings: the handlers and the shared package spell none themselves,
the handlers read no environment at all (only the areas' parsing points do), and every name template.yaml sets is
one of the constants."""

from __future__ import annotations

import ast
import re

from liteserve import settings

from tests.support import ROOT

NAMES = {v for k, v in vars(settings).items() if k.isupper()}


def _string_literals(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    strings = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return [n for n in strings if id(n) not in docstrings]


def test_no_variable_name_is_spelled_outside_settings():
    sources = [*ROOT.glob("functions/*/app.py"), *(ROOT / "layers/shared/python/liteserve").rglob("*.py")]
    found = []
    for path in sources:
        if path.name == "settings.py":
            continue
        tree = ast.parse(path.read_text())
        found += [
            f"{path.relative_to(ROOT)}:{n.lineno} {n.value}"
            for n in _string_literals(tree)
            if re.fullmatch(r"LITESERVE_[A-Z_]+", n.value)
        ]
    assert found == []


def test_handlers_read_the_environment_only_through_the_parsing_points():
    for path in ROOT.glob("functions/*/app.py"):
        text = path.read_text()
        assert "os.environ" not in text and "getenv" not in text, path


def test_every_name_the_template_sets_is_a_constant():
    template = (ROOT / "template.yaml").read_text()
    set_there = set(re.findall(r"^\s*(?:- Name: )?(LITESERVE_[A-Z_]+)\s*(?::|$)", template, re.MULTILINE))
    assert set_there and set_there <= NAMES, sorted(set_there - NAMES)
    assert all(name.startswith("LITESERVE_") for name in NAMES)
