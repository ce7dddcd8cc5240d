"""The manifest contract: `manifest.schema.json` (JSON Schema 2020-12) plus the cross-field rules a schema cannot say.

Serving checks only the fields it uses (`SERVING_FIELDS`) so a model loads fast; packaging checks everything. The
layer has no jsonschema library (and needs none): `validate` reads the schema's own keywords, the small subset the
schema file uses (the dev venv's tests check the file with jsonschema itself and that both agree).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from liteserve.errors import ModelUnavailable

FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
SERVING_FIELDS = ("format_version", "name", "version", "file", "sha256", "signatures", "task", "labels")
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_TASK_OUTPUTS = {"classification": ("probabilities", "logits", "class_id"), "regression": ("score",)}
_TASK_OUTPUTS["embedding"] = ("embedding",)


class InvalidManifest(ModelUnavailable):
    """A manifest this code cannot use; `field` names the offending field (dotted path)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"manifest field '{field}': {problem}")
        self.field = field


@cache
def schema() -> dict[str, Any]:
    """The manifest's JSON Schema document."""
    return json.loads(SCHEMA_PATH.read_text())


def entry_point_pattern() -> str:
    """The pattern of `retrain.entry_point` (`module:function`): the optional block declaring how a model is
    retrained (read by the retraining job, never by serving)."""
    return schema()["properties"]["retrain"]["properties"]["entry_point"]["pattern"]


def check(raw: Any, fields: Iterable[str] | None = None) -> None:
    """Raise InvalidManifest naming the first field of `raw` that breaks the contract.

    `fields` limits the schema check to these top-level properties (presence of every required field is always
    checked); the cross-field rules (task outputs exist, labels fit the probabilities) always run.
    """
    doc = schema()
    if not isinstance(raw, dict):
        raise InvalidManifest("(document)", "expected a JSON object")
    if "format_version" not in raw:
        raise InvalidManifest("format_version", f"missing; this code reads format {FORMAT_VERSION}")
    if raw["format_version"] != FORMAT_VERSION:
        raise InvalidManifest(
            "format_version", f"{raw['format_version']!r} is not supported (this code reads {FORMAT_VERSION})"
        )
    for name in doc["required"]:
        if name not in raw:
            raise InvalidManifest(name, "missing")
    props = doc["properties"]
    for name in fields if fields is not None else raw:
        if name in raw and name in props:
            validate(raw[name], props[name], name)
    _cross_check(raw)


def validate(value: Any, node: dict[str, Any], path: str) -> None:
    """Check `value` against a schema node (the keywords manifest.schema.json uses); raise InvalidManifest."""
    if "$ref" in node:
        node = _resolve(node["$ref"])
    for sub in node.get("allOf", ()):
        validate(value, sub, path)
    if "const" in node and value != node["const"]:
        raise InvalidManifest(path, f"must be {node['const']!r}, got {value!r}")
    if "enum" in node and value not in node["enum"]:
        raise InvalidManifest(path, f"{value!r} is not one of {node['enum']}")
    if "type" in node and not _is_type(value, node["type"]):
        raise InvalidManifest(path, f"expected {node['type']}, got {type(value).__name__}")
    if isinstance(value, dict):
        for name in node.get("required", ()):
            if name not in value:
                raise InvalidManifest(f"{path}.{name}", "missing")
        if len(value) < node.get("minProperties", 0):
            raise InvalidManifest(path, f"needs at least {node['minProperties']} entries")
        props, extra = node.get("properties", {}), node.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                validate(item, props[key], f"{path}.{key}")
            elif extra is False:
                raise InvalidManifest(f"{path}.{key}", "unknown field")
            elif isinstance(extra, dict):
                validate(item, extra, f"{path}.{key}")
    elif isinstance(value, list):
        if len(value) < node.get("minItems", 0):
            raise InvalidManifest(path, f"needs at least {node['minItems']} items")
        if "items" in node:
            for i, item in enumerate(value):
                validate(item, node["items"], f"{path}[{i}]")
    elif isinstance(value, str):
        if len(value) < node.get("minLength", 0):
            raise InvalidManifest(path, "must not be empty")
        if "pattern" in node and not re.search(node["pattern"], value):
            raise InvalidManifest(path, f"{value!r} does not match {node['pattern']}")
    elif isinstance(value, int | float) and "minimum" in node and value < node["minimum"]:
        raise InvalidManifest(path, f"{value!r} is below {node['minimum']}")


def _resolve(ref: str) -> dict[str, Any]:
    node: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _is_type(value: Any, names: str | list[str]) -> bool:
    for name in [names] if isinstance(names, str) else names:
        if isinstance(value, bool) and name not in ("boolean",):
            continue  # JSON true/false are not numbers
        if isinstance(value, _TYPES[name]):
            return True
    return False


def _cross_check(raw: dict[str, Any]) -> None:
    task, sigs = raw["task"], raw["signatures"]
    if task["signature"] not in sigs:
        raise InvalidManifest("task.signature", f"{task['signature']!r} is not one of the signatures {sorted(sigs)}")
    outputs = sigs[task["signature"]]["outputs"]
    for role in ("probabilities", "logits", "class_id", "score", "embedding"):
        name = task.get(role)
        if name is not None and name not in outputs:
            raise InvalidManifest(f"task.{role}", f"{name!r} is not an output of {task['signature']!r}")
    roles = _TASK_OUTPUTS[task["kind"]]
    if not any(task.get(r) for r in roles):
        raise InvalidManifest("task", f"a {task['kind']} model names at least one of {list(roles)}")
    if task["kind"] == "classification":
        for role in ("probabilities", "logits"):
            name = task.get(role)
            width = outputs[name]["shape"][-1] if name else -1
            if width > 0 and len(raw["labels"]) != width:
                raise InvalidManifest("labels", f"{len(raw['labels'])} labels for {width} classes of {name!r}")
        if not raw["labels"]:
            raise InvalidManifest("labels", "a classification model needs its class names")
