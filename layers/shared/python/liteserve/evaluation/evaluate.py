"""Scheduled evaluation: join the window's predictions with their labels per model version, compute metrics and
drift, write the report, publish EMF metrics and, when the policy says so, request one retraining per window.

`evaluate_group` is pure; `Evaluator` binds it to S3 (prediction log, reports), DynamoDB (labels, decisions) and
EventBridge.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import boto3
import numpy as np
import orjson
from botocore.exceptions import ClientError

from liteserve import settings
from liteserve.adapters import EventBus, ObjectStore
from liteserve.evaluation.drift import inputs_drift, output_drift, prediction_drift
from liteserve.evaluation.edge import EDGE_PREFIX, agreement_report
from liteserve.evaluation.labels import LabelStore
from liteserve.evaluation.metrics import classification_report, regression_report
from liteserve.evaluation.policy import Decision, RetrainPolicy, decide
from liteserve.evaluation.quality import error_trend, inputs_quality, metric_trend
from liteserve.evaluation.report import render_html
from liteserve.evaluation.task import Task, numeric_label, task_metric
from liteserve.manifest import Manifest
from liteserve.ports import Claims, Events, Labels, Objects, Routing
from liteserve.records import BATCH_PREFIX, ONLINE_PREFIX, Signatures, hour_path, latest_per_key, read_object
from liteserve.registry import Registry
from liteserve.times import iso

logger = logging.getLogger(__name__)
RESEND_AFTER_S = 900  # a claimed window whose event was never marked sent is re-sent by a later run after this


class Promoter(Protocol):
    """What the evaluator asks of the promoter (`liteserve.promotion.service.Promoter`, which the evaluate handler
    passes in: evaluation imports nothing of promotion): promote or roll back a running canary from the scores each
    version earned since the canary started. Returns the verdict (its `as_dict()` goes in the report) or None."""

    def review(self, model: str, since_canary: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class EvaluationConfig:
    """Names and the window, from the environment (see template.yaml)."""

    bucket: str
    labels_table: str
    state_table: str
    event_bus: str = "default"
    model_root: str = "/opt/models"
    lookback_hours: float = 24.0
    align_seconds: int = 3600
    key_field: str = "key"
    history: int = 48

    @classmethod
    def from_env(cls) -> EvaluationConfig:
        """LITESERVE_BUCKET, LITESERVE_LABELS_TABLE, LITESERVE_EVALUATIONS_TABLE, LITESERVE_EVAL_LOOKBACK_HOURS..."""
        env = os.environ
        return cls(
            bucket=env[settings.BUCKET],
            labels_table=env[settings.LABELS_TABLE],
            state_table=env[settings.EVALUATIONS_TABLE],
            event_bus=env.get(settings.EVENT_BUS, "default"),
            model_root=env.get(settings.MODEL_ROOT, "/opt/models"),
            lookback_hours=float(env.get(settings.EVAL_LOOKBACK_HOURS, 24)),
            align_seconds=int(env.get(settings.EVAL_ALIGN_SECONDS, 3600)),
            key_field=env.get(settings.KEY_FIELD, "key"),
        )


@dataclass(frozen=True)
class Window:
    """Predictions made in [start, end]; `id` (end floored to the alignment) names the window for the report
    folder and the once-per-window retrain claim, so duplicate or repeated schedule deliveries share it."""

    start: float
    end: float
    id: str
    lookback_hours: float

    @classmethod
    def at(cls, fire_time: float, lookback_hours: float, align_seconds: int) -> Window:
        """The window of a schedule fire at `fire_time` (epoch seconds)."""
        aligned = fire_time - fire_time % align_seconds
        # Event times have whole seconds: the fire's own second belongs to the window.
        end = float(int(fire_time)) + 1.0
        return cls(end - lookback_hours * 3600, end, iso(aligned), lookback_hours)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "start_iso": iso(self.start),
            "end_iso": iso(self.end),
            "lookback_hours": self.lookback_hours,
        }


def evaluate_group(
    records: list[dict[str, Any]],
    labels: dict[str, str],
    manifest: Manifest,
    policy: RetrainPolicy,
    past: list[tuple[str, float]] | None = None,
    extra_findings: list[str] | None = None,
) -> dict[str, Any]:
    """Task metrics, drift of every input and of the task's output, label-free data quality and the policy's
    decision for one model version's records in a window; `past` is the version's trend metric (accuracy of a
    classifier, RMSE of a regression; see TREND_METRIC) in earlier reports (window id, value), oldest first.

    What is measured follows the manifest's task (see `Task`): a classifier's accuracy and calibration, a
    regression's errors against numeric labels, an embedding's drift alone. Only answers of the task's signature
    are evaluated: the same key may also have been sent to another signature, which must not replace them."""
    task = Task.of(manifest)
    answered = [r for r in records if task.answers(r)]
    other_signatures = len(records) - len(answered)
    records = latest_per_key(answered)
    inputs, readable = task.input_arrays(records)
    rows = int(readable.sum())
    drift = inputs_drift(inputs, task.input_baselines, policy.drift, rows)
    quality = inputs_quality(inputs, task.input_baselines, policy.quality, rows)
    keyed = [(i, labels.get(str(r["key"]))) for i, r in enumerate(records) if r.get("key") is not None]
    joined = [(i, lab) for i, lab in keyed if lab is not None]
    scored = {"classification": _classification, "regression": _regression}.get(task.kind, _unlabelled)
    part = scored(task, manifest, records, joined, policy)
    metrics = part["metrics"]
    trend = None
    if task.kind == "classification":
        trend = metric_trend(past or [], metrics["accuracy"], policy.trend_reports, policy.trend_max_drop)
    elif task.kind == "regression":
        trend = error_trend(past or [], metrics["rmse"], policy.trend_reports, policy.trend_max_rmse_increase)
    decision = decide(
        policy,
        part["labelled"],
        metrics.get("accuracy"),
        part.get("baseline_accuracy"),
        drift["dataset_drift"],
        drift["drifted_share"],
        predictions=len(records),
        findings=label_free_findings(drift, part["prediction_drift"], quality, policy) + list(extra_findings or []),
        trend=trend,
        errors=metrics if task.kind == "regression" else None,
        baseline_errors=task.packaged_metrics,
        task=task.kind,
        drift_where=drift_where(drift),
    )
    return {
        "task": task.kind,
        "predictions": len(records),
        "other_signatures": other_signatures,
        "keyed": sum(1 for r in records if r.get("key") is not None),
        "unreadable_inputs": len(records) - rows,
        "sources": {s: sum(1 for r in records if r.get("source") == s) for s in ("online", "batch")},
        "reference_version": manifest.version,
        **{k: v for k, v in part.items() if k not in ("metrics", "prediction_drift")},
        "baseline_metrics": task.packaged_metrics,
        "metrics": metrics,
        "drift": drift,
        "prediction_drift": part["prediction_drift"],
        "quality": quality,
        "decision": decision.as_dict(),
    }


def _classification(
    task: Task, manifest: Manifest, records: list[dict[str, Any]], joined: list[tuple[int, str]], policy: RetrainPolicy
) -> dict[str, Any]:
    """Accuracy, F1, confusion, calibration of the labelled answers; the predicted classes' drift."""
    index = {name: i for i, name in enumerate(manifest.labels)}
    y_pred_all = np.asarray([_predicted(r, task) for r in records], dtype=np.int64)
    known = [(i, index[lab]) for i, lab in joined if lab in index]
    rows = np.asarray([i for i, _ in known], dtype=np.int64)
    y_true = np.asarray([c for _, c in known], dtype=np.int64)
    probs = None
    name = task.output("probabilities") or "probabilities"
    if rows.size and all(name in records[i]["outputs"] for i in rows):
        probs = np.asarray([records[i]["outputs"][name] for i in rows], dtype=np.float64)
    stats = manifest.raw.get("training_stats") or {}
    counts = stats.get("label_counts") or _baseline_class_counts(task, len(index)) or [1] * len(index)
    return {
        "labelled": len(y_true),
        "labels_not_in_model": len(joined) - len(known),
        "baseline_accuracy": task.packaged_metrics.get("accuracy"),
        "metrics": classification_report(y_true, probs, y_pred_all[rows], manifest.labels),
        "prediction_drift": prediction_drift(y_pred_all, counts, policy.drift),
    }


