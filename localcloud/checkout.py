"""A copy of a project checkout that shares everything by symlink except the paths a run writes, so that a local
cloud (which reads its layers next to the template) can serve a different model layer without touching the original.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

SKIP = (".localcloud", ".aws-sam", ".git", "__pycache__")
IGNORED_IN_COPIES = shutil.ignore_patterns("__pycache__", "out")


def copy_checkout(root: Path, dest: Path, real: Iterable[str], skip: Iterable[str] = SKIP) -> Path:
    """Mirror ``root`` into ``dest`` (which must not exist): the relative paths in ``real`` (files or folders) are
    copied, their parent folders are real folders, everything else is a symlink into ``root``; names in ``skip``
    are left out at the top level. The template must be among ``real``: the local cloud resolves it to find its
    layers and code. Returns ``dest``."""
    _mirror(root, dest, {tuple(Path(p).parts) for p in real}, set(skip))
    return dest


def _mirror(src: Path, dst: Path, real: set[tuple[str, ...]], skip: set[str]) -> None:
    dst.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        if entry.name in skip:
            continue
        below = {p[1:] for p in real if p[0] == entry.name}
        if () in below:
            if entry.is_dir():
                shutil.copytree(entry, dst / entry.name, ignore=IGNORED_IN_COPIES)
            else:
                shutil.copy2(entry, dst / entry.name)
        elif below:
            _mirror(entry, dst / entry.name, below, set())
        else:
            (dst / entry.name).symlink_to(entry)
