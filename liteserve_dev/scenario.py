"""A deterministic drift scenario from the digits data: time-stamped keyed traffic with a clean period, then
covariate drift growing day by day (noise, fading contrast, thicker strokes) and, optionally, concept drift
(two classes' labels swapped from a given day). Writes request files, batch files and delayed label files.

    python -m liteserve_dev.scenario --out /tmp/scenario --days 20 --drift-start 10

Pure numpy once the digits are loaded; the CLI loads them with training.data (scikit-learn, dev venv only).
"""

from __future__ import annotations

import argparse
import calendar
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

KINDS = ("noise", "contrast", "stroke")


@dataclass(frozen=True)
class Scenario:
    """Parameters of a scenario; the same parameters always give the same traffic."""

    start: str = "2026-11-01"  # day 0 (UTC)
    days: int = 20
    per_day: int = 600
    drift_start: int = 10  # first drifted day; days before it are clean
    ramp_days: int = 5  # severity grows linearly from 1/ramp_days to 1 over these days
    kinds: tuple[str, ...] = KINDS
    swap: tuple[int, int] | None = None  # concept drift: these two classes' labels are exchanged ...
    swap_from: int | None = None  # ... from this day on
    label_delay_hours: float = 6.0
    batch_share: float = 0.2  # share of each day's traffic that arrives as a batch file instead of requests
    seed: int = 7

    def severity(self, day: int) -> float:
        """0 before the drift starts, then growing linearly to 1."""
        if day < self.drift_start:
            return 0.0
        return min(1.0, (day - self.drift_start + 1) / max(self.ramp_days, 1))

    def day_start(self, day: int) -> float:
        """Epoch seconds of the day's midnight (UTC)."""
        y, m, d = (int(p) for p in self.start.split("-"))
        return float(calendar.timegm((y, m, d, 0, 0, 0))) + 86400 * day


