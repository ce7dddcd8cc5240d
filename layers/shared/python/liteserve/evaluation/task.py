"""What evaluation reads from a model's manifest: its task (which signature and outputs answer it), its inputs and
the packaged baselines of both (see liteserve_dev/packaging/baseline.py for how they are made).

Any model packaged by `liteserve-model package` (or built by training/) is evaluated by what its manifest says:
classification, regression or embedding; one or many inputs, flat or of higher rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from liteserve.manifest import DEFAULT_SIGNATURE, Manifest
from liteserve.records import record_inputs

_OUTPUT_ROLES = {
    "classification": ("class_id", "probabilities", "logits"),
    "regression": ("score",),
    "embedding": ("embedding",),
}


@dataclass(frozen=True)
class Task:
    """The manifest's `task` block with the answering signature's inputs and the baselines evaluation needs."""

    kind: str
    signature: str
    outputs: dict[str, str | None]  # role (probabilities, class_id, score, embedding, logits) -> output name
    inputs: dict[str, tuple[int, ...]]  # input name -> shape of one instance (-1: any size)
    input_baselines: dict[str, dict[str, Any]]  # input name -> {"kind": "features", "features"} | tensor stats
    output_baselines: dict[str, dict[str, Any]]  # output name -> the packaged distribution of that output
    packaged_metrics: dict[str, Any]  # task metrics of the packaged model on the packaging data ({} if unlabelled)

    @classmethod
    def of(cls, manifest: Manifest) -> Task:
        """The task of a manifest; one without a `task` block is read as the classifier every old manifest was."""
        raw = manifest.raw
        block = raw.get("task") or {
            "kind": "classification",
            "signature": DEFAULT_SIGNATURE,
            "probabilities": "probabilities",
            "class_id": "class_id",
        }
        kind, signature = block["kind"], block.get("signature") or DEFAULT_SIGNATURE
        spec = manifest.signatures.get(signature) or next(iter(manifest.signatures.values()))
        outputs = {role: block.get(role) for role in ("probabilities", "logits", "class_id", "score", "embedding")}
        return cls(
            kind=kind,
            signature=spec.name,
            outputs=outputs,
            inputs={name: t.feature_shape for name, t in spec.inputs.items()},
            input_baselines=_input_baselines(raw, list(spec.inputs)),
            output_baselines=dict(((raw.get("baseline") or {}).get("outputs") or {}).get(spec.name) or {}),
            packaged_metrics=_packaged_metrics(raw.get("metrics") or {}),
        )

    def as_dict(self) -> dict[str, Any]:
        """The report's `task` block: kind, signature, the output of each role, the inputs' instance shapes."""
        outputs = {role: name for role, name in self.outputs.items() if name}
        return {
            "kind": self.kind,
            "signature": self.signature,
            **outputs,
            "inputs": {n: list(s) for n, s in self.inputs.items()},
        }

    def output(self, role: str) -> str | None:
        """The name of the output playing `role` (e.g. `score`), or None."""
        return self.outputs.get(role)

    def answers(self, record: dict[str, Any]) -> bool:
        """Whether a prediction record is an answer of this task: it carries one of the task's outputs (the same
        key may also have been sent to another signature, e.g. an embedding, which must not replace it)."""
        names = self._answer_outputs
        if names:
            outputs = record["outputs"]
            return any(n in outputs for n in names)
        return (record.get("signature") or DEFAULT_SIGNATURE) == self.signature

    @cached_property
    def _answer_outputs(self) -> tuple[str, ...]:
        return tuple(n for role in _OUTPUT_ROLES.get(self.kind, ()) if (n := self.outputs.get(role)))

    def input_arrays(self, records: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Each input of the readable records as a float64 array [rows, *instance shape], and the mask of those
        records. A record is unreadable when an input is missing or has another size than the signature's."""
        names = list(self.inputs)
        wanted = set(names)
        found: list[dict[str, Any] | None] = []
        for rec in records:
            try:
                got = record_inputs(rec, names)
            except ValueError:
                got = None
            found.append(got if got is not None and wanted <= got.keys() else None)
        if all(got is not None for got in found):  # one conversion per input: ~3x faster than per record
            try:
                arrays = {n: np.asarray([got[n] for got in found], dtype=np.float64) for n in names}  # type: ignore[index]
            except (ValueError, TypeError):
                arrays = {}
            if arrays and all(a.shape[1:] == self.inputs[n] for n, a in arrays.items()):
                return arrays, np.ones(len(records), dtype=bool)
        return self._each(found)

    def _each(self, found: list[dict[str, Any] | None]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """`input_arrays` record by record: the readable ones, reshaped to the signature's instance shapes."""
        names = list(self.inputs)
        columns: dict[str, list[np.ndarray]] = {n: [] for n in names}
        ok = np.zeros(len(found), dtype=bool)
        for i, got in enumerate(found):
            if got is None:
                continue
            try:
                values = {n: np.asarray(got[n], dtype=np.float64) for n in names}
            except (ValueError, TypeError):
                continue
            if not all(_fits(values[n], self.inputs[n]) for n in names):
                continue
            ok[i] = True
            for n in names:
                columns[n].append(values[n] if -1 in self.inputs[n] else values[n].reshape(self.inputs[n]))
        arrays = {}
        for n in names:
            try:
                arrays[n] = np.stack(columns[n]) if columns[n] else np.zeros((0, *_zero(self.inputs[n])))
            except ValueError:  # a variable-size input whose instances differ in size: no per-value baseline fits
                arrays[n] = np.zeros((0, *_zero(self.inputs[n])))
        return arrays, ok


def _fits(value: np.ndarray, shape: tuple[int, ...]) -> bool:
    """A value matches an instance shape: same size when the shape is fixed (a scalar fits shape ())."""
    if any(d < 0 for d in shape):
        return value.ndim == len(shape)
    return value.size == math.prod(shape)


def _zero(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(d, 0) for d in shape)


def _input_baselines(raw: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """The packaged statistics of every input: `features` (a flat input; `in: training_stats` points at the
    manifest's `training_stats.features`) or `tensor` (`channels` and/or `summary`). Manifests made before
    `baseline` existed describe their single flat input in `training_stats` alone."""
    stats = raw.get("training_stats") or {}
    declared = (raw.get("baseline") or {}).get("inputs")
    if declared is None:
        declared = {}
        if stats.get("features"):
            name = stats.get("input") or (names[0] if len(names) == 1 else None)
            if name is not None:
                declared[name] = {"kind": "features", "in": "training_stats"}
    out = {}
    for name, block in declared.items():
        if name not in names:
            continue
        if block.get("in") == "training_stats":
            block = {"kind": "features", "features": stats.get("features") or []}
        out[name] = block
    return out


def _packaged_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The packaged model's block of the manifest's `metrics` (keyed by its quantization: `int8`, `float16`...;
    `float` is the source model)."""
    if "int8" in metrics:
        return dict(metrics["int8"])
    for key, block in metrics.items():
        if key != "float":
            return dict(block)
    return {}


def numeric_label(text: str) -> float | None:
    """A regression label as a finite float, or None when it is not a number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class TaskMetric:
    """The labelled metric a task's gate and canary review compare."""

    task: str
    name: str  # the key of the metric in holdout scores and in the evaluator's per-version numbers
    higher_is_better: bool
    relative: bool  # margin and tolerance are shares of the baseline's value (an error has the target's scale)

    def gain(self, base: float, new: float) -> float:
        """How much better `new` is than `base`: a difference of accuracies, a relative reduction of an error."""
        diff = new - base if self.higher_is_better else base - new
        return diff / max(base, 1e-12) if self.relative else diff

    def show(self, value: float, signed: bool = True) -> str:
        """A gain (signed) or a margin as the reasons print it: a share of the baseline, or metric points."""
        if self.relative:
            return f"{value:+.2%}" if signed else f"{value:.2%}"
        return f"{value:+.4f}" if signed else f"{value:g}"


TASK_METRICS = {
    "classification": TaskMetric("classification", "accuracy", higher_is_better=True, relative=False),
    "regression": TaskMetric("regression", "rmse", higher_is_better=False, relative=True),
}


def task_metric(kind: str) -> TaskMetric | None:
    """The metric promotion compares for a task kind; None for a task without labelled metrics (embedding)."""
    return TASK_METRICS.get(kind)
