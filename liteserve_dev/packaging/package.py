"""Package a model: source (SavedModel / .keras / .tflite) + data -> verified `model.tflite` + `manifest.json`.

`package` reads and checks everything and returns the artifacts; `write` puts them under `<out>/<name>/`. Nothing
is written when any check fails. TensorFlow is imported only to load or convert a SavedModel / .keras source.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from liteserve.manifest_schema import FORMAT_VERSION, InvalidManifest, check, schema, validate

from liteserve_dev.packaging import PackagingError, baseline, checks, fidelity, metrics, tasks
from liteserve_dev.packaging.datasets import Bound, Dataset, bind, label_indices, label_values, read

MODEL_FILE = "model.tflite"
MANIFEST_FILE = "manifest.json"
QUANTIZATION_TYPES = {
    "int8": "int8 full-integer",
    "float16": "float16 weights",
    "dynamic": "dynamic-range int8 weights",
    "none": "float",
    "as-is": "as supplied",
}
TFLITE_MAGIC = b"TFL3"


@dataclass(frozen=True)
class Options:
    """What the user says about the model (the CLI's options)."""

    name: str
    version: str = "1"
    task: str | None = None  # inferred when obvious
    labels: list[str] | None = None
    quantize: str | None = None  # None: int8 for a SavedModel / .keras; a .tflite is packaged as supplied (none)
    signatures: list[str] | None = None  # None: every signature of the source
    label_field: str | None = None
    bounds: fidelity.Bounds = field(default_factory=fidelity.Bounds)
    calibration_rows: int | None = 1000  # rows fed to the int8 calibration (None: all)
    feature_names: list[str] | None = None  # names of the single flat input's features (CSV: its columns)
    histogram_edges: list[float] | None = None  # fixed baseline histogram edges (default: each feature's range)
    retrain: dict[str, str] | None = None  # the manifest's `retrain` block (liteserve_dev.retraining)


@dataclass
class Packaged:
    """The artifacts of one packaging run (nothing written yet)."""

    model: bytes
    manifest: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def source_kind(path: Path) -> str:
    """'savedmodel', 'keras' or 'tflite'; PackagingError for anything else."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise PackagingError(f"{path}: a directory without saved_model.pb is not a SavedModel")
    if not path.is_file():
        raise PackagingError(f"{path}: no such file or directory")
    if path.suffix == ".keras":
        return "keras"
    if path.suffix == ".tflite":
        with path.open("rb") as f:
            head = f.read(8)
        if head[4:8] != TFLITE_MAGIC:
            raise PackagingError(f"{path.name}: not a TF Lite flatbuffer")
        return "tflite"
    raise PackagingError(f"{path.name}: not a model (expected a SavedModel directory, a .keras or a .tflite file)")


def package(source: str | Path, data: str | Path, options: Options) -> Packaged:
    """Read the source and the data, convert, verify and build the manifest (see the module docstring)."""
    t0 = time.perf_counter()
    _check_name(options)
    source = Path(source)
    kind = source_kind(source)
    ds = read(data, options.label_field)
    meta = {"kind": kind, "file": source.name}
    if kind == "tflite":
        packaged = from_tflite(source.read_bytes(), options, ds, source=meta)
    else:
        t1 = time.perf_counter()
        from liteserve_dev.packaging.convert import keras_to_saved_model  # TensorFlow

        seconds = {"import_tensorflow": time.perf_counter() - t1}
        with tempfile.TemporaryDirectory(prefix="liteserve-package-") as tmp:
            saved = source
            if kind == "keras":
                saved = Path(tmp) / "saved_model"
                t2 = time.perf_counter()
                keras_to_saved_model(source, saved)
                seconds["keras_export"] = time.perf_counter() - t2
            packaged = from_saved_model(saved, options, ds, source=meta)
        packaged.seconds.update(seconds)
    packaged.seconds["total"] = time.perf_counter() - t0  # TensorFlow's import included when this call made it
    return packaged


def _check_name(options: Options) -> None:
    props = schema()["properties"]
    for key in ("name", "version"):
        try:
            validate(getattr(options, key), props[key], key)
        except InvalidManifest as e:
            raise PackagingError(f"--{key}: {e.message.split(': ', 1)[1]}") from None


def from_saved_model(
    path: Path,
    options: Options,
    data: Dataset | Bound,
    evaluation: Dataset | Bound | None = None,
    *,
    source: dict[str, Any] | None = None,
) -> Packaged:
    """Convert a SavedModel's kept signatures (`options.quantize`, default int8) and verify them against it.

    `data` calibrates the conversion and makes the baseline; `evaluation` (default: `data`) measures fidelity and,
    when labelled, the task metrics.
    """
    from liteserve_dev.packaging.convert import SavedModel, convert

    t0 = time.perf_counter()
    sm = SavedModel(path)
    keep = _kept(options.signatures, sm.keys)
    specs = sm.signatures(keep)
    calib = data if isinstance(data, Bound) else bind(data, specs)
    ev = calib if evaluation is None else evaluation if isinstance(evaluation, Bound) else bind(evaluation, specs)
    quantize = options.quantize or "int8"
    rows = np.arange(calib.rows)
    if options.calibration_rows is not None and calib.rows > options.calibration_rows:
        rows = np.sort(np.random.default_rng(0).choice(calib.rows, options.calibration_rows, replace=False))

    def feeds():
        # Every signature is fed every row: a signature left out silently stays float.
        for i in rows:
            for key in keep:
                yield key, {n: calib.inputs[n][i : i + 1] for n in specs[key]["inputs"]}

    t1 = time.perf_counter()
    model = convert(path, keep, quantize, feeds)
    t2 = time.perf_counter()
    reference = {key: sm.run(key, _feed(ev, specs[key])) for key in keep}
    packaged = finish(model, specs, reference, calib, ev, options, quantize, {**(source or {}), "reference": "source"})
    packaged.seconds.update({"load": t1 - t0, "convert": t2 - t1, "total": time.perf_counter() - t0})
    return packaged


def from_tflite(
    content: bytes, options: Options, data: Dataset | Bound, *, source: dict[str, Any] | None = None
) -> Packaged:
    """Package an existing `.tflite` (float or already quantized) as supplied; it is its own reference."""
    t0 = time.perf_counter()
    if options.quantize not in (None, "none"):
        raise PackagingError(
            f"--quantize {options.quantize}: a .tflite source is packaged as supplied; convert its SavedModel or "
            ".keras to quantize it"
        )
    try:
        interp = checks.interpreter(content)
    except (ValueError, RuntimeError) as e:
        raise PackagingError(f"not a loadable .tflite model: {e}") from None
    keep = _kept(options.signatures, sorted(interp.get_signature_list()))
    specs = {k: v for k, v in checks.signature_block(interp).items() if k in keep}
    calib = data if isinstance(data, Bound) else bind(data, specs)
    reference = {key: checks.run(interp, key, _feed(calib, specs[key])) for key in keep}
    meta = {**(source or {}), "reference": "the .tflite itself (packaged as supplied)"}
    packaged = finish(content, specs, reference, calib, calib, options, "as-is", meta)
    packaged.seconds["total"] = time.perf_counter() - t0
    return packaged


def _kept(wanted: list[str] | None, available: list[str]) -> list[str]:
    if not available:
        raise PackagingError("the model has no signatures")
    if wanted is None:
        return list(available)
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise PackagingError(f"--signatures {unknown} not in the model; it has {available}")
    return sorted(set(wanted))


def _feed(data: Bound, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    return {n: data.inputs[n] for n in spec["inputs"]}


def finish(
    model: bytes,
    specs: dict[str, dict[str, Any]],
    reference: dict[str, dict[str, np.ndarray]],
    calib: Bound,
    ev: Bound,
    options: Options,
    quantize: str,
    source: dict[str, Any],
) -> Packaged:
    """Verify a converted model against its source's outputs on the data and build its manifest."""
    interp = checks.interpreter(model)
    keep = sorted(specs)
    sigs = {k: v for k, v in checks.signature_block(interp).items() if k in keep}
    if sigs != specs:
        raise PackagingError(f"the converted model's signatures {sigs} differ from the source's {specs}")
    int8_problems = {k: v for k, v in checks.int8_problems(interp).items() if k in keep}
    bad = {k: v[:3] for k, v in int8_problems.items() if v}
    if quantize == "int8" and bad:
        raise PackagingError(f"kernels not int8 after int8 conversion: {bad}")
    got = {key: checks.run(interp, key, _feed(ev, specs[key])) for key in keep}
    served = got if calib is ev else {key: checks.run(interp, key, _feed(calib, specs[key])) for key in keep}

    sig = "serving_default" if "serving_default" in keep else keep[0]
    n_labels = len(options.labels) if options.labels else None
    task = tasks.infer_task(sig, specs[sig]["outputs"], reference[sig], options.task, n_labels)
    labels = _labels(task, specs[sig]["outputs"], reference[sig], options.labels)

    numbers = fidelity.task_numbers(task, reference[sig], got[sig])
    problems = fidelity.problems(task, numbers, options.bounds)
    roles = {task[r] for r in tasks.ROLES if task.get(r)}
    others: dict[str, dict[str, float]] = {}
    for key in keep:
        errors = {
            out: fidelity.relative_error(reference[key][out], got[key][out])
            for out in got[key]
            if not (key == sig and out in roles)
        }
        others.update({key: errors} if errors else {})
        bound = options.bounds.max_output_error
        problems += [
            f"{key}/{out}: relative error {e:.4f} (bound <= {bound})" for out, e in errors.items() if e > bound
        ]

    block_metrics, calibration = _metrics(task, reference[sig], got[sig], ev, labels, quantize)
    drop = options.bounds.max_accuracy_drop
    if drop is not None and "accuracy" in block_metrics.get("float", {}):
        lost = block_metrics["float"]["accuracy"] - block_metrics[_metrics_key(quantize)]["accuracy"]
        if abs(lost) > drop:
            problems.append(f"accuracy moved {lost:+.4f} from the source (bound {drop})")
    if problems:
        raise PackagingError(
            f"the packaged model is not faithful to its source on {ev.rows} rows: "
            + "; ".join(problems)
            + f" (all numbers: {_round(numbers)})"
        )

    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": options.name,
        "version": str(options.version),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "file": MODEL_FILE,
        "sha256": hashlib.sha256(model).hexdigest(),
        "signatures": sigs,
        "task": task,
        "labels": labels,
        **_stats(task, calib, served, labels, options),
        "quantization": {
            "type": QUANTIZATION_TYPES[quantize],
            "io": "float32" if _float_io(sigs) else "mixed",
            "all_signatures_int8": not any(int8_problems.values()),
        },
        "metrics": block_metrics,
        "fidelity": {
            "rows": ev.rows,
            "reference": source.get("reference"),
            task["kind"]: numbers,
            "outputs": others,
            "bounds": options.bounds.as_dict(),
        },
        "data": {**calib.source, **({"evaluation": ev.source} if ev is not calib else {})},
        "source": {k: v for k, v in source.items() if k != "reference"},
        "build": {"size_bytes": len(model)},
    }
    if calibration is not None:
        manifest["calibration"] = calibration
    if options.retrain is not None:
        manifest["retrain"] = options.retrain
    if not block_metrics:
        del manifest["metrics"]
    _validate(manifest)
    return Packaged(model, manifest)