def _regression(
    task: Task, manifest: Manifest, records: list[dict[str, Any]], joined: list[tuple[int, str]], policy: RetrainPolicy
) -> dict[str, Any]:
    """MAE, RMSE, R² and residuals against the numeric labels (a label that is not a finite number is counted as
    bad, with the first few listed); the served scores' drift."""
    name = task.output("score")
    scores = np.asarray([_score(r, name) for r in records], dtype=np.float64)
    pairs, bad = [], []
    for i, text in joined:
        value = numeric_label(text)
        if value is None:
            bad.append({"key": str(records[i]["key"]), "label": text})
        elif np.isfinite(scores[i]):
            pairs.append((i, value))
    rows = np.asarray([i for i, _ in pairs], dtype=np.int64)
    y_true = np.asarray([v for _, v in pairs], dtype=np.float64)
    served = scores[np.isfinite(scores)]
    return {
        "labelled": len(y_true),
        "bad_labels": len(bad),
        "bad_label_examples": bad[:5],
        "unreadable_scores": int(len(scores) - len(served)),
        "metrics": regression_report(y_true, scores[rows]),
        "prediction_drift": output_drift(served, task.output_baselines.get(name or ""), policy.drift, str(name)),
    }


def _unlabelled(
    task: Task, manifest: Manifest, records: list[dict[str, Any]], joined: list[tuple[int, str]], policy: RetrainPolicy
) -> dict[str, Any]:
    """An embedding (or any task without label metrics): the drift of its output only."""
    name = task.output("embedding") or next(iter(task.output_baselines), None)
    values = [r["outputs"][name] for r in records if name in r["outputs"]] if name else []
    served = np.asarray(values, dtype=np.float64).reshape(len(values), -1) if values else np.zeros((0, 1))
    return {
        "labelled": 0,
        "metrics": {},
        "prediction_drift": output_drift(served, task.output_baselines.get(name or ""), policy.drift, str(name)),
    }


