"""CLI: `python -m training --out layers/model/models [--only NAME ...] [--version V]` builds the models."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    """Build every spec (or the `--only` ones) on the digits split; prints one JSON summary line per model. Writes
    the split's training rows as the models' declared retraining data (training.digits)."""
    from training import data, digits
    from training.specs import SPECS

    p = argparse.ArgumentParser(prog="python -m training", description=main.__doc__)
    p.add_argument("--out", default="layers/model/models", help="directory receiving <name>/{model.tflite,manifest}")
    p.add_argument("--float-out", default="training/artifacts", help="directory receiving <name>/float.tflite")
    p.add_argument("--only", nargs="*", choices=sorted(SPECS), help="build only these models")
    p.add_argument("--version", default="1")
    args = p.parse_args(argv)

    from training.build import build_model

    s = data.split()
    digits.write_training_data(s)
    for name in args.only or list(SPECS):
        m = build_model(
            SPECS[name],
            s.x_train,
            s.y_train,
            s.x_test,
            s.y_test,
            Path(args.out),
            args.version,
            float_dir=Path(args.float_out),
            data_block=data.data_info(s),
            retrain=digits.retrain_block(),
        )
        summary = {"name": name, **m["metrics"], **m["build"], "params": m["architecture"]["params"]}
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
