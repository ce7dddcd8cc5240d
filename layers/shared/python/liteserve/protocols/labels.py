"""The `class_label` output: a classifier's class names (manifest `labels`) beside its scores, on request.

A model whose manifest names its classes (`labels`) and whose task signature has a class output (`task.class_id`,
else the argmax of `task.probabilities` / `task.logits`) offers one more output on that signature, `class_label`:
a string per instance (TF Serving `DT_STRING`, V2 `BYTES`, shape [N]). It is computed from the model's own outputs
and returned only when a client asks for it (TF Serving `output_filter`, V2 `outputs`), so a request that does not
ask gets exactly the signature's outputs, as TF Serving and KServe answer. Both metadata documents list the labels.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from liteserve.manifest import Manifest, TensorSpec

CLASS_LABEL = "class_label"
SPEC = TensorSpec(CLASS_LABEL, "object", (-1,))


class HasManifest(Protocol):
    manifest: Manifest


def source(model: HasManifest, signature: str) -> str | None:
    """The output `class_label` is read from on `signature` (None when the model offers no labels there)."""
    manifest = getattr(model, "manifest", None)  # codec tests pass bare signature sources
    if manifest is None:
        return None
    task = manifest.raw.get("task") or {}
    if not manifest.labels or task.get("signature") != signature:
        return None
    outputs = manifest.signatures[signature].outputs
    for role in ("class_id", "probabilities", "logits"):
        name = task.get(role)
        if name and name in outputs and CLASS_LABEL not in outputs:
            return name
    return None


def class_labels(model: HasManifest, signature: str, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The class name of every instance (an object array of str), from the signature's computed outputs."""
    name = source(model, signature)
    if name is None:  # callers check `source` first; this is a programming error
        raise ValueError(f"model {model.manifest.name!r} has no class labels on signature {signature!r}")
    values = outputs[name]
    ids = values.reshape(len(values)) if model.manifest.raw["task"].get("class_id") == name else values.argmax(axis=-1)
    names = np.asarray(model.manifest.labels, dtype=object)
    return names[np.clip(ids.astype(np.int64), 0, len(names) - 1)]


def with_labels(
    model: HasManifest, signature: str, outputs: dict[str, np.ndarray], requested: list[str]
) -> dict[str, np.ndarray]:
    """`outputs` plus `class_label` when it is among `requested` (the caller validated that it is offered)."""
    if CLASS_LABEL in requested and CLASS_LABEL not in outputs:
        return {**outputs, CLASS_LABEL: class_labels(model, signature, outputs)}
    return outputs


def describe(model: HasManifest) -> dict[str, Any] | None:
    """What metadata says about the labels: the names, and which signature offers `class_label` from which output."""
    manifest = model.manifest
    if not manifest.labels:
        return None
    signature = (manifest.raw.get("task") or {}).get("signature")
    output = source(model, signature) if signature in manifest.signatures else None
    out: dict[str, Any] = {"names": list(manifest.labels)}
    if output is not None:
        out.update(output=CLASS_LABEL, signature=signature, from_output=output)
    return out
