"""bench/cold_start.py: reading `python -X importtime` output and checking where modules came from."""

from __future__ import annotations

import os
from pathlib import Path

from bench.cold_start import foreign_modules, import_costs

RAW = """import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:      2000 |       5000 | numpy
"""
HANDLER = """import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:      2000 |       5000 |     numpy
import time:      1500 |       1500 |       jmespath.lexer
import time:       500 |       2000 |     jmespath
import time:      3000 |      10000 |   liteserve.runtime
import time:      4000 |      19000 | app
"""


def test_import_costs_count_only_what_the_raw_interpreter_does_not_import():
    costs = import_costs(HANDLER, RAW)
    assert costs["raw_self_ms_total"] == 2.1
    assert costs["extra_self_ms_total"] == 9.0  # jmespath.lexer, jmespath, liteserve.runtime, app
    assert costs["extra_self_ms_by_package"] == [["app", 4.0], ["liteserve", 3.0], ["jmespath", 2.0]]
    # each module is named with the module that imported it (the next line up the tree)
    assert costs["extra_largest_modules_ms"][:3] == [
        ["app", 4.0, "-"],
        ["liteserve.runtime", 3.0, "app"],
        ["jmespath.lexer", 1.5, "jmespath"],
    ]


def test_foreign_modules_are_those_outside_the_given_paths_and_the_stdlib(tmp_path: Path):
    layer = tmp_path / "layer"
    inside, outside = str(layer / "numpy" / "__init__.py"), "/somewhere/site-packages/numpy/__init__.py"
    assert foreign_modules([inside, os.__file__, "", outside], [layer]) == [outside]
