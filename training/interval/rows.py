"""Time-stamped labelled rows for the interval estimate: durations and times parsed, rows loaded from a JSONL file
or a scenario folder (`liteserve_dev.scenario`), or generated in-process from a drift scenario."""

from __future__ import annotations

import gzip
import json
import math
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training import data

DAY = 86400.0
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


class InputError(ValueError):
    """Bad data or arguments; the CLI prints the message and exits with status 2."""


@dataclass(frozen=True)
class Rows:
    """Time-stamped labelled rows: epoch seconds, features float32 [n, F], class indices."""

    keys: list[str]
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray


def parse_duration(text: str) -> float:
    """Seconds in '1d', '12h', '90m', '3600s', '1.5w' or a bare number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smhdw]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise InputError(f"duration {text!r}: expected a positive number with an optional unit s, m, h, d or w")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_time(value: Any) -> float:
    """Epoch seconds from a number, a numeric string or an ISO 8601 date/time (naive means UTC)."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"time {value!r}: expected epoch seconds or an ISO 8601 date/time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InputError(f"time {value!r} is not finite")
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"time {text!r}: expected epoch seconds or an ISO 8601 date/time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def resolve_cutoff(spec: str | None, t: np.ndarray) -> float:
    """The cut-off in epoch seconds: '+10d' after the first row's UTC midnight, an absolute time, or (None) the
    first third of the data's days."""
    origin = math.floor(float(np.min(t)) / DAY) * DAY
    if spec is None:
        span_days = max(1, math.ceil((float(np.max(t)) - origin) / DAY))
        return origin + max(1, span_days // 3) * DAY
    if spec.strip().startswith("+"):
        return origin + parse_duration(spec.strip()[1:])
    return parse_time(spec)


def _label_index(value: Any, where: str) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or text not in data.LABELS:
        raise InputError(f"{where}: label {value!r} is not one of {', '.join(data.LABELS)}")
    return data.LABELS.index(text)


def _features(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != data.N_FEATURES:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise InputError(f"{where}: 'x' must be a list of {data.N_FEATURES} numbers, got {got}")
    try:
        x = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: 'x' must hold numbers only") from None
    if not np.all(np.isfinite(x)):
        raise InputError(f"{where}: 'x' holds a non-finite value")
    return x.astype(np.float32)


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(doc, dict):
                raise InputError(f"{path}:{n}: expected a JSON object")
            yield n, doc


def _rows(keys: list[str], t: list[float], x: list[np.ndarray], y: list[int], source: str) -> Rows:
    if not keys:
        raise InputError(f"{source}: no rows")
    order = np.argsort(np.asarray(t), kind="stable")
    return Rows(
        [keys[i] for i in order],
        np.asarray(t, dtype=np.float64)[order],
        np.stack(x)[order],
        np.asarray(y, dtype=np.int64)[order],
    )


def load_jsonl(path: Path) -> Rows:
    """Rows from a JSONL (optionally .gz) file of `{"key", "t" | "time", "x", "label"}` objects."""
    keys: list[str] = []
    t: list[float] = []
    x: list[np.ndarray] = []
    y: list[int] = []
    seen: dict[str, int] = {}
    for n, doc in _json_lines(path):
        where = f"{path}:{n}"
        missing = [f for f in ("key", "x", "label") if f not in doc] + ([] if "t" in doc or "time" in doc else ["t"])
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}")
        key = str(doc["key"])
        if key in seen:
            raise InputError(f"{where}: key {key!r} repeats line {seen[key]}")
        seen[key] = n
        try:
            stamp = parse_time(doc.get("t", doc.get("time")))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        keys.append(key)
        t.append(stamp)
        x.append(_features(doc["x"], where))
        y.append(_label_index(doc["label"], where))
    return _rows(keys, t, x, y, str(path))


def load_scenario_dir(path: Path) -> Rows:
    """Rows from a `liteserve_dev.scenario` folder: time and label from timeline.jsonl, inputs by key from
    requests/**/*.json (TF Serving keyed bodies) and batch/*.jsonl."""
    timeline = path / "timeline.jsonl"
    if not timeline.is_file():
        raise InputError(f"{path}: not a scenario folder (no timeline.jsonl)")
    inputs: dict[str, np.ndarray] = {}
    for file in sorted((path / "requests").rglob("*.json")):
        try:
            body = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}: not JSON ({exc.msg})") from None
        for i, inst in enumerate(body.get("instances", []) if isinstance(body, dict) else []):
            if isinstance(inst, dict) and "key" in inst:
                inputs[str(inst["key"])] = _features(inst.get("x"), f"{file}: instance {i}")
    for file in sorted((path / "batch").glob("*.jsonl*")):
        for n, doc in _json_lines(file):
            if "key" in doc:
                inputs[str(doc["key"])] = _features(doc.get("x"), f"{file}:{n}")
    keys: list[str] = []
    t: list[float] = []
    x: list[np.ndarray] = []
    y: list[int] = []
    unmatched = 0
    for n, doc in _json_lines(timeline):
        key = str(doc.get("key"))
        if key not in inputs:
            unmatched += 1
            continue
        try:
            t.append(parse_time(doc.get("time")))
        except InputError as exc:
            raise InputError(f"{timeline}:{n}: {exc}") from None
        keys.append(key)
        x.append(inputs[key])
        y.append(_label_index(doc.get("label"), f"{timeline}:{n}"))
    if unmatched and not keys:
        raise InputError(f"{path}: none of the {unmatched} timeline keys has an input under requests/ or batch/")
    return _rows(keys, t, x, y, str(path))


def load(path: str | Path) -> Rows:
    """A scenario folder or a JSONL file of labelled time-stamped rows."""
    p = Path(path)
    if p.is_dir():
        return load_scenario_dir(p)
    if p.is_file():
        return load_jsonl(p)
    raise InputError(f"{path}: no such file or folder")


def _scenario_module() -> types.ModuleType:
    """`liteserve_dev.scenario`, imported only when rows are generated."""
    from liteserve_dev import scenario

    return scenario


def generate_rows(**params: Any) -> tuple[Rows, dict[str, Any]]:
    """An in-process drift scenario (`Scenario(**params)`) on the held-out digits, as Rows plus its parameters."""
    scenario_mod = _scenario_module()
    sc = scenario_mod.Scenario(**params)
    unknown = set(sc.kinds) - set(scenario_mod.KINDS)
    if unknown or sc.days < 1 or sc.per_day < 1:
        raise InputError(
            f"scenario: days and per-day must be at least 1 and kinds a subset of {', '.join(scenario_mod.KINDS)} "
            f"(got days={sc.days}, per-day={sc.per_day}, unknown kinds {sorted(unknown)})"
        )
    s = data.split()
    days = scenario_mod.generate(s.x_test, s.y_test, sc)
    rows = Rows(
        [k for d in days for k in d["keys"]],
        np.concatenate([d["times"] for d in days]).astype(np.float64),
        np.concatenate([d["x"] for d in days]).astype(np.float32),
        np.concatenate([d["y"] for d in days]).astype(np.int64),
    )
    return rows, {**vars(sc), "kinds": list(sc.kinds)}
