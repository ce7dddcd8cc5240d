"""The retraining contract: a model's retraining is its user's Python entry point, declared with the model.

`liteserve-model package ... --retrain module:function [--retrain-data LOCATION]` records in the manifest

    "retrain": {"entry_point": "module:function", "data": "LOCATION", "label_field": "F"}

and the retraining job (`python -m training.retrain`) calls `function(RetrainInput)`: the training rows (read from
`data`: a path relative to the build's source root, i.e. the repository, or an `s3://bucket/key` URI; `.npz`,
`.jsonl` or `.csv` as for packaging) and the window's labelled predictions, each as `Rows`. The function returns a
Keras model or the path of a SavedModel directory (or `.keras` file); the job packages it with the packaging path
(`liteserve_dev.packaging`: conversion, fidelity, baseline, manifest) under the parent's options and writes the
candidate to the registry. A manifest without `retrain` is valid; its model just cannot be retrained.

TensorFlow is imported only when an entry point returns a model and it is packaged.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from liteserve.manifest_schema import entry_point_pattern

from liteserve_dev.packaging import PackagingError
from liteserve_dev.packaging.datasets import Bound, Dataset, bind, label_indices, label_values, read

ENTRY_POINT = re.compile(entry_point_pattern())  # module path `:` attribute path, e.g. `pkg.mod:Class.method`
RETRAINABLE = ("classification", "regression")


class ContractError(ValueError):
    """The model's retraining is not declared or cannot be used: no `retrain` field, an entry point that does not
    resolve, training data that cannot be read. A configuration problem (the job exits 2)."""


class TrainingFailed(RuntimeError):
    """The entry point ran but gave no usable model: it raised, or returned something else (the job exits 1)."""


@dataclass(frozen=True)
class Rows:
    """Labelled rows: one array per input name (rows first), labels and, for logged rows, their keys.

    Labels are class indices (int64, into `RetrainInput.labels`) for classification, float64 targets for
    regression."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> Rows:
        """The rows at indices (or where a boolean mask is true)."""
        idx = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx, dtype=np.int64)
        keys = [self.keys[i] for i in idx] if self.keys is not None else None
        return Rows({n: v[idx] for n, v in self.inputs.items()}, self.labels[idx], keys)

    def repeat(self, times: int) -> Rows:
        """The rows `times` times over (oversampling)."""
        return self.take(np.tile(np.arange(len(self)), times)) if times != 1 else self


def concat(*parts: Rows) -> Rows:
    """The rows of every part, in order (same input names); keys only when every part has them."""
    names = list(parts[0].inputs)
    keys = None if any(p.keys is None for p in parts) else [k for p in parts for k in p.keys]  # type: ignore[union-attr]
    return Rows(
        {n: np.concatenate([p.inputs[n] for p in parts]) for n in names},
        np.concatenate([p.labels for p in parts]),
        keys,
    )


@dataclass(frozen=True)
class RetrainInput:
    """What an entry point receives: `training` (the declared training data) and `recent` (the window's labelled
    predictions; the holdout the gate scores on is left out), the model's task and names, and a scratch folder."""

    model: str
    version: str  # the candidate's version
    parent: str | None  # the version it replaces
    task: dict[str, Any]  # the manifest's task block (kind, signature, output roles)
    labels: list[str]  # class names; classification labels index into them
    feature_names: list[str] | None
    training: Rows
    recent: Rows
    workdir: Path  # an empty folder that lives until the candidate is packaged (e.g. for a SavedModel)


@dataclass(frozen=True)
class Declaration:
    """A manifest's `retrain` block."""

    entry_point: str
    data: str | None = None
    label_field: str | None = None


def declared(manifest: dict[str, Any]) -> Declaration:
    """The model's retraining declaration; ContractError naming the packaging option when there is none."""
    block = manifest.get("retrain")
    if not isinstance(block, dict) or not block.get("entry_point"):
        raise ContractError(
            f"model {manifest.get('name')!r} (version {manifest.get('version')}) declares no retraining entry point "
            "(manifest field 'retrain'): it cannot be retrained; package it with --retrain module:function"
        )
    if manifest["task"]["kind"] not in RETRAINABLE:
        raise ContractError(f"a {manifest['task']['kind']} model has no labels to retrain on")
    return Declaration(block["entry_point"], block.get("data"), block.get("label_field"))


