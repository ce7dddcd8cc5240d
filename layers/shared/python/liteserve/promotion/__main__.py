"""Promotion commands (the retraining build runs `gate`; people run the rest):

    python -m liteserve.promotion gate --model digits --version 2      # holdout gate -> canary or reject
    python -m liteserve.promotion canary --model digits --version 2 [--weight 0.2]   # skip the gate (manual)
    python -m liteserve.promotion promote --model digits --version 2   # all traffic to a deployed version
    python -m liteserve.promotion rollback --model digits              # stop the canary / previous primary
    python -m liteserve.promotion status --model digits

Names come from the environment: LITESERVE_BUCKET, LITESERVE_PREDICT_FUNCTION, LITESERVE_MODEL_LAYER_NAME.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from liteserve.promotion.service import Promoter, PromotionConfig


def main(argv: list[str] | None = None) -> int:
    """Run one promotion command; prints its JSON result. Exit 2 on a usage or state error."""
    p = argparse.ArgumentParser(prog="python -m liteserve.promotion", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("gate", "canary", "promote", "rollback", "status"):
        s = sub.add_parser(name)
        s.add_argument("--model", required=True)
        if name in ("gate", "canary", "promote"):
            s.add_argument("--version", required=True)
        if name == "canary":
            s.add_argument("--weight", type=float, default=None)
    args = p.parse_args(argv)
    promoter = Promoter(PromotionConfig.from_env())
    try:
        out: Any
        if args.cmd == "gate":
            out = promoter.gate(args.model, args.version).as_dict()
        elif args.cmd == "canary":
            out = promoter.canary_manual(args.model, args.version, args.weight)
        elif args.cmd == "promote":
            out = promoter.promote(args.model, args.version)
        elif args.cmd == "rollback":
            out = promoter.rollback(args.model)
        else:
            out = promoter.status(args.model)
    except (LookupError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
