"""What a model does, read from its task signature's outputs on the data (numpy only).

The manifest's `task` block names the kind and which output holds the probabilities, logits, class id, score or
embedding. The kind is inferred only when it is obvious; otherwise `--task` must say it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from liteserve_dev.packaging import PackagingError

KINDS = ("classification", "regression", "embedding")
ROLES = ("probabilities", "logits", "class_id", "score", "embedding")
SUM_TOLERANCE = 1e-3  # rows of a probability output sum to 1 within this (float reference)


def _is_probabilities(y: np.ndarray) -> bool:
    return bool(y.size) and y.min() >= -1e-6 and y.max() <= 1 + 1e-6 and np.allclose(y.sum(1), 1.0, atol=SUM_TOLERANCE)


def classify_outputs(outputs: dict[str, dict[str, Any]], values: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Sort output names into candidate roles by dtype, shape and (for probabilities) the reference values."""
    found: dict[str, list[str]] = {"probabilities": [], "class_id": [], "score": [], "vector": []}
    for name, spec in sorted(outputs.items()):
        shape, kind = spec["shape"], np.dtype(spec["dtype"]).kind
        per_row = shape[1:]
        width = int(np.prod(per_row)) if all(d > 0 for d in per_row) else -1
        if kind in "iu" and width == 1:
            found["class_id"].append(name)
        elif kind == "f" and width == 1:
            found["score"].append(name)
        elif kind == "f" and len(shape) == 2:
            is_probs = _is_probabilities(np.asarray(values[name], dtype=np.float64))
            found["probabilities" if is_probs else "vector"].append(name)
    return found


def _one(names: list[str], what: str, outputs: dict[str, Any]) -> str:
    if len(names) != 1:
        raise PackagingError(
            f"cannot tell which output is the {what}: candidates {names or 'none'} of {sorted(outputs)}"
        )
    return names[0]


def infer_task(
    signature: str,
    outputs: dict[str, dict[str, Any]],
    values: dict[str, np.ndarray],
    kind: str | None = None,
    n_labels: int | None = None,
) -> dict[str, Any]:
    """The manifest's `task` block for `signature` (outputs: its spec block; values: the source model's outputs).

    Without `kind`: classification when an output holds probabilities or a class id (or one output has as many
    columns as there are `n_labels`), regression when the only output is one float per row; else PackagingError
    asking for `--task`.
    """
    found = classify_outputs(outputs, values)
    task: dict[str, Any] = {"kind": kind, "signature": signature, **dict.fromkeys(ROLES)}
    if kind is None:
        widths = [n for n in found["vector"] if outputs[n]["shape"][-1] == n_labels]
        if found["probabilities"] or found["class_id"] or (n_labels and len(widths) == 1):
            kind = "classification"
        elif len(outputs) == 1 and found["score"]:
            kind = "regression"
        else:
            shapes = {n: s["shape"] for n, s in sorted(outputs.items())}
            raise PackagingError(
                f"cannot tell the task from the outputs of {signature!r} {shapes}: pass --task {'|'.join(KINDS)}"
            )
        task["kind"] = kind
    if kind == "classification":
        if len(found["probabilities"]) > 1 or len(found["class_id"]) > 1:
            _one([], "probabilities / class id", outputs)
        task["probabilities"] = found["probabilities"][0] if found["probabilities"] else None
        task["class_id"] = found["class_id"][0] if found["class_id"] else None
        if task["probabilities"] is None:
            vectors = [n for n in found["vector"] if n_labels is None or outputs[n]["shape"][-1] == n_labels]
            if vectors or task["class_id"] is None:
                task["logits"] = _one(vectors, "class scores (logits)", outputs)
    elif kind == "regression":
        task["score"] = _one(found["score"], "regression score (one float per row)", outputs)
    elif kind == "embedding":
        task["embedding"] = _one(found["vector"] + found["probabilities"], "embedding", outputs)
    else:
        raise PackagingError(f"unknown task {kind!r}; expected one of {', '.join(KINDS)}")
    return task


def n_classes(task: dict[str, Any], outputs: dict[str, dict[str, Any]], values: dict[str, np.ndarray]) -> int:
    """Number of classes: the probabilities / logits width, else one more than the largest class id seen."""
    for role in ("probabilities", "logits"):
        if task.get(role):
            return int(outputs[task[role]]["shape"][-1])
    return int(np.max(values[task["class_id"]])) + 1


def probabilities(task: dict[str, Any], values: dict[str, np.ndarray]) -> np.ndarray | None:
    """Class probabilities [n, C] of a classifier's outputs (softmax of logits), None if it only has class ids."""
    if task.get("probabilities"):
        return np.asarray(values[task["probabilities"]], dtype=np.float64)
    if task.get("logits"):
        z = np.asarray(values[task["logits"]], dtype=np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return None


def predicted_class(task: dict[str, Any], values: dict[str, np.ndarray]) -> np.ndarray:
    """The class index per row: the class id output, else the argmax of the probabilities."""
    if task.get("class_id"):
        return np.asarray(values[task["class_id"]]).reshape(-1).astype(np.int64)
    return np.argmax(probabilities(task, values), axis=1)