def _baseline_class_counts(task: Task, n_classes: int) -> list[int] | None:
    """Class counts of the packaged class-id output's baseline (when training_stats has no label counts)."""
    stats = task.output_baselines.get(task.output("class_id") or "")
    if not stats or stats.get("kind") != "counts":
        return None
    counts = [0] * n_classes
    for value, count in zip(stats["values"], stats["counts"], strict=True):
        if 0 <= value < n_classes:
            counts[value] += count
    return counts


def rejection_check(versions: dict[str, list], rejected: int, policy: RetrainPolicy) -> dict[str, Any]:
    """The model's refused inference requests against the accepted ones in the window (online requests, counted
    by request id): a violation when their share passes `quality.rejected_share`."""
    accepted = len({r["request_id"] for recs in versions.values() for r in recs if r.get("request_id")})
    total = accepted + rejected
    share = rejected / total if total else 0.0
    limit = policy.quality.rejected_share
    out: dict[str, Any] = {"rejected": rejected, "accepted": accepted, "share": share, "threshold": limit}
    if total >= policy.quality.min_requests and share > limit:
        out["finding"] = (
            f"data quality: {share:.1%} of {total} inference requests were refused as bad input (> {limit:.0%})"
        )
    return out


def label_free_findings(
    drift: dict[str, Any], pred_drift: dict[str, Any], quality: dict[str, Any] | None, policy: RetrainPolicy
) -> list[str]:
    """What a window shows without a single label: input drift, prediction drift, data-quality violations."""
    findings = []
    if drift["dataset_drift"]:
        share = policy.drift.dataset_share
        where = drift_where(drift)
        findings.append(f"input drift: {drift['drifted_share']:.0%} of the features{where} drifted (>= {share:.0%})")
    if pred_drift["drifted"]:
        what = f"output '{pred_drift['output']}'" if pred_drift.get("output") else "the predicted classes"
        findings.append(f"prediction drift: PSI {pred_drift['psi']:.3f} of {what} (> {policy.drift.prediction_psi})")
    if quality and quality["violations"]:
        first = quality["violations"][0]["message"]
        more = len(quality["violations"]) - 1
        findings.append(f"data quality: {first}" + (f" (and {more} more violations)" if more else ""))
    return findings


def drift_where(drift: dict[str, Any]) -> str:
    """' of input(s) a, b' naming the drifted inputs of a model with several, else ''."""
    if len(drift.get("inputs") or {}) < 2 or not drift.get("drifted_inputs"):
        return ""
    return " of input(s) " + ", ".join(f"'{n}'" for n in drift["drifted_inputs"])


