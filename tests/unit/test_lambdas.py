"""The local cloud's Lambda helpers without moto: weighted version choice, reproducible zips, layer unzipping."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from localcloud import lambdas
from localcloud.lambdas import AliasRouter, ArtifactCache, parse_layer_arn, unzip_layer, write_zip


def test_pick_follows_the_additional_version_weight() -> None:
    route = ("1", [("2", 0.1)])
    assert AliasRouter.pick(route, 0.0) == "2"
    assert AliasRouter.pick(route, 0.0999) == "2"
    assert AliasRouter.pick(route, 0.1) == "1"
    assert AliasRouter.pick(route, 0.9999) == "1"
    assert AliasRouter.pick(("3", []), 0.0) == "3"
    assert AliasRouter.pick(("1", [("2", 1.0)]), 0.9999) == "2"
    assert AliasRouter.pick(("1", [("2", 0.0)]), 0.0) == "1"


def _tree(root: Path) -> Path:
    (root / "models" / "m").mkdir(parents=True)
    (root / "models" / "m" / "manifest.json").write_text('{"version": "1"}')
    (root / "python" / "__pycache__").mkdir(parents=True)
    (root / "python" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (root / "python" / "tool.sh").write_text("#!/bin/sh\n")
    (root / "python" / "tool.sh").chmod(0o755)
    return root


def test_zips_are_reproducible_and_skip_bytecode(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    write_zip(src, tmp_path / "a.zip")
    os.utime(src / "models" / "m" / "manifest.json", (1, 1))  # mtimes do not reach the zip
    write_zip(src, tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert names == ["models/m/manifest.json", "python/tool.sh"]


def test_artifact_cache_rebuilds_only_when_the_folder_changes(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    cache = ArtifactCache(tmp_path / "cache")
    first, sha1 = cache.zip_of(src)
    again, sha2 = cache.zip_of(src)
    assert (first, sha1) == (again, sha2)
    (src / "models" / "m" / "manifest.json").write_text('{"version": "2"}')
    changed, sha3 = cache.zip_of(src)
    assert changed != first and sha3 != sha1


def test_unzip_layer_keeps_modes_and_stays_inside(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bin/run")
        info.external_attr = 0o755 << 16
        z.writestr(info, b"#!/bin/sh\n")
        z.writestr("../escape.txt", b"no")
        outside = zipfile.ZipInfo("../../run")
        outside.external_attr = 0o755 << 16
        z.writestr(outside, b"x")
    unzip_layer(buf.getvalue(), tmp_path / "layer")
    assert os.access(tmp_path / "layer" / "bin" / "run", os.X_OK)
    assert (tmp_path / "layer" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_unzip_layer_refuses_more_than_lambdas_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lambdas, "MAX_LAYER_UNZIPPED", 1000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big", b"0" * 1001)  # a few bytes zipped
    with pytest.raises(ValueError, match="over Lambda's 1000"):
        unzip_layer(buf.getvalue(), tmp_path / "layer")
    assert not (tmp_path / "layer").exists()


def test_parse_layer_arn() -> None:
    assert parse_layer_arn("arn:aws:lambda:us-east-1:123456789012:layer:liteserve-model:7") == ("liteserve-model", 7)
    for bad in ("arn:aws:lambda:us-east-1:123456789012:layer:m", "arn:aws:s3:::b", "arn:aws:lambda:r:a:layer:m:x"):
        with pytest.raises(ValueError):
            parse_layer_arn(bad)
