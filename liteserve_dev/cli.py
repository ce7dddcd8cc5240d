"""`liteserve-model package SOURCE --data FILE --name NAME ...`: bring your own model to liteserve.

Converts a SavedModel directory or `.keras` file to TF Lite (int8 by default; needs TensorFlow, i.e. the training
venv: `make package-model ARGS="..."`), or takes an existing `.tflite` as supplied (no TensorFlow needed), checks
fidelity against the source on the data, computes the baseline and writes `<out>/<name>/{model.tflite,manifest.json}`.
Prints one JSON summary line; on any error prints one line to stderr, writes nothing and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from liteserve_dev.packaging import PackagingError
from liteserve_dev.packaging.fidelity import Bounds
from liteserve_dev.packaging.tasks import KINDS

QUANTIZE = ("int8", "float16", "dynamic", "none")
DEFAULT_OUT = "layers/model/models"


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="liteserve-model", description=__doc__.split("\n\n")[0])
    verbs = p.add_subparsers(dest="verb", required=True)
    pk = verbs.add_parser("package", help="package a model for serving", description=__doc__)
    pk.add_argument("source", help="a SavedModel directory, a .keras file or a .tflite file")
    pk.add_argument("--data", required=True, help=".npz (one array per input), .jsonl (one field per input) or .csv")
    pk.add_argument("--name", required=True, help="the model's name (its URL and folder name)")
    pk.add_argument("--version", default="1")
    pk.add_argument("--task", choices=KINDS, help="what the model does (inferred when obvious)")
    pk.add_argument("--labels", type=Path, help="class names: a text file, one per line, or a JSON list")
    pk.add_argument(
        "--quantize",
        choices=QUANTIZE,
        help="int8 (default for SavedModel/.keras), float16, dynamic, none; a .tflite is packaged as supplied (none)",
    )
    pk.add_argument("--signatures", nargs="+", metavar="KEY", help="signatures to keep (default: all)")
    pk.add_argument("--label-field", help="the data's label field / column (default: 'label' when present)")
    pk.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"models directory (default {DEFAULT_OUT})")
    pk.add_argument(
        "--retrain",
        metavar="MODULE:FUNCTION",
        help="the model's retraining entry point (recorded in the manifest; without it the model is not retrainable)",
    )
    pk.add_argument(
        "--retrain-data",
        metavar="LOCATION",
        help="its training data: a path relative to the repository (the retraining build's source) or s3://bucket/key "
        "(default: the --data path)",
    )
    b = Bounds()
    pk.add_argument("--min-agreement", type=float, default=b.min_agreement, help="classification top-1 agreement")
    pk.add_argument("--max-prob-delta", type=float, default=b.max_prob_delta, help="classification max |Δprob|")
    pk.add_argument("--max-rel-error", type=float, default=b.max_rel_error, help="regression max relative error")
    pk.add_argument("--min-cosine", type=float, default=b.min_cosine, help="embedding min cosine similarity")
    return p


def read_labels(path: Path) -> list[str]:
    """Class names from a JSON list or a text file with one name per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PackagingError(f"--labels {path}: {e.strerror}") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as e:
            raise PackagingError(f"--labels {path}: not a JSON list ({e.msg})") from None
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names or not all(isinstance(n, str) for n in names):
        raise PackagingError(f"--labels {path}: expected a non-empty list of class names")
    return names


def retrain_block(args: argparse.Namespace) -> dict[str, str] | None:
    """The manifest's `retrain` block from --retrain / --retrain-data (PackagingError for a malformed entry point)."""
    if args.retrain is None:
        if args.retrain_data is not None:
            raise PackagingError("--retrain-data needs --retrain module:function")
        return None
    from liteserve_dev.retraining import ENTRY_POINT

    if not ENTRY_POINT.match(args.retrain):
        raise PackagingError(f"--retrain {args.retrain!r}: expected module:function (e.g. mypkg.train:retrain)")
    block = {"entry_point": args.retrain, "data": args.retrain_data or args.data}
    if args.label_field:
        block["label_field"] = args.label_field
    return block


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 refused, 2 usage)."""
    args = parser().parse_args(argv)
    try:
        from liteserve_dev.packaging.package import Options, package, write
    except ModuleNotFoundError as e:
        if e.name != "liteserve":
            raise
        print("liteserve-model: error: the shared package is not importable: set PYTHONPATH=layers/shared/python "
              "(make package-model does)", file=sys.stderr)  # fmt: skip
        return 1
    try:
        bounds = Bounds(
            min_agreement=args.min_agreement,
            max_prob_delta=args.max_prob_delta,
            max_rel_error=args.max_rel_error,
            min_cosine=args.min_cosine,
        )
        options = Options(
            name=args.name,
            version=args.version,
            task=args.task,
            labels=read_labels(args.labels) if args.labels else None,
            quantize=args.quantize,
            signatures=args.signatures,
            label_field=args.label_field,
            bounds=bounds,
            retrain=retrain_block(args),
        )
        packaged = package(args.source, args.data, options)
        target = write(packaged, args.out)
    except PackagingError as e:
        print(f"liteserve-model: error: {e}", file=sys.stderr)
        return 1
    m = packaged.manifest
    summary = {
        "name": m["name"],
        "version": m["version"],
        "path": str(target),
        "task": m["task"]["kind"],
        "quantization": m["quantization"]["type"],
        "all_signatures_int8": m["quantization"]["all_signatures_int8"],
        "fidelity": m["fidelity"][m["task"]["kind"]],
        "metrics": m.get("metrics", {}),
        "size_bytes": m["build"]["size_bytes"],
        "seconds": {k: round(v, 2) for k, v in packaged.seconds.items()},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