def _predicted(record: dict[str, Any], task: Task) -> int:
    out = record["outputs"]
    class_id, probs = task.output("class_id") or "class_id", task.output("probabilities") or "probabilities"
    if class_id in out:
        value = out[class_id]
        return int(value) if isinstance(value, int) else int(np.asarray(value).reshape(-1)[0])
    if probs in out or not task.output("logits"):
        return int(np.argmax(out[probs]))
    return int(np.argmax(out[task.output("logits")]))  # a classifier that outputs logits only


def _score(record: dict[str, Any], name: str | None) -> float:
    """A record's regression score (a number or a one-element list); NaN when it has none or several."""
    value = np.asarray(record["outputs"].get(name or ""), dtype=np.float64) if name in record["outputs"] else None
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else float("nan")


class DecisionStore:
    """The evaluations table: one item per (model, window) retrain claim, one cooldown item per model."""

    def __init__(self, table: str) -> None:
        self.table_name = table

    @cached_property
    def _table(self) -> Any:
        return boto3.resource("dynamodb").Table(self.table_name)

    def claim(self, model: str, window_id: str, now: float, cooldown_hours: float) -> str:
        """'claimed' (this run must send the event), 'duplicate' (the window already requested one), 'resend'
        (it did, but the event was never marked sent) or 'cooldown' (another window requested one recently)."""
        pk = f"{model}#window#{window_id}"
        item = self._table.get_item(Key={"pk": pk}, ConsistentRead=True).get("Item")
        if item is not None:
            return self._resend(pk, now) if "sent_at" not in item else "duplicate"
        cutoff = int(now - cooldown_hours * 3600)
        try:  # the cooldown item admits this window (again) or any window once the cooldown is over
            self._table.update_item(
                Key={"pk": f"{model}#cooldown"},
                UpdateExpression="SET last_request = :now, window_id = :w",
                ConditionExpression="attribute_not_exists(pk) OR last_request <= :cutoff OR window_id = :w",
                ExpressionAttributeValues={":now": int(now), ":w": window_id, ":cutoff": cutoff},
            )
            self._table.put_item(
                Item={"pk": pk, "claimed_at": int(now)}, ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = self._table.get_item(Key={"pk": pk}, ConsistentRead=True).get("Item")
            return "duplicate" if item is not None else "cooldown"
        return "claimed"

    def _resend(self, pk: str, now: float) -> str:
        try:
            self._table.update_item(
                Key={"pk": pk},
                UpdateExpression="SET claimed_at = :now",
                ConditionExpression="attribute_not_exists(sent_at) AND claimed_at <= :old",
                ExpressionAttributeValues={":now": int(now), ":old": int(now - RESEND_AFTER_S)},
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return "duplicate"
            raise
        return "resend"

    def sent(self, model: str, window_id: str, now: float) -> None:
        """Mark the window's event as delivered to EventBridge."""
        self._table.update_item(
            Key={"pk": f"{model}#window#{window_id}"},
            UpdateExpression="SET sent_at = :now",
            ExpressionAttributeValues={":now": int(now)},
        )


@dataclass(frozen=True)
class Measured:
    """What the evaluator measured for one model in a window (the compute step): `evaluate_group` per version,
    the trend metric's past values per version (oldest first) and the live routing record (None before any
    promotion)."""

    model: str
    manifest: Manifest
    window: Window
    results: dict[str, dict[str, Any]]
    past: dict[str, list[tuple[str, float]]]
    metric: str | None
    live: dict[str, Any] | None

    @property
    def current(self) -> str:
        """The version the decision follows: the live primary (the registry's routing record, else the version the
        model layer serves); when it served nothing in the window, the version with the most predictions."""
        current = str(self.live["primary"]["model_version"]) if self.live else self.manifest.version
        if current not in self.results:
            current = max(self.results, key=lambda v: self.results[v]["predictions"])
        return current


@dataclass(frozen=True)
class Planned:
    """The decide step's answer for one model and window: the report and violations documents (the claim outcomes
    are filled in by the publish step), the metric history for the HTML report and what to claim."""

    measured: Measured
    decision: Decision
    report: dict[str, Any]
    violations: dict[str, Any]
    history: dict[str, list[tuple[str, float]]]
    canary: dict[str, Any] | None
    orphans: int
    claim_retrain: bool  # a retraining is due and no canary is being judged: claim the window, then request it
    claim_alert: bool  # label-free findings without retraining: claim the window's alert, then send it

    @property
    def prefix(self) -> str:
        """Where the window's report objects go."""
        return f"reports/{self.measured.model}/{self.measured.window.id}/"


def decide_window(
    measured: Measured,
    policy: RetrainPolicy,
    now: float,
    *,
    orphans: int,
    bad: int,
    refused: dict[str, Any] | None = None,
    canary: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    edge_records: list[dict[str, Any]] | None = None,
) -> Planned:
    """The decide step (pure): the report of a model's window and what to claim. A retraining is requested for the
    decided-on version unless a canary is running (its outcome, not a new retraining, comes next)."""
    results, current, manifest, window = measured.results, measured.current, measured.manifest, measured.window
    decision = Decision(**results[current]["decision"])
    report: dict[str, Any] = {
        "model": measured.model,
        "decided_on_version": current,
        "window": window.as_dict(),
        "generated_at": iso(now),
        "task": Task.of(manifest).as_dict(),
        "labels": manifest.labels,
        "counts": {
            "predictions": sum(g["predictions"] for g in results.values()),
            "labelled": results[current]["labelled"],
            "labels_without_prediction": orphans,
            "unreadable_log_lines": bad,
            "unreadable_inputs": sum(g["unreadable_inputs"] for g in results.values()),
            "rejected_requests": (refused or {}).get("rejected", 0),
            **({"bad_labels": results[current]["bad_labels"]} if "bad_labels" in results[current] else {}),
        },
        "policy": policy.as_dict(),
        "versions": results,
        "decision": decision.as_dict(),
    }
    if canary is not None:
        report["canary"] = canary
    if edge_records:  # escalations this (cloud) model answered for edge devices
        report["edge"] = agreement_report(edge_records, labels or {}, manifest.labels)
    if decision.retrain and canary is not None:
        report["trigger"] = {"outcome": "canary running"}
    history = {v: [*measured.past.get(v, [])] for v in measured.past}
    for v, g in results.items():
        if measured.metric and g["metrics"].get(measured.metric) is not None:
            history.setdefault(v, []).append((window.id, g["metrics"][measured.metric]))
    violations = {
        "model": measured.model,
        "window": window.as_dict(),
        "generated_at": iso(now),
        "versions": {v: _violations(g) for v, g in results.items()},
        "rejected_requests": refused,
        "alert": None,  # the alert claim's outcome, set by the publish step
    }
    return Planned(
        measured,
        decision,
        report,
        violations,
        history,
        canary,
        orphans,
        claim_retrain=decision.retrain and canary is None,
        claim_alert=decision.alert,
    )


class Evaluator:
    """The evaluate step bound to its adapters (liteserve.ports): pass them in (in-memory fakes in unit tests), or
    leave them out to get the boto3-backed ones for the resources the config names (`from_env()` in the function).

    Per model and window: `_compute` (read and measure), `decide_window` (pure: report, violations, what to claim),
    `_publish` (claims, report objects, events, metrics)."""

    def __init__(
        self,
        config: EvaluationConfig,
        policy: RetrainPolicy | None = None,
        promoter: Promoter | None = None,
        *,
        store: Objects | None = None,
        labels: Labels | None = None,
        decisions: Claims | None = None,
        bus: Events | None = None,
        registry: Routing | None = None,
        signatures: Signatures | None = None,
    ) -> None:
        self.config = config
        self.policy = policy or RetrainPolicy.from_env()
        self.signatures = signatures or Signatures(config.model_root)
        self.store: Objects = store or ObjectStore(config.bucket)
        self.labels: Labels = labels or LabelStore(config.labels_table)
        self.decisions: Claims = decisions or DecisionStore(config.state_table)
        self.bus: Events = bus or EventBus(config.event_bus, source="liteserve.evaluation")
        self.registry: Routing = registry or Registry(self.store)
        self.promoter = promoter
        self._references: dict[tuple[str, str], Manifest | None] = {}

    @classmethod
    def from_env(cls, promoter: Promoter | None = None) -> Evaluator:
        """The deployed function's evaluator: names, window and policy from the environment, boto3-backed adapters."""
        return cls(EvaluationConfig.from_env(), promoter=promoter)

    def reference(self, model: str, version: str, layer: Manifest) -> Manifest:
        """The manifest a version is judged against: the layer's when it is that version, else the registry's
        (a retrained version: its own validation accuracy and training statistics), else the layer's."""
        if version == layer.version:
            return layer
        if (model, version) not in self._references:  # one registry read per version and run
            self._references[(model, version)] = self.registry.manifest(model, version)
        return self._references[(model, version)] or layer

    def load_predictions(self, window: Window) -> tuple[list[dict[str, Any]], int]:
        """Records made in the window, from the hour folders around it (Firehose files a record by arrival)."""
        records, bad = [], 0
        hour = window.start - window.start % 3600 - 3600
        while hour <= window.end + 3600:
            for prefix in (ONLINE_PREFIX, BATCH_PREFIX):
                for key in self.store.keys(f"{prefix}{hour_path(hour)}/"):
                    got, nbad = read_object(self.store.read(key), self.signatures, self.config.key_field)
                    records.extend(r for r in got if window.start <= (r.get("time") or 0) <= window.end)
                    bad += nbad
            hour += 3600
        return records, bad

    def load_edge_records(self, window: Window) -> list[dict[str, Any]]:
        """Edge-vs-cloud agreement records received in the window (see liteserve.evaluation.edge)."""
        records = []
        hour = window.start - window.start % 3600
        while hour <= window.end:
            for key in self.store.keys(f"{EDGE_PREFIX}{hour_path(hour)}/"):
                got, _ = read_object(self.store.read(key), self.signatures, self.config.key_field)
                records.extend(r for r in got if window.start <= r["time"] <= window.end)
            hour += 3600
        return records

    def run(self, fire_time: float, now: float | None = None) -> dict[str, Any]:
        """Evaluate the window of a schedule fire; returns a summary per model."""
        now = time.time() if now is None else now
        self._references = {}  # a version registered since the last run is seen
        window = Window.at(fire_time, self.config.lookback_hours, self.config.align_seconds)
        records, bad = self.load_predictions(window)
        rejected: dict[str, int] = {}
        for rec in records:
            if rec.get("rejected"):
                rejected[str(rec["model"])] = rejected.get(str(rec["model"]), 0) + 1
        records = [r for r in records if not r.get("rejected")]
        received = {str(item["key"]): item for item in self.labels.received(window.start, max(now, window.end))}
        labels = {k: str(v["label"]) for k, v in received.items()}
        groups: dict[str, dict[str, list]] = {}
        for rec in records:
            groups.setdefault(rec["model"], {}).setdefault(str(rec["version"]), []).append(rec)
        predicted_keys = {str(r["key"]) for r in records if r.get("key") is not None}
        in_window = [k for k, v in received.items() if window.start * 1000 <= int(v["time"]) <= window.end * 1000]
        orphans = sum(1 for k in in_window if k not in predicted_keys)
        edge: dict[str, list] = {}
        for rec in self.load_edge_records(window):
            edge.setdefault(rec["cloud_model"], []).append(rec)
        summary: dict[str, Any] = {"window": window.as_dict(), "bad_lines": bad, "models": {}}
        for model, versions in sorted(groups.items()):
            manifest = self.signatures.manifest(model)
            if manifest is None:
                summary["models"][model] = {"skipped": "no manifest in the model layer"}
                continue
            refused = rejection_check(versions, rejected.get(model, 0), self.policy)
            summary["models"][model] = self._model(
                model, manifest, versions, labels, window, orphans, bad, now, refused, edge.get(model, [])
            )
        return summary

    def _model(
        self,
        model: str,
        manifest: Manifest,
        versions: dict[str, list],
        labels: dict[str, str],
        window: Window,
        orphans: int,
        bad: int,
        now: float,
        refused: dict[str, Any] | None = None,
        edge_records: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        measured = self._compute(model, manifest, versions, labels, window, refused)
        canary = self._review_canary(model, measured.live, versions, labels, manifest)
        planned = decide_window(
            measured,
            self.policy,
            now,
            orphans=orphans,
            bad=bad,
            refused=refused,
            canary=canary,
            labels=labels,
            edge_records=edge_records,
        )
        return self._publish(planned, now)

    def _compute(
        self,
        model: str,
        manifest: Manifest,
        versions: dict[str, list],
        labels: dict[str, str],
        window: Window,
        refused: dict[str, Any] | None,
    ) -> Measured:
        """Every version's metrics, drift and policy decision, the past reports' trend metric and the live routing
        record (reads the reports, the registry; writes nothing)."""
        metric = TREND_METRIC.get(Task.of(manifest).kind)
        past = self._past(model, window, metric) if metric else {}
        extra = [refused["finding"]] if refused and refused.get("finding") else []
        results = {
            v: evaluate_group(recs, labels, self.reference(model, v, manifest), self.policy, past.get(v), extra)
            for v, recs in sorted(versions.items())
        }
        return Measured(model, manifest, window, results, past, metric, self.registry.live(model))

    def _publish(self, planned: Planned, now: float) -> dict[str, Any]:
        """Claim what the decision asks for (once per window, cooldown), write violations.json, report.json and
        report.html, send RetrainRequested / DriftDetected for a fresh claim, emit the metrics; the run summary."""
        m, decision, report = planned.measured, planned.decision, planned.report
        model, window, prefix = m.model, m.window, planned.prefix
        outcome = None
        if planned.claim_retrain:
            outcome = self.decisions.claim(model, window.id, now, self.policy.cooldown_hours)
            report["trigger"] = {"outcome": outcome}
        alert = None
        if planned.claim_alert:  # label-free findings, no retraining: an alert, claimed once per window like a retrain
            alert = self.decisions.claim(f"{model}#alert", window.id, now, self.policy.cooldown_hours)
            report["alert"] = {"outcome": alert, "findings": decision.findings}
        planned.violations["alert"] = report.get("alert")
        self.store.put(
            prefix + "violations.json",
            orjson.dumps(planned.violations, option=orjson.OPT_INDENT_2),
            "application/json",
        )
        self.store.put(prefix + "report.json", orjson.dumps(report, option=orjson.OPT_INDENT_2), "application/json")
        self.store.put(
            prefix + "report.html", render_html(report, planned.history).encode(), "text/html; charset=utf-8"
        )
        if outcome in ("claimed", "resend"):
            g = m.results[m.current]
            self.bus.put(
                "RetrainRequested",
                {
                    "model": model,
                    "version": m.current,
                    "window": window.as_dict(),
                    "reasons": decision.reasons,
                    "task": g["task"],
                    "metrics": headline(g),
                    "report": f"s3://{self.config.bucket}/{prefix}report.json",
                },
            )
            self.decisions.sent(model, window.id, now)
        if alert in ("claimed", "resend"):
            self.bus.put(
                "DriftDetected",
                {
                    "model": model,
                    "version": m.current,
                    "window": window.as_dict(),
                    "findings": decision.findings,
                    "violations": f"s3://{self.config.bucket}/{prefix}violations.json",
                    "report": f"s3://{self.config.bucket}/{prefix}report.json",
                },
            )
            self.decisions.sent(f"{model}#alert", window.id, now)
        emit_metrics(model, m.results, planned.orphans)
        return {
            "report": f"s3://{self.config.bucket}/{prefix}report.html",
            "retrain": decision.retrain,
            "trigger": outcome,
            "alert": alert,
            "findings": decision.findings,
            "reasons": decision.reasons,
            "canary": planned.canary,
            "edge": report.get("edge"),
            "versions": {v: _scores(g) for v, g in m.results.items()},
        }

    def _review_canary(
        self,
        model: str,
        live: dict[str, Any] | None,
        versions: dict[str, list],
        labels: dict[str, str],
        layer: Manifest,
    ) -> dict[str, Any] | None:
        """With a canary running, compare it with the primary on what each served since it started; the promoter
        then promotes or rolls back. None when no canary runs."""
        if not live or not live.get("canary"):
            return None
        since = float(live["canary"]["since"])
        scores = {}
        for v in (str(live["primary"]["model_version"]), str(live["canary"]["model_version"])):
            recent = [r for r in versions.get(v, []) if (r.get("time") or 0) >= since]
            g = evaluate_group(recent, labels, self.reference(model, v, layer), self.policy) if recent else None
            scores[v] = _scores(g) if g else None
        kind = Task.of(layer).kind
        metric = task_metric(kind)
        out: dict[str, Any] = {
            "running": live["canary"],
            "task": kind,
            "metric": metric.name if metric else None,  # what the promoter compares (None: not judged)
            "since_canary": scores,
        }
        if self.promoter is None:
            out["verdict"] = {"action": "wait", "reasons": ["no promoter configured (LITESERVE_PREDICT_FUNCTION)"]}
            return out
        try:
            verdict = self.promoter.review(model, scores)
        except (ClientError, LookupError, RuntimeError) as e:
            # The evaluation (report, metrics) must not be lost to a failed alias update: report it instead.
            logger.exception("canary review failed")
            out["verdict"] = {"action": "error", "reasons": [f"{type(e).__name__}: {e}"]}
            return out
        out["verdict"] = verdict.as_dict() if verdict else None
        return out

    def _past(self, model: str, window: Window, metric: str = "accuracy") -> dict[str, list[tuple[str, float]]]:
        """`metric` per version in the last reports before this window's (oldest first): the report's time series
        and the rate-of-change trigger."""
        series: dict[str, list[tuple[str, float]]] = {}
        keys = sorted(k for k in self.store.keys(f"reports/{model}/") if k.endswith("/report.json"))
        for key in keys[-self.config.history :]:
            if key >= f"reports/{model}/{window.id}/":  # this window and later ones (a re-run of an old window)
                continue
            old = orjson.loads(self.store.read(key))
            for v, g in old.get("versions", {}).items():
                if g["metrics"].get(metric) is not None:
                    series.setdefault(v, []).append((old["window"]["id"], g["metrics"][metric]))
        return series


TREND_METRIC = {"classification": "accuracy", "regression": "rmse"}  # the metric followed across reports
HEADLINE = {
    "classification": ("accuracy", "macro_f1", "log_loss", "ece"),
    "regression": ("mae", "rmse", "r2", "mean_error"),
}


def headline(group: dict[str, Any]) -> dict[str, Any]:
    """A version's headline numbers for the RetrainRequested event: its task's metrics, the labelled count, the
    packaged model's metrics (`baseline`) and the drifted share."""
    m = group["metrics"]
    out: dict[str, Any] = {name: m.get(name) for name in HEADLINE.get(group["task"], ())}
    out["labelled"] = group["labelled"]
    if group["task"] == "classification":
        out["baseline_accuracy"] = group.get("baseline_accuracy")
    out["baseline"] = group.get("baseline_metrics") or {}
    out["drifted_share"] = group["drift"]["drifted_share"]
    return out


def _scores(group: dict[str, Any]) -> dict[str, Any]:
    """labelled + accuracy (what the canary review and the run summary compare), plus a regression's errors (its
    rmse is what the canary review of a regression compares)."""
    m = group["metrics"]
    out = {"labelled": group["labelled"], "accuracy": m.get("accuracy")}
    if group["task"] == "regression":
        out.update({name: m.get(name) for name in HEADLINE["regression"]})
    return out


def _violations(group: dict[str, Any]) -> dict[str, Any]:
    """violations.json's entry for one version: what the label-free checks found."""
    quality = group.get("quality") or {}
    return {
        "predictions": group["predictions"],
        "judged": bool(quality.get("judged")),
        "violations": quality.get("violations", []),
        "input_drift": {
            "judged": group["drift"]["judged"],
            "dataset_drift": group["drift"]["dataset_drift"],
            "drifted_features": group["drift"]["drifted_features"],
            "drifted_share": group["drift"]["drifted_share"],
            "drifted_inputs": group["drift"].get("drifted_inputs", []),
        },
        "prediction_drift": {k: group["prediction_drift"].get(k) for k in ("output", "rows", "psi", "js", "drifted")},
        "findings": group["decision"]["findings"],
    }


def emit_metrics(model: str, results: dict[str, Any], orphans: int) -> None:
    """Headline metrics as CloudWatch EMF, one document per model version (dimensions model, version)."""
    from aws_lambda_powertools.metrics import MetricUnit

    from liteserve.observability import emit

    for version, g in results.items():
        m = g["metrics"]
        values = {
            "EvalPredictions": (g["predictions"], MetricUnit.Count),
            "EvalLabelled": (g["labelled"], MetricUnit.Count),
            "LabelsWithoutPrediction": (orphans, MetricUnit.Count),
            "DriftedFeatureShare": (g["drift"]["drifted_share"], MetricUnit.NoUnit),
            "QualityViolations": (len((g.get("quality") or {}).get("violations", [])), MetricUnit.Count),
        }
        if g["prediction_drift"].get("psi") is not None:
            values["PredictionDriftPSI"] = (g["prediction_drift"]["psi"], MetricUnit.NoUnit)
        for name in (*HEADLINE["classification"], *HEADLINE["regression"]):
            if m.get(name) is not None:
                values["".join(p.capitalize() for p in name.split("_"))] = (m[name], MetricUnit.NoUnit)
        emit(values, model=model, version=version)
