"""Train -> SavedModel -> the packaging path (int8 conversion, checks, baseline, manifest): the one entry point
retraining reuses. The digits models are ordinary users of `liteserve_dev.packaging`, with a stricter bar."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from liteserve_dev.packaging import PackagingError
from liteserve_dev.packaging.convert import convert
from liteserve_dev.packaging.datasets import Bound
from liteserve_dev.packaging.fidelity import Bounds
from liteserve_dev.packaging.package import Options, from_saved_model, write
from training import data
from training.convert import SIGNATURES, export_saved_model
from training.keras_model import train
from training.specs import ModelSpec

MAX_ACCURACY_DROP = 0.005  # int8 held-out accuracy within 0.5 points of float
MIN_AGREEMENT = 0.99  # int8 vs float argmax agreement on held-out rows
FLOAT_FILE = "float.tflite"


class QualityError(RuntimeError):
    """The converted model fails the int8 kernel, signature or fidelity checks; nothing is written."""


def _check_signatures(sigs: dict[str, Any], n_features: int, n_classes: int) -> int:
    """Validate the signature convention; returns the embedding width."""
    x = {"x": {"dtype": "float32", "shape": [-1, n_features]}}
    errors = []
    if set(sigs) != {"serving_default", "embedding"}:
        errors.append(f"signatures {sorted(sigs)}")
    sd, emb = sigs.get("serving_default", {}), sigs.get("embedding", {})
    if sd.get("inputs") != x or emb.get("inputs") != x:
        errors.append(f"inputs {sd.get('inputs')} / {emb.get('inputs')}")
    out = sd.get("outputs", {})
    if out.get("probabilities") != {"dtype": "float32", "shape": [-1, n_classes]}:
        errors.append(f"probabilities {out.get('probabilities')}")
    cid = out.get("class_id", {})
    if not str(cid.get("dtype", "")).startswith("int") or cid.get("shape") != [-1]:
        errors.append(f"class_id {cid}")
    e = emb.get("outputs", {}).get("embedding", {})
    if e.get("dtype") != "float32" or len(e.get("shape", [])) != 2 or e["shape"][0] != -1:
        errors.append(f"embedding {e}")
    if errors:
        raise QualityError("unexpected signatures: " + "; ".join(errors))
    return int(e["shape"][1])


def build_model(
    spec: ModelSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    out_dir: Path | str,
    version: str,
    parent: str | None = None,
    *,
    float_dir: Path | str | None = None,
    data_block: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    feature_names: list[str] | None = None,
    retrain: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train `spec` on (x_train, y_train), convert to full-integer int8, verify, and write the artifacts.

    (x_val, y_val) is the held-out evaluation set: never trained on, only measured (early stopping uses a seeded
    split carved out of x_train). Writes `<out_dir>/<spec.name>/{model.tflite,manifest.json}` and, if `float_dir` is
    given, the float reference model `<float_dir>/<spec.name>/float.tflite`. Raises QualityError (writing nothing)
    when any signature's kernels are not int8 or int8 misses the fidelity bar. `parent` records the version this one
    was retrained from; `retrain` is the manifest's retraining declaration (liteserve_dev.retraining). Returns the
    manifest.
    """
    labels = labels if labels is not None else data.LABELS
    feature_names = feature_names if feature_names is not None else data.FEATURE_NAMES
    x_train = np.asarray(x_train, dtype=np.float32)
    x_val = np.asarray(x_val, dtype=np.float32)
    y_train = np.asarray(y_train, dtype=np.int64)
    y_val = np.asarray(y_val, dtype=np.int64)
    n_features, n_classes = x_train.shape[1], len(labels)
    if len(feature_names) != n_features:
        raise ValueError(f"{len(feature_names)} feature names for {n_features} features")

    t0 = time.perf_counter()
    export_model, train_info = train(spec, x_train, y_train, n_classes)
    t_train = time.perf_counter() - t0
    options = Options(
        name=spec.name,
        version=str(version),
        task="classification",
        labels=list(labels),
        quantize="int8",
        calibration_rows=None,  # every training row calibrates
        feature_names=list(feature_names),
        histogram_edges=data.HIST_EDGES,
        bounds=Bounds(min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP),
        retrain=retrain,
    )
    calib = Bound({"x": x_train}, y_train, {"x": list(feature_names)}, {"rows": len(y_train)})
    held_out = Bound({"x": x_val}, y_val, {"x": list(feature_names)}, {"rows": len(y_val)})
    with tempfile.TemporaryDirectory(prefix=f"savedmodel-{spec.name}-") as tmp_name:
        tmp = Path(tmp_name)
        export_saved_model(export_model, n_features, tmp)
        t1 = time.perf_counter()
        float_bytes = convert(tmp, list(SIGNATURES), "none")
        t2 = time.perf_counter()
        try:
            packaged = from_saved_model(tmp, options, calib, held_out, source={"kind": "training.build"})
        except PackagingError as e:
            raise QualityError(f"{spec.name}: {e}") from None
    manifest = packaged.manifest
    emb_width = _check_signatures(manifest["signatures"], n_features, n_classes)
    fid = manifest["fidelity"]["classification"]
    manifest.update(
        {
            "data": data_block
            if data_block is not None
            else {"source": "caller-supplied arrays", "n_train": len(y_train), "n_test": len(y_val)},
            "parent": parent,
            "architecture": {**spec.to_dict(), **train_info, "embedding_size": emb_width},
            "float_reference": {"file": FLOAT_FILE, "sha256": hashlib.sha256(float_bytes).hexdigest()},
            "build": {
                "size_bytes": len(packaged.model),
                "float_size_bytes": len(float_bytes),
                "train_seconds": round(t_train, 2),
                "float_convert_seconds": round(t2 - t1, 2),
                "int8_convert_seconds": round(packaged.seconds["convert"], 2),
                "class_id_matches_argmax": fid["class_id_matches_argmax"],
            },
        }
    )
    write(packaged, out_dir)
    if float_dir is not None:
        fdir = Path(float_dir) / spec.name
        fdir.mkdir(parents=True, exist_ok=True)
        (fdir / FLOAT_FILE).write_bytes(float_bytes)
    return manifest