def resolve(spec: str) -> Callable[[RetrainInput], Any]:
    """The function an entry point `module:function` names; ContractError saying what does not resolve."""
    if not isinstance(spec, str) or not ENTRY_POINT.match(spec):
        raise ContractError(f"retraining entry point {spec!r} is not `module:function` (e.g. mypkg.train:retrain)")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ContractError(f"retraining entry point {spec}: no module {e.name!r} on the path") from None
        raise ContractError(f"retraining entry point {spec}: importing {module_name} failed: {e}") from None
    except Exception as e:  # the user's module raised while importing
        raise ContractError(
            f"retraining entry point {spec}: importing {module_name} raised {type(e).__name__}: {e}"
        ) from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ContractError(f"retraining entry point {spec}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ContractError(f"retraining entry point {spec}: {attr} is a {type(obj).__name__}, not a function")
    return obj


def typed_labels(raw: np.ndarray | None, manifest: dict[str, Any], where: str) -> np.ndarray:
    """Raw label values -> class indices (classification) or float targets (regression)."""
    if raw is None:
        raise ContractError(f"{where}: the training data has no labels (a label field or column)")
    try:
        if manifest["task"]["kind"] == "classification":
            return label_indices(raw, manifest["labels"], where)
        return label_values(raw, where)
    except PackagingError as e:
        raise ContractError(str(e)) from None


def load_training(decl: Declaration, manifest: dict[str, Any], workdir: Path, root: Path = Path()) -> Rows:
    """The declared training rows, checked against the task signature's inputs (as packaging checks its data).

    No `data` declared: zero rows (the entry point brings its own)."""
    sig = manifest["task"]["signature"]
    specs = {sig: manifest["signatures"][sig]}
    if decl.data is None:
        inputs = {
            n: np.zeros([0, *[max(d, 0) for d in s["shape"][1:]]], dtype=s["dtype"])
            for n, s in specs[sig]["inputs"].items()
        }
        kind = manifest["task"]["kind"]
        return Rows(inputs, np.zeros(0, dtype=np.int64 if kind == "classification" else np.float64))
    path = fetch(decl.data, workdir, root)
    try:
        bound = bind(read(path, decl.label_field), specs, min_rows=1)
    except PackagingError as e:
        raise ContractError(f"training data {decl.data}: {e}") from None
    return Rows(bound.inputs, typed_labels(bound.labels, manifest, f"training data {decl.data}"))


def fetch(location: str, workdir: Path, root: Path = Path()) -> Path:
    """A local file for a data location: a path (relative to `root`) or `s3://bucket/key` (downloaded)."""
    if location.startswith("s3://"):
        import boto3
        from botocore.exceptions import ClientError

        bucket, _, key = location[5:].partition("/")
        target = workdir / ("training-data" + Path(key).suffix)
        try:
            boto3.client("s3").download_file(bucket, key, str(target))
        except ClientError as e:
            raise ContractError(f"training data {location}: {e.response['Error'].get('Message') or e}") from None
        return target
    path = root / location
    if not path.is_file():
        raise ContractError(f"training data {location}: no such file under {root.resolve()}")
    return path


def run_entry_point(fn: Callable[[RetrainInput], Any], spec: str, data: RetrainInput) -> Path:
    """Call the entry point; the SavedModel directory (or `.keras` file) of what it returned. TrainingFailed when
    it raises or returns anything but a Keras model or such a path."""
    try:
        result = fn(data)
    except Exception as e:
        raise TrainingFailed(f"retraining entry point {spec} raised {type(e).__name__}: {e}") from e
    if isinstance(result, str | os.PathLike):
        path = Path(result)
        if (path / "saved_model.pb").is_file() or (path.is_file() and path.suffix == ".keras"):
            return path
        raise TrainingFailed(f"retraining entry point {spec} returned {str(path)!r}: not a SavedModel or .keras")
    if _is_keras_model(result):
        out = Path(tempfile.mkdtemp(prefix="saved_model-", dir=data.workdir))
        result.export(str(out), format="tf_saved_model", verbose=False)
        return out
    raise TrainingFailed(
        f"retraining entry point {spec} returned {type(result).__name__}; expected a Keras model or the path of a "
        "SavedModel directory"
    )


def _is_keras_model(obj: Any) -> bool:
    if "keras" not in sys.modules:  # whoever built a Keras model imported it; never import TensorFlow to say no
        return False
    import keras

    return isinstance(obj, keras.Model)


def bound(rows: Rows, manifest: dict[str, Any], source: dict[str, Any]) -> Bound:
    """Rows bound to every kept signature's inputs, as packaging binds a data file."""
    return bind(Dataset(source, fields=dict(rows.inputs), labels=rows.labels), manifest["signatures"], min_rows=1)


@dataclass
class Candidate:
    """A packaged candidate: the int8 (or the parent's quantization) model, its manifest, the float reference."""

    model: bytes
    manifest: dict[str, Any]
    float_model: bytes
    seconds: dict[str, float] = field(default_factory=dict)


def package_candidate(
    source: Path, parent: dict[str, Any], version: str, trained_on: Rows, holdout: Rows, spec: str
) -> Candidate:
    """Package the entry point's model exactly as `liteserve-model package` would under the parent's options
    (name, task, labels, quantization, kept signatures, feature names, fidelity bounds).

    Every row it trained on calibrates and makes the baseline; fidelity is checked on those rows and the holdout;
    the task metrics (the evaluator's baseline for this version) are the holdout's, never trained on. PackagingError
    when a check fails or the signatures differ from the parent's."""
    from liteserve_dev.packaging import checks
    from liteserve_dev.packaging.convert import SavedModel, convert, keras_to_saved_model
    from liteserve_dev.packaging.package import _metrics, from_saved_model, source_kind

    options = candidate_options(parent, version)
    with tempfile.TemporaryDirectory(prefix="liteserve-candidate-") as tmp:
        saved = source
        if source_kind(source) == "keras":
            saved = Path(tmp) / "saved_model"
            keras_to_saved_model(source, saved)
        calib = bound(trained_on, parent, {"rows": len(trained_on), "part": "training rows + recent rows"})
        both = bound(concat(trained_on, holdout), parent, {"rows": len(trained_on) + len(holdout)})
        packaged = from_saved_model(saved, options, calib, both, source={"kind": "retrain", "entry_point": spec})
        manifest = packaged.manifest
        if manifest["signatures"] != parent["signatures"]:
            raise PackagingError(
                f"the retrained model's signatures {manifest['signatures']} differ from version "
                f"{parent['version']}'s {parent['signatures']}: serving, the log and the gate rely on them"
            )
        task, sig = manifest["task"], manifest["task"]["signature"]
        held = bound(holdout, parent, {"rows": len(holdout), "part": "recent holdout"})
        feed = {n: held.inputs[n] for n in parent["signatures"][sig]["inputs"]}
        reference = SavedModel(saved).run(sig, feed)
        served = checks.run(checks.interpreter(packaged.model), sig, feed)
        block, calibration = _metrics(task, reference, served, held, manifest["labels"], options.quantize or "int8")
        manifest.pop("calibration", None)
        manifest.update({"metrics": block, **({"calibration": calibration} if calibration is not None else {})})
        float_model = convert(saved, sorted(parent["signatures"]), "none")
    return Candidate(packaged.model, manifest, float_model, dict(packaged.seconds))


def candidate_options(parent: dict[str, Any], version: str) -> Any:
    """The packaging options a candidate of `parent` is built with (read back from the parent's manifest)."""
    from liteserve_dev.packaging.fidelity import Bounds
    from liteserve_dev.packaging.package import QUANTIZATION_TYPES, Options

    quantize = {v: k for k, v in QUANTIZATION_TYPES.items()}.get(parent.get("quantization", {}).get("type"))
    features = (parent.get("training_stats") or {}).get("features") or []
    edges = {tuple(f.get("histogram", {}).get("edges") or ()) for f in features}
    bounds = (parent.get("fidelity") or {}).get("bounds")
    return Options(
        name=parent["name"],
        version=str(version),
        task=parent["task"]["kind"],
        labels=list(parent["labels"]) or None,
        quantize=None if quantize == "as-is" else quantize,
        signatures=sorted(parent["signatures"]),
        bounds=Bounds(**bounds) if isinstance(bounds, dict) else Bounds(),
        calibration_rows=None,
        feature_names=parent.get("feature_names"),
        histogram_edges=list(next(iter(edges))) if len(edges) == 1 and () not in edges else None,
        retrain=parent.get("retrain"),
    )
