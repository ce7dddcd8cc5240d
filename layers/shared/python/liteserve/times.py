"""Time formats shared by every area."""

from __future__ import annotations

import time


def iso(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a Z, to the second (`2026-12-03T04:05:06Z`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
