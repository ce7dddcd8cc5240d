"""Keyed prediction: a client key travels with each instance, never reaches the model, and comes back with its
prediction, so outputs can be joined to inputs however the work was distributed."""

from __future__ import annotations

import os
from typing import Any

from liteserve import settings
from liteserve.errors import BadRequest

Key = str | int


def key_field() -> str:
    """The instance field that carries the key ($LITESERVE_KEY_FIELD, default `key`)."""
    return os.environ.get(settings.KEY_FIELD, "key")


def check_key(value: Any, where: str) -> Key:
    """A key must be a non-empty string or an integer; it is returned unchanged."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"{where}: key must be a string or an integer, got {type(value).__name__}")
    if isinstance(value, str) and not value:
        raise BadRequest(f"{where}: key must not be empty")
    return value


def check_keys(keys: list[Any], what: str = "instance") -> list[Key]:
    """Validate every key and reject repeats, naming both positions."""
    seen: dict[Key, int] = {}
    for index, value in enumerate(keys):
        key = check_key(value, f"{what} {index}")
        first = seen.setdefault(key, index)
        if first != index:
            raise BadRequest(f"{what} {index}: key {key!r} repeats {what} {first}; keys must be unique in a request")
    return keys
