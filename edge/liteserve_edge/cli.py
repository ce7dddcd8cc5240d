"""`python -m liteserve_edge VERB`: threshold (pick it from the calibration curve), fetch, flush, status, agreement."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from liteserve_edge.cloud import CloudClient, CloudError
from liteserve_edge.model import ChecksumMismatch
from liteserve_edge.store import Store
from liteserve_edge.threshold import choose_threshold, format_table, trade_off_table

DEFAULT_MODELS_DIR = "layers/model/models"  # the model layer in the liteserve repository
TOKEN_HELP = "file holding the API's bearer token, e.g. .localcloud/token (default: $LITESERVE_LOCAL_TOKEN)"


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token: the first line of --token-file, else None (CloudClient then reads LITESERVE_LOCAL_TOKEN)."""
    if not args.token_file:
        return None
    return Path(args.token_file).read_text().strip() or None


def _manifest(name: str, endpoint: str | None, models_dir: str, token: str | None = None) -> dict[str, Any]:
    if endpoint:
        client = CloudClient(endpoint, name, token=token)
        raw, _ = client.request("GET", f"/v1/models/{urllib.parse.quote(name)}/artifact/manifest")
        return json.loads(raw)
    return json.loads((Path(models_dir) / name / "manifest.json").read_text())


def model_accuracy(manifest: dict[str, Any]) -> float:
    """Held-out accuracy of the served (int8 when quantized) model, from its manifest."""
    metrics = manifest.get("metrics") or {}
    served = metrics.get("int8") or metrics.get("float") or {}
    if "accuracy" not in served:
        raise ValueError(f"manifest of '{manifest.get('name')}' has no held-out accuracy")
    return float(served["accuracy"])


def cmd_threshold(args: argparse.Namespace) -> int:
    edge = _manifest(args.model, args.endpoint, args.models_dir, _token(args))
    calibration = edge.get("calibration")
    if not calibration:
        print(f"error: the manifest of '{args.model}' has no calibration table", file=sys.stderr)
        return 2
    cloud_acc, cloud_calibration = args.cloud_accuracy, None
    if cloud_acc is None:
        cloud = _manifest(args.cloud_model, args.endpoint, args.models_dir, _token(args))
        cloud_acc, cloud_calibration = model_accuracy(cloud), cloud.get("calibration")
    gap, max_esc = args.target_accuracy_gap, args.max_escalation
    if gap is None and max_esc is None:
        gap = 0.5
    choice = choose_threshold(
        calibration,
        cloud_accuracy=cloud_acc,
        target_accuracy_gap=gap,
        max_escalation=max_esc,
        cloud_calibration=cloud_calibration,
    )
    table = trade_off_table(calibration, cloud_acc, cloud_calibration)
    if args.json:
        print(json.dumps({"choice": vars(choice), "table": table}, indent=2))
    else:
        print(f"edge model {edge['name']}@{edge['version']}, held-out accuracy {model_accuracy(edge):.2%}")
        print(f"cloud model {args.cloud_model}, held-out accuracy {cloud_acc:.2%}")
        print(format_table(table, choice.threshold))
        status = "target met" if choice.target_met else "TARGET NOT MET"
        print(
            f"chosen threshold {choice.threshold:g}: escalates {choice.escalation_rate:.1%}, estimated two-phase "
            f"accuracy {choice.estimated_accuracy:.2%} ({choice.reason}; {status})"
        )
        print(
            "estimate: accepted cases at the edge's measured accuracy; escalated ones at "
            + (
                "the cloud's accuracy on its own hardest cases of the same share (optimistic: its overall accuracy)"
                if cloud_calibration
                else "the cloud's overall accuracy (an upper bound)"
            )
        )
    return 0 if choice.target_met else 3


def cmd_fetch(args: argparse.Namespace) -> int:
    from liteserve_edge.artifact import fetch_model

    try:
        directory = fetch_model(
            args.endpoint, args.model, args.dest, artifact_url=args.artifact_url, token=_token(args)
        )
    except ChecksumMismatch as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 4
    except CloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 5
    print(json.dumps({"model": args.model, "directory": str(directory)}))
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    from liteserve_edge.client import TwoPhaseClient

    with TwoPhaseClient(
        args.edge_dir, args.endpoint, 0.0, cloud_model=args.cloud_model, queue_path=args.queue, token=_token(args)
    ) as client:
        report = client.flush()
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.error is None else 5


def cmd_status(args: argparse.Namespace) -> int:
    store = Store(args.queue)
    try:
        refined = store.outcomes("refined")
        agree = sum(bool(o.agree) for o in refined)
        print(
            json.dumps(
                {
                    "queued": store.pending_count(),
                    "refined": len(refined),
                    "rejected": len(store.outcomes("rejected")),
                    "agreement": agree / len(refined) if refined else None,
                },
                indent=2,
            )
        )
    finally:
        store.close()
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    store = Store(args.queue)
    try:
        outcomes = store.outcomes("refined", unreported=args.unreported)
        for o in outcomes:
            print(json.dumps(o.to_dict()))
        if args.mark_reported:
            store.mark_reported([o.key for o in outcomes])
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m liteserve_edge` and the `liteserve-edge` script."""
    parser = argparse.ArgumentParser(prog="liteserve_edge", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("threshold", help="pick the escalation threshold from the edge model's calibration curve")
    p.add_argument("--target-accuracy-gap", type=float, help="points below the cloud model allowed (default 0.5)")
    p.add_argument("--max-escalation", type=float, help="largest share of instances escalated, e.g. 0.2")
    p.add_argument("--model", default="digits-edge", help="edge model name")
    p.add_argument("--cloud-model", default="digits-cloud", help="cloud model name")
    p.add_argument("--cloud-accuracy", type=float, help="cloud accuracy (default: from its manifest)")
    p.add_argument("--endpoint", help="read the manifests from the deployment instead of --models-dir")
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR, help="folder of <name>/manifest.json")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--token-file", help=TOKEN_HELP)
    p.set_defaults(func=cmd_threshold)

    p = verbs.add_parser("fetch", help="download the edge model and manifest, verifying the sha256")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--model", default="digits-edge")
    p.add_argument("--dest", required=True, help="folder to write manifest.json and the model file into")
    p.add_argument("--artifact-url", help="download the file from this URL (e.g. presigned S3) instead")
    p.add_argument("--token-file", help=TOKEN_HELP)
    p.set_defaults(func=cmd_fetch)

    p = verbs.add_parser("flush", help="replay the offline queue to the cloud model")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--queue", required=True, help="the client's SQLite file")
    p.add_argument("--edge-dir", required=True, help="the edge model's folder")
    p.add_argument("--cloud-model", default="digits-cloud")
    p.add_argument("--token-file", help=TOKEN_HELP)
    p.set_defaults(func=cmd_flush)

    p = verbs.add_parser("status", help="queue depth and edge-vs-cloud agreement of a client's SQLite file")
    p.add_argument("--queue", required=True)
    p.set_defaults(func=cmd_status)

    p = verbs.add_parser("agreement", help="print the keyed edge-vs-cloud records as JSON lines")
    p.add_argument("--queue", required=True)
    p.add_argument("--unreported", action="store_true", help="only records not marked as reported yet")
    p.add_argument("--mark-reported", action="store_true", help="mark the printed records as reported")
    p.set_defaults(func=cmd_agreement)

    args = parser.parse_args(argv)
    return args.func(args)