def _labels(
    task: dict[str, Any], outputs: dict[str, Any], values: dict[str, np.ndarray], given: list[str] | None
) -> list[str]:
    if task["kind"] != "classification":
        if given:
            raise PackagingError(f"--labels is for classification; this is a {task['kind']} model")
        return []
    n = tasks.n_classes(task, outputs, values)
    if given is None:
        return [str(i) for i in range(n)]
    if len(given) != n and (task.get("probabilities") or task.get("logits")):
        raise PackagingError(f"{len(given)} labels for a model with {n} classes")
    if len(set(given)) != len(given):
        raise PackagingError("--labels holds duplicate class names")
    return list(given)


def _metrics_key(quantize: str) -> str:
    return {"none": "tflite", "as-is": "tflite"}.get(quantize, quantize)


def _metrics(
    task: dict[str, Any],
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    ev: Bound,
    labels: list[str],
    quantize: str,
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """Task metrics of source ('float') and packaged model on labelled data, and the calibration table."""
    if ev.labels is None or task["kind"] == "embedding":
        return {}, None
    where = ev.source.get("file", "data")
    key = _metrics_key(quantize)
    if task["kind"] == "regression":
        y = label_values(ev.labels, where)
        return {
            "float": metrics.regression_metrics(ref[task["score"]], y),
            key: metrics.regression_metrics(got[task["score"]], y),
        }, None
    y = label_indices(ev.labels, labels, where)
    out: dict[str, Any] = {}
    for name, values in (("float", ref), (key, got)):
        probs = tasks.probabilities(task, values)
        block = {"accuracy": float(np.mean(tasks.predicted_class(task, values) == y))}
        if probs is not None:
            block["log_loss"] = metrics.log_loss(probs, y)
        out[name] = block
    out[key]["argmax_agreement"] = float(np.mean(tasks.predicted_class(task, ref) == tasks.predicted_class(task, got)))
    probs = tasks.probabilities(task, got)
    return out, (metrics.calibration(probs, y) if probs is not None else None)


def _stats(
    task: dict[str, Any],
    calib: Bound,
    served: dict[str, dict[str, np.ndarray]],
    labels: list[str],
    options: Options,
) -> dict[str, Any]:
    """`feature_names`, `training_stats` (the single flat input's features, the class counts) and `baseline`."""
    stats: dict[str, Any] = {"n": calib.rows}
    inputs: dict[str, Any] = {}
    out: dict[str, Any] = {}
    flat = [n for n, x in calib.inputs.items() if x.ndim <= 2]
    if len(calib.inputs) == 1 and flat:
        (name,) = flat
        names = options.feature_names or calib.feature_names[name]
        width = 1 if calib.inputs[name].ndim == 1 else calib.inputs[name].shape[1]
        if len(names) != width:
            raise PackagingError(f"{len(names)} feature names for the {width} features of input {name!r}")
        stats["input"] = name
        stats["features"] = baseline.feature_stats(calib.inputs[name], names, options.histogram_edges)
        out["feature_names"] = list(names)
        inputs[name] = {"kind": "features", "in": "training_stats"}
    else:
        for name, x in sorted(calib.inputs.items()):
            inputs[name] = baseline.input_stats(x, calib.feature_names.get(name))
    if task["kind"] == "classification":
        sig = task["signature"]
        if calib.labels is not None:
            y, stats["label_source"] = label_indices(calib.labels, labels, calib.source.get("file", "data")), "labels"
        else:
            y, stats["label_source"] = tasks.predicted_class(task, served[sig]), "predictions"
        stats["label_counts"] = [int(c) for c in np.bincount(y, minlength=len(labels))]
    outputs = {key: {o: baseline.output_stats(v) for o, v in sorted(served[key].items())} for key in sorted(served)}
    out["training_stats"] = stats
    out["baseline"] = {"n": calib.rows, "inputs": inputs, "outputs": outputs}
    return out


def _float_io(sigs: dict[str, Any]) -> bool:
    return all(t["dtype"] == "float32" for s in sigs.values() for t in s["inputs"].values())


def _round(numbers: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in numbers.items()}


def _validate(manifest: dict[str, Any]) -> None:
    try:
        check(manifest)
    except InvalidManifest as e:  # a bug here, not the user's: say so
        raise PackagingError(f"internal: the manifest breaks its schema: {e.message}") from None


def write(packaged: Packaged, out: str | Path) -> Path:
    """Write `<out>/<name>/model.tflite` then `manifest.json` (each by rename, the manifest last); returns the dir."""
    _validate(packaged.manifest)
    target = Path(out) / packaged.manifest["name"]
    target.mkdir(parents=True, exist_ok=True)
    for name, content in (
        (MODEL_FILE, packaged.model),
        (MANIFEST_FILE, (json.dumps(packaged.manifest, indent=1) + "\n").encode()),
    ):
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; Lambda reads layer files as another user
        os.replace(tmp, target / name)
    return target
