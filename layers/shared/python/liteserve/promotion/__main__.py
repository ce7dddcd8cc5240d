"""Promotion commands (the retraining build runs `gate`; people run the rest):

    python -m liteserve.promotion gate --model digits --version 2      # holdout gate -> canary or reject
    python -m liteserve.promotion canary --model digits --version 2 [--weight 0.2]   # skip the gate (manual)
    python -m liteserve.promotion promote --model digits --version 2   # all traffic to a deployed version
    python -m liteserve.promotion rollback --model digits              # stop the canary / previous primary
    python -m liteserve.promotion status --model digits
    python -m liteserve.promotion pull --model digits --version 2 --out layers/model/models   # before `sam deploy`

Names come from the environment: LITESERVE_BUCKET, LITESERVE_PREDICT_FUNCTION, LITESERVE_MODEL_LAYER_NAME.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from botocore.exceptions import ClientError

from liteserve.errors import ModelUnavailable
from liteserve.promotion.service import Promoter, PromotionConfig
from liteserve.runtime import Model


def pull(promoter: Promoter, model: str, version: str, out: Path) -> Path:
    """Fetch a registered version into `out/<model>/`, replacing files only once their checksum is verified."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=out) as tmp:
        folder = promoter.registry.download(model, version, Path(tmp))
        Model(folder)  # refuses files that do not match the manifest's checksum
        target = out / model
        target.mkdir(exist_ok=True)
        for f in folder.iterdir():
            os.replace(f, target / f.name)
    return target


def main(argv: list[str] | None = None) -> int:
    """Run one promotion command; prints its JSON result. Exit 2 on a usage or state error."""
    p = argparse.ArgumentParser(prog="python -m liteserve.promotion", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("gate", "canary", "promote", "rollback", "status", "pull"):
        s = sub.add_parser(name)
        s.add_argument("--model", required=True)
        if name in ("gate", "canary", "promote", "pull"):
            s.add_argument("--version", required=True)
        if name == "canary":
            s.add_argument("--weight", type=float, default=None)
        if name == "pull":
            s.add_argument("--out", required=True, help="model root receiving <model>/{model.tflite,manifest.json}")
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
        elif args.cmd == "pull":
            out = {"pulled": str(pull(promoter, args.model, args.version, Path(args.out)))}
        else:
            out = promoter.status(args.model)
    except (LookupError, RuntimeError, ValueError, ModelUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ClientError as e:  # AWS refused (missing function, alias, permission): say what, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
