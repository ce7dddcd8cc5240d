"""The two-phase story for demos: stream keyed instances through the client, take the cloud offline halfway
(through a callback: e.g. stop the local API), show provisional answers and the queue growing, bring it back, flush,
and print the refined answers and the threshold trade-off table."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from liteserve_edge.client import TwoPhaseClient
from liteserve_edge.model import EdgeModel
from liteserve_edge.threshold import choose_threshold, format_table, trade_off_table


def run_stream(
    endpoint: str,
    edge_dir: str | Path,
    instances: Sequence[Mapping[str, Any]],
    *,
    go_offline: Callable[[], None],
    go_online: Callable[[], None],
    queue_path: str | Path,
    labels: Mapping[Any, int] | None = None,
    cloud_manifest: Mapping[str, Any] | None = None,
    threshold: float | None = None,
    chunk: int = 20,
    emit: Callable[[str], None] = print,
    **client_options: Any,
) -> dict[str, Any]:
    """Run the story and return its summary. `labels` (key -> true class) adds accuracy lines.

    Without `threshold`, it is chosen from the calibration curve (within 0.5 points of the cloud model, whose
    manifest gives its accuracy, escalating at most 20 %).
    """
    edge = EdgeModel.load(edge_dir)
    cloud_acc = cloud_calibration = None
    if cloud_manifest is not None:
        metrics = cloud_manifest.get("metrics") or {}
        cloud_acc = (metrics.get("int8") or metrics.get("float") or {}).get("accuracy")
        cloud_calibration = cloud_manifest.get("calibration")
    if threshold is None:
        if cloud_acc is None:
            raise ValueError("give a threshold or the cloud model's manifest")
        choice = choose_threshold(
            edge.calibration,
            cloud_accuracy=cloud_acc,
            target_accuracy_gap=0.5,
            max_escalation=0.2,
            cloud_calibration=cloud_calibration,
        )
        threshold = choice.threshold
    emit(f"== two-phase prediction: edge {edge.name}@{edge.version} ({edge.sha256[:12]}), threshold {threshold:g}")
    emit(format_table(trade_off_table(edge.calibration, cloud_acc, cloud_calibration), threshold))

    answers: dict[Any, Any] = {}
    offline_at = len(instances) // 2
    with TwoPhaseClient(edge, endpoint, threshold, queue_path=queue_path, **client_options) as client:
        for start in range(0, len(instances), chunk):
            if start >= offline_at and start - chunk < offline_at:
                go_offline()
                emit("-- cloud OFFLINE")
            out = client.predict(list(instances[start : start + chunk]))
            answers.update({p.key: p for p in out})
            emit(
                f"instances {start:4d}-{start + len(out) - 1:4d}: cloud {sum(p.phase == 'cloud' for p in out):2d}  "
                f"provisional {sum(p.provisional for p in out):2d}  capped {sum(p.capped for p in out):2d}  "
                f"queue depth {client.queue_depth}"
            )
        go_online()
        emit("-- cloud back ONLINE: flushing the queue")
        report = client.flush()
        for o in report.refined:
            line = (
                f"refined {json.dumps(o.key)}: edge {o.edge_class} ({o.edge_confidence:.3f}) -> cloud {o.cloud_class}"
            )
            line += f" ({o.cloud_confidence:.3f}){'' if o.agree else '  DISAGREE'}"
            if labels is not None and o.key in labels:
                line += f"  true {labels[o.key]}"
            emit(line)
        summary = client.agreement_summary()
    final = {k: p.class_id for k, p in answers.items()}
    final.update({o.key: o.cloud_class for o in report.refined})
    result: dict[str, Any] = {
        "threshold": threshold,
        "instances": len(instances),
        "answered_by_cloud_online": sum(p.phase == "cloud" for p in answers.values()),
        "provisional": sum(p.provisional for p in answers.values()),
        "refined_after_flush": len(report.refined),
        "queue_left": report.remaining,
        "edge_cloud_agreement": summary["agreement"],
    }
    if labels is not None:
        keys = [k for k in answers if k in labels]
        result["accuracy_before_flush"] = sum(answers[k].class_id == labels[k] for k in keys) / len(keys)
        result["accuracy_after_flush"] = sum(final[k] == labels[k] for k in keys) / len(keys)
        result["edge_only_accuracy"] = sum(answers[k].edge_class_id == labels[k] for k in keys) / len(keys)
    emit(json.dumps(result, indent=2))
    return result