def corrupt(x: np.ndarray, severity: float, rng: np.random.Generator, kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """Digits (n, 64) in [0, 1] with the scenario's covariate shift at `severity` in [0, 1]."""
    if severity <= 0:
        return x.astype(np.float32)
    out = np.asarray(x, dtype=np.float64)
    if "stroke" in kinds:  # thicker strokes: blend with the 3x3 maximum (a dilation of the 8x8 image)
        img = out.reshape(-1, 8, 8)
        padded = np.pad(img, ((0, 0), (1, 1), (1, 1)))
        dilated = np.max([padded[:, i : i + 8, j : j + 8] for i in range(3) for j in range(3)], axis=0)
        out = ((1 - severity) * img + severity * dilated).reshape(-1, 64)
    if "contrast" in kinds:  # faded ink on a greyer background
        out = out * (1 - 0.5 * severity) + 0.2 * severity
    if "noise" in kinds:
        out = out + rng.normal(0.0, 0.25 * severity, size=out.shape)
    # The served values keep the data set's grid (multiples of 1/16), as a real 4-bit sensor would.
    return (np.round(np.clip(out, 0.0, 1.0) * 16) / 16).astype(np.float32)


def generate(x: np.ndarray, y: np.ndarray, scenario: Scenario) -> list[dict[str, Any]]:
    """One dict per day: keys, times (sorted epoch seconds), inputs, true labels, severity, batch mask."""
    rng = np.random.default_rng(scenario.seed)
    days = []
    for day in range(scenario.days):
        rows = rng.integers(0, len(x), size=scenario.per_day)
        offsets = np.sort(rng.uniform(0, 86400, size=scenario.per_day))
        severity = scenario.severity(day)
        labels = y[rows].copy()
        if scenario.swap is not None and scenario.swap_from is not None and day >= scenario.swap_from:
            a, b = scenario.swap
            labels = np.where(labels == a, b, np.where(labels == b, a, labels))
        date = time.strftime("%Y-%m-%d", time.gmtime(scenario.day_start(day)))
        days.append(
            {
                "day": day,
                "date": date,
                "severity": severity,
                "keys": [f"{date}-{i:06d}" for i in range(scenario.per_day)],
                "times": scenario.day_start(day) + offsets,
                "x": corrupt(x[rows], severity, rng, scenario.kinds),
                "y": labels,
                "batch": rng.uniform(size=scenario.per_day) < scenario.batch_share,
            }
        )
    return days


def write(out: str | Path, days: list[dict[str, Any]], scenario: Scenario, request_size: int = 100) -> dict[str, Any]:
    """Files under `out`: requests/<date>/<hh>-<n>.json (TF Serving keyed bodies), batch/<date>.jsonl (keyed rows,
    for incoming/), labels/<arrival date>/<hh>.jsonl (`{key, label}`, label_delay_hours after the prediction),
    timeline.jsonl (key, time, day, severity, label) and scenario.json."""
    out = Path(out)
    counts = {"requests": 0, "request_files": 0, "batch_rows": 0, "labels": 0}
    labels: dict[str, list[bytes]] = {}
    with open(_mk(out / "timeline.jsonl"), "wb") as timeline:
        for d in days:
            online = np.flatnonzero(~d["batch"])
            hours = (d["times"][online] - scenario.day_start(d["day"])) // 3600
            for hour in np.unique(hours):
                idx = online[hours == hour]
                for n, start in enumerate(range(0, len(idx), request_size)):
                    chunk = idx[start : start + request_size]
                    body = {"instances": [{"key": d["keys"][i], "x": d["x"][i]} for i in chunk]}
                    path = _mk(out / "requests" / d["date"] / f"{int(hour):02d}-{n}.json")
                    path.write_bytes(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
                    counts["requests"] += len(chunk)
                    counts["request_files"] += 1
            batch = np.flatnonzero(d["batch"])
            if len(batch):
                rows = b"".join(
                    orjson.dumps({"key": d["keys"][i], "x": d["x"][i]}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
                    for i in batch
                )
                _mk(out / "batch" / f"{d['date']}.jsonl").write_bytes(rows)
                counts["batch_rows"] += len(batch)
            for i, key in enumerate(d["keys"]):
                arrival = d["times"][i] + scenario.label_delay_hours * 3600
                name = time.strftime("%Y-%m-%d/%H", time.gmtime(arrival))
                labels.setdefault(name, []).append(orjson.dumps({"key": key, "label": str(int(d["y"][i]))}) + b"\n")
                timeline.write(
                    orjson.dumps(
                        {
                            "key": key,
                            "time": round(float(d["times"][i]), 3),
                            "day": d["day"],
                            "severity": d["severity"],
                            "batch": bool(d["batch"][i]),
                            "label": int(d["y"][i]),
                        }
                    )
                    + b"\n"
                )
    for name, lines in sorted(labels.items()):
        _mk(out / "labels" / f"{name}.jsonl").write_bytes(b"".join(lines))
        counts["labels"] += len(lines)
    meta = {"scenario": asdict(scenario), "counts": counts}
    (out / "scenario.json").write_text(json.dumps(meta, indent=2))
    return meta


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> None:
    """CLI: generate a scenario from the digits held-out split (training.data, dev venv)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    defaults = Scenario()
    for name in ("start", "days", "per_day", "drift_start", "ramp_days", "label_delay_hours", "seed"):
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {KINDS}")
    parser.add_argument("--swap", default="", help="concept drift: two classes, e.g. 3,8")
    parser.add_argument("--swap-from", type=int, default=None)
    args = parser.parse_args(argv)
    from training.data import split

    s = split()
    swap = tuple(int(c) for c in args.swap.split(",")) if args.swap else None
    scenario = Scenario(
        start=args.start,
        days=args.days,
        per_day=args.per_day,
        drift_start=args.drift_start,
        ramp_days=args.ramp_days,
        kinds=tuple(k for k in args.kinds.split(",") if k),
        swap=swap,  # type: ignore[arg-type]
        swap_from=args.swap_from if swap else None,
        label_delay_hours=args.label_delay_hours,
        seed=args.seed,
    )
    meta = write(args.out, generate(s.x_test, s.y_test, scenario), scenario)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
