"""EventBridge schedule expressions: ``rate(...)`` and six-field AWS ``cron(...)`` (UTC) and their next fire time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_MONTHS = {
    m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


class ScheduleError(ValueError):
    """An expression the local scheduler cannot evaluate."""


def _field(text: str, lo: int, hi: int, names: dict[str, int] | None = None) -> set[int] | None:
    """Parse one cron field; None means "any" (``*`` or ``?``)."""
    if text in ("*", "?"):
        return None
    if re.search(r"[LW#]", text):
        raise ScheduleError(f"cron field {text!r}: L, W and # are not supported locally")
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1

        def num(s: str) -> int:
            return names[s.upper()] if names and s.upper() in names else int(s)

        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a, b = (num(x) for x in rng.split("-", 1))
        else:
            a = num(rng)
            b = hi if step_s else a
        if not (lo <= a <= hi and lo <= b <= hi):
            raise ScheduleError(f"cron field {text!r} out of range {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return out


class Expression:
    """A parsed ``rate()`` or ``cron()`` expression."""

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        m = re.fullmatch(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)", self.text)
        if m:
            n, unit = int(m.group(1)), m.group(2).rstrip("s")
            self.period: timedelta | None = timedelta(**{f"{unit}s": n})
            return
        m = re.fullmatch(r"cron\((.+)\)", self.text)
        if not m:
            raise ScheduleError(f"unsupported schedule expression {text!r} (rate() or cron() only)")
        parts = m.group(1).split()
        if len(parts) != 6:
            raise ScheduleError(f"cron needs 6 fields (min hour day-of-month month day-of-week year): {text!r}")
        self.period = None
        self.minutes = _field(parts[0], 0, 59)
        self.hours = _field(parts[1], 0, 23)
        self.dom = _field(parts[2], 1, 31)
        self.months = _field(parts[3], 1, 12, _MONTHS)
        self.dow = _field(parts[4], 1, 7, _DAYS)
        self.years = _field(parts[5], 1970, 2199)

    def next_after(self, t: datetime, start: datetime | None = None) -> datetime:
        """The first fire time strictly after ``t`` (rate schedules count periods from ``start``)."""
        if self.period is not None:
            base = start or t
            n = int((t - base) / self.period) + 1
            return base + n * self.period
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        for _ in range(366 * 5):
            aws_dow = (day.weekday() + 1) % 7 + 1
            if (
                (self.years is None or day.year in self.years)
                and (self.months is None or day.month in self.months)
                and (self.dom is None or day.day in self.dom)
                and (self.dow is None or aws_dow in self.dow)
            ):
                for h in sorted(self.hours) if self.hours is not None else range(24):
                    for mi in sorted(self.minutes) if self.minutes is not None else range(60):
                        cand = day.replace(hour=h, minute=mi)
                        if cand > t:
                            return cand
            day += timedelta(days=1)
        raise ScheduleError(f"{self.text} never fires in the next five years")


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)
