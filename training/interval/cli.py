"""`python -m training.interval`: arguments, the run, interval.svg and summary.json, the human summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from training import data
from training.interval import pipeline
from training.interval.plot import svg_plot
from training.interval.rows import InputError, generate_rows, load, parse_duration, resolve_cutoff


def _print_human(summary: dict[str, Any]) -> None:
    est = summary["estimate"]
    train = summary["train"]
    where = "of the digits training split" if train.get("source") == "digits-split" else "before the cutoff"
    print(f"trained on {train['rows']} rows {where} ({train.get('kind')}); cutoff {summary['cutoff']}")
    print(f"{'slice':>5} {'start':>20} {'t (d)':>7} {'rows':>6} {'accuracy':>9} {'seen':>6}")
    for s in summary["slices"]:
        acc = "—" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
        seen = "—" if s.get("seen_share") is None else f"{s['seen_share']:.0%}"
        flag = "" if s["used"] else "  (too few rows, not fitted)"
        print(f"{s['slice']:>5} {s['start']:>20} {s['t_days']:>7.2f} {s['n']:>6} {acc:>9} {seen:>6}{flag}")
    print("fits (best first, by AICc):")
    for f in est["fits"]:
        params = ", ".join(f"{k}={v:.5g}" for k, v in f["params"].items())
        print(f"  {f['model']:<12} {f['formula']:<42} {params:<44} R²={f['r2']:.4f} AICc={f['aicc']:.2f}")
    print(f"chosen: {est['model']}; baseline {est['baseline_accuracy']:.4f}, threshold {est['threshold_accuracy']:.4f}")
    print(est["verdict"])


def main(argv: list[str] | None = None) -> int:
    """CLI: estimate the retraining interval; prints slices, fits, the verdict and the JSON summary."""
    from training import interval as package

    p = argparse.ArgumentParser(prog="python -m training.interval", description=package.__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="scenario folder or JSONL of {key, t|time, x, label}")
    src.add_argument("--generate", action="store_true", help="generate a drift scenario in-process")
    g = p.add_argument_group("in-process scenario (--generate)")
    g.add_argument("--start", default="2026-11-01")
    g.add_argument("--days", type=int, default=30)
    g.add_argument("--per-day", type=int, default=600)
    g.add_argument("--drift-start", type=int, default=10)
    g.add_argument("--ramp-days", type=int, default=5)
    g.add_argument("--kinds", default="noise,contrast,stroke")
    g.add_argument("--swap", default="", help="concept drift: two classes, e.g. 3,8")
    g.add_argument("--swap-from", type=int, default=None)
    g.add_argument("--seed", type=int, default=7)
    p.add_argument("--cutoff", help="'+10d' after the first day, an ISO time or epoch seconds (default: 1/3 in)")
    p.add_argument("--slice", default="1d", help="slice width: 1d, 12h, ... (default 1d)")
    p.add_argument("--tolerated-drop", type=float, default=0.02, help="accuracy drop tolerated (default 0.02)")
    p.add_argument("--min-rows", type=int, default=30, help="slices with fewer rows are not fitted (default 30)")
    p.add_argument("--model", default="digits", help="training spec (training.specs.SPECS), default digits")
    p.add_argument("--epochs", type=int, default=None, help="cap the spec's epochs (early stopping still applies)")
    p.add_argument(
        "--train-on",
        choices=("before-cutoff", "digits-split"),
        default="before-cutoff",
        help="rows before the cutoff (default), or the project's digits training split (disjoint from the held-out "
        "digits the scenario samples, so clean slices are not inputs seen in training)",
    )
    p.add_argument("--out", default="build/retrain-interval", help="folder for interval.svg and summary.json")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    try:
        slice_seconds = parse_duration(args.slice)
        if not 0 < args.tolerated_drop < 1:  # checked before the data is loaded and the model trained
            raise InputError(f"--tolerated-drop {args.tolerated_drop}: expected a fraction between 0 and 1, e.g. 0.02")
        if args.min_rows < 1 or (args.epochs is not None and args.epochs < 1):
            raise InputError("--min-rows and --epochs must be at least 1")
        if args.generate:
            swap = tuple(int(c) for c in args.swap.split(",")) if args.swap else None
            if swap is not None and len(swap) != 2:
                raise InputError(f"--swap {args.swap!r}: expected two classes, e.g. 3,8")
            rows, source = generate_rows(
                start=args.start,
                days=args.days,
                per_day=args.per_day,
                drift_start=args.drift_start,
                ramp_days=args.ramp_days,
                kinds=tuple(k for k in args.kinds.split(",") if k),
                swap=swap,
                swap_from=args.swap_from if swap else None,
                seed=args.seed,
            )
            source = {"scenario": source}
        else:
            rows, source = load(args.data), {"path": str(args.data)}
        cutoff = resolve_cutoff(args.cutoff, rows.t)
        train_rows = None
        if args.train_on == "digits-split":
            s = data.split()
            train_rows = (s.x_train, s.y_train)
        summary = pipeline.run(
            rows,
            pipeline.keras_trainer(args.model, args.epochs),
            cutoff=cutoff,
            slice_seconds=slice_seconds,
            tolerated_drop=args.tolerated_drop,
            min_rows=args.min_rows,
            train_rows=train_rows,
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary["data"].update(source)
    summary["train"]["source"] = args.train_on
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"Accuracy per {args.slice} slice after the cutoff {summary['cutoff']}"
    (out / "interval.svg").write_text(svg_plot(summary["slices"], summary["estimate"], title))
    summary["plot"] = str(out / "interval.svg")
    summary["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _print_human(summary)
    print(json.dumps(summary))
    return 0
