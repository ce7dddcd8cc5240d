"""liteserve's local cloud: the SAM template running on this machine with no Docker (moto server + local Lambda).

The names below load lazily, so that ``localcloud`` CLI verbs that need no boto3 start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud, MotoServer
    from localcloud.runtime import InvocationError
    from localcloud.template import Template, TemplateError

__all__ = ["InvocationError", "LocalCloud", "MotoServer", "Template", "TemplateError"]
_WHERE = {
    "LocalCloud": "cloud",
    "MotoServer": "cloud",
    "InvocationError": "runtime",
    "Template": "template",
    "TemplateError": "template",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"localcloud.{_WHERE[name]}"), name)
    raise AttributeError(name)
