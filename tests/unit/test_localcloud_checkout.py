"""localcloud.checkout: a copy of a checkout that links what a run only reads and copies what it writes."""

from __future__ import annotations

from pathlib import Path

from localcloud.checkout import copy_checkout


def test_real_paths_are_copied_with_real_parents_and_the_rest_is_linked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("template.yaml", "functions/a/app.py", "layers/model/models/m/x", "layers/shared/p.py", ".git/HEAD"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "layers" / "model" / "__pycache__").mkdir()
    dest = copy_checkout(root, tmp_path / "copy", ["template.yaml", "layers/model"])
    assert not (dest / "template.yaml").is_symlink() and (dest / "template.yaml").read_text() == "template.yaml"
    assert not (dest / "layers").is_symlink() and (dest / "layers" / "shared").is_symlink()
    assert not (dest / "layers" / "model" / "models" / "m").is_symlink()
    assert not (dest / "layers" / "model" / "__pycache__").exists() and not (dest / ".git").exists()
    assert (dest / "functions").resolve() == root / "functions"
    (dest / "layers" / "model" / "models" / "new").mkdir()  # a write into the copy leaves the original alone
    assert not (root / "layers" / "model" / "models" / "new").exists()
