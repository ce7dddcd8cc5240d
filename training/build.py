"""Train -> SavedModel -> float and int8 .tflite -> checks -> manifest: the one entry point retraining reuses."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training import checks, data
from training.convert import convert, export_saved_model
from training.keras_model import train
from training.specs import ModelSpec

MAX_ACCURACY_DROP = 0.005  # int8 held-out accuracy within 0.5 points of float
MIN_AGREEMENT = 0.99  # int8 vs float argmax agreement on held-out rows
MODEL_FILE = "model.tflite"
FLOAT_FILE = "float.tflite"


class QualityError(RuntimeError):
    """The converted model fails the int8 kernel, signature or fidelity checks; nothing is written."""


def _interpreter(content: bytes) -> Any:
    # LiteRT only when it was loaded before TensorFlow (training.retrain does that): imported after TensorFlow it
    # fails (both register the same pybind11 types) and the half-loaded module aborts the process at exit.
    if "ai_edge_litert.interpreter" in sys.modules:
        from ai_edge_litert.interpreter import Interpreter
    else:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_content=content, num_threads=1)


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


def _metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"accuracy": data.accuracy(probs, y), "log_loss": data.log_loss(probs, y)}


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
) -> dict[str, Any]:
    """Train `spec` on (x_train, y_train), convert to full-integer int8, verify, and write the artifacts.

    (x_val, y_val) is the held-out evaluation set: never trained on, only measured (early stopping uses a seeded
    split carved out of x_train). Writes `<out_dir>/<spec.name>/{model.tflite,manifest.json}` and, if `float_dir` is
    given, the float reference model `<float_dir>/<spec.name>/float.tflite`. Raises QualityError (writing nothing)
    when any signature's kernels are not int8 or int8 misses the fidelity bar. `parent` records the version this one
    was retrained from. Returns the manifest.
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
    with tempfile.TemporaryDirectory(prefix=f"savedmodel-{spec.name}-") as tmp:
        export_saved_model(export_model, n_features, Path(tmp))
        t1 = time.perf_counter()
        float_bytes = convert(Path(tmp), None)
        t2 = time.perf_counter()
        int8_bytes = convert(Path(tmp), x_train)
        t3 = time.perf_counter()

    interp8, interp_f = _interpreter(int8_bytes), _interpreter(float_bytes)
    bad = {k: v for k, v in checks.int8_problems(interp8).items() if v}
    if bad:
        raise QualityError(f"{spec.name}: kernels not int8: {bad}")
    sigs = checks.signature_block(interp8)
    if sigs != checks.signature_block(interp_f):
        raise QualityError(f"{spec.name}: float and int8 signatures differ")
    emb_width = _check_signatures(sigs, n_features, n_classes)

    out8 = checks.run(interp8, "serving_default", x_val)
    outf = checks.run(interp_f, "serving_default", x_val)
    emb8 = checks.run(interp8, "embedding", x_val)["embedding"]
    m_float = _metrics(outf["probabilities"], y_val)
    m_int8 = _metrics(out8["probabilities"], y_val)
    m_int8["argmax_agreement"] = float(
        np.mean(np.argmax(out8["probabilities"], 1) == np.argmax(outf["probabilities"], 1))
    )
    class_id_consistent = float(np.mean(out8["class_id"] == np.argmax(out8["probabilities"], 1)))
    drop = m_float["accuracy"] - m_int8["accuracy"]
    if abs(drop) > MAX_ACCURACY_DROP or m_int8["argmax_agreement"] < MIN_AGREEMENT:
        raise QualityError(
            f"{spec.name}: int8 fidelity below bar: float acc {m_float['accuracy']:.4f}, int8 acc "
            f"{m_int8['accuracy']:.4f}, agreement {m_int8['argmax_agreement']:.4f}"
        )
    if emb8.shape != (len(x_val), emb_width):
        raise QualityError(f"{spec.name}: embedding shape {emb8.shape}")

    sha = hashlib.sha256(int8_bytes).hexdigest()
    manifest: dict[str, Any] = {
        "name": spec.name,
        "version": str(version),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "file": MODEL_FILE,
        "sha256": sha,
        "signatures": sigs,
        "labels": list(labels),
        "feature_names": list(feature_names),
        "metrics": {"float": m_float, "int8": m_int8},
        "training_stats": data.training_stats(x_train, y_train, n_classes),
        "data": data_block
        if data_block is not None
        else {"source": "caller-supplied arrays", "n_train": len(y_train), "n_test": len(y_val)},
        "quantization": {"type": "int8 full-integer", "io": "float32", "all_signatures_int8": True},
        "calibration": data.calibration(out8["probabilities"], y_val),
        "parent": parent,
        "architecture": {**spec.to_dict(), **train_info, "embedding_size": emb_width},
        "float_reference": {"file": FLOAT_FILE, "sha256": hashlib.sha256(float_bytes).hexdigest()},
        "build": {
            "size_bytes": len(int8_bytes),
            "float_size_bytes": len(float_bytes),
            "train_seconds": round(t_train, 2),
            "float_convert_seconds": round(t2 - t1, 2),
            "int8_convert_seconds": round(t3 - t2, 2),
            "class_id_matches_argmax": class_id_consistent,
        },
    }
    target = Path(out_dir) / spec.name
    target.mkdir(parents=True, exist_ok=True)
    (target / MODEL_FILE).write_bytes(int8_bytes)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if float_dir is not None:
        fdir = Path(float_dir) / spec.name
        fdir.mkdir(parents=True, exist_ok=True)
        (fdir / FLOAT_FILE).write_bytes(float_bytes)
    return manifest
