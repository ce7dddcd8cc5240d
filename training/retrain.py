"""Retraining job: `python -m training.retrain` (the retraining CodeBuild project's build step, see buildspec.yml).

Retrains through the model's own entry point (the retraining contract, `liteserve_dev.retraining`): the manifest of
the version being replaced (registry, else the model layer) declares `retrain: {entry_point: "module:function",
data: LOCATION}`; the job reads the training rows from LOCATION and the recent labelled predictions (served
`serving_default` inputs joined with their latest label by key), keeps a key-based holdout of the recent rows out of
training, calls the entry point, packages what it returns with the packaging path under the parent's options, and
writes the candidate to the registry: `s3://$LITESERVE_BUCKET/models/<name>/<version>/` = claim.json, model.tflite,
float.tflite, metrics.json, holdout.jsonl ({key, x, label}; `inputs` instead of `x` for a model with several inputs)
and manifest.json (the packaging manifest + `parent`, `lineage`), the manifest last.

Inputs (environment; flags override for manual runs):
    RETRAIN_REQUEST                 the RetrainRequested event's detail (JSON; a whole event is accepted too)
    LITESERVE_BUCKET                data bucket: prediction log (predictions/) and registry (models/)
    LITESERVE_LABELS_TABLE          labels table (LabelStore)
    LITESERVE_RETRAIN_WINDOW_HOURS  recent data: predictions made in the hours before the request's window end (168)
    LITESERVE_RETRAIN_MIN_LABELLED  fewer recent labelled predictions fail the build (500)
    LITESERVE_RETRAIN_RECENT_SHARE  repeat the recent rows until they make this share of training (0: off, default;
                                    repeats leak into an early-stopping split and overfit, see below)
    LITESERVE_MODEL_ROOT            model layer folder, for decoding logged requests (layers/model/models)

Prints one JSON line `{"model", "version", "prefix", "status": "created"|"exists", "window_id"}` (and writes it to
`--emit FILE`). A second run for the same window finds the candidate and exits 0 without a new version. Exit 1: the
retraining failed (too few labelled rows, the entry point raised or returned no model, the packaging checks); exit 2:
bad request or configuration (among them: a model that declares no entry point, an entry point that does not
resolve, training data that cannot be read).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# LiteRT must be loaded before TensorFlow (both register the same pybind11 types; LiteRT imported second fails and
# the process aborts at exit). liteserve.runtime imports it; the entry point and the packaging import TensorFlow later.
import numpy as np
import orjson
from liteserve import settings
from liteserve.adapters import ObjectStore
from liteserve.evaluation.labels import LabelStore
from liteserve.records import Signatures, hour_path, read_object
from liteserve.runtime import Model

from liteserve_dev import retraining
from liteserve_dev.packaging import PackagingError, tasks
from liteserve_dev.packaging import metrics as task_metrics
from liteserve_dev.packaging.package import Packaged, write
from liteserve_dev.retraining import ContractError, RetrainInput, Rows, TrainingFailed, concat
from training.recent import LOG_PREFIXES, DataWindow, join, log_objects, oversample_factor, split_holdout
from training.registry import CandidateRegistry, Plan, plan

DEFAULT_WINDOW_HOURS = 168.0
DEFAULT_MIN_LABELLED = 500
# Off: on the drift scenario, 4 copies of the recent rows (share 0.9) scored 77.2 % on the drifted holdout vs 80.7 %
# for none and ran 298 epochs instead of 64: copies land in the early-stopping split, so it stops late and overfits.
DEFAULT_RECENT_SHARE = 0.0
CLAIM_TRIES = 10


class RequestError(ValueError):
    """The request or the configuration is unusable (exit 2)."""


class RetrainError(RuntimeError):
    """The retraining cannot produce a candidate (exit 1)."""


@dataclass(frozen=True)
class Request:
    """What to retrain: the model, the version it replaces, the trigger's window and report."""

    model: str
    parent: str | None
    window_id: str
    window_end: float
    report: str | None
    detail: dict[str, Any]

    @classmethod
    def from_detail(cls, doc: Any) -> Request:
        """A RetrainRequested detail (or a whole EventBridge event carrying one) -> Request."""
        if isinstance(doc, dict) and "detail" in doc and "detail-type" in doc:
            doc = doc["detail"]
        if not isinstance(doc, dict):
            raise RequestError(f"RETRAIN_REQUEST must be a JSON object, got {type(doc).__name__}")
        model, window = doc.get("model"), doc.get("window")
        if not isinstance(model, str) or not model:
            raise RequestError("RETRAIN_REQUEST has no 'model'")
        end = window.get("end") if isinstance(window, dict) else None
        if isinstance(end, str):  # a scheduled retraining passes the schedule's fire time (ISO-8601)
            end = parse_time(end)
        if not isinstance(window, dict) or not window.get("id") or not isinstance(end, int | float):
            raise RequestError("RETRAIN_REQUEST needs 'window' with 'id' and an 'end' (epoch seconds or ISO-8601)")
        version = doc.get("version")
        return cls(
            model=model,
            parent=str(version) if version is not None else None,
            window_id=str(window["id"]),
            window_end=float(end),
            report=doc.get("report"),
            detail=doc,
        )


@dataclass(frozen=True)
class Config:
    """Where the data is and how much of it a retraining needs."""

    bucket: str
    labels_table: str
    window_hours: float = DEFAULT_WINDOW_HOURS
    min_labelled: int = DEFAULT_MIN_LABELLED
    recent_share: float = DEFAULT_RECENT_SHARE
    model_root: str = "layers/model/models"
    key_field: str = "key"


def parse_time(text: str) -> float:
    """Epoch seconds from a number or an ISO-8601 UTC time (`2026-11-15T00:00:00Z`)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"not a time: {text!r} (epoch seconds or ISO-8601)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Request, Config]:
    """The request and configuration from the environment, overridden by command-line flags."""
    raw = env.get("RETRAIN_REQUEST", "").strip()
    detail: dict[str, Any] = {}
    if raw:
        try:
            detail = json.loads(raw)
        except json.JSONDecodeError as err:
            raise RequestError(f"RETRAIN_REQUEST is not valid JSON: {err}") from None
        request = Request.from_detail(detail)
        detail = dict(request.detail)
    if args.model:
        detail["model"] = args.model
    if args.parent:
        detail["version"] = args.parent
    if args.window_end or args.window_id or not raw:
        window = dict(detail.get("window") or {})
        if args.window_end:
            window["end"] = parse_time(args.window_end)
        window.setdefault("end", float(int(time.time())))
        if args.window_id:
            window["id"] = args.window_id
        elif not raw or args.window_end:
            window["id"] = "manual-" + datetime.fromtimestamp(window["end"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        detail["window"] = window
    if not detail.get("model"):
        raise RequestError("nothing to retrain: set RETRAIN_REQUEST or pass --model")
    request = Request.from_detail(detail)

    def setting(flag: Any, name: str, default: Any, kind: type) -> Any:
        value = flag if flag is not None else env.get(name, default)
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise RequestError(f"{name} must be a {kind.__name__}, got {value!r}") from None

    bucket = args.bucket or env.get(settings.BUCKET)
    table = args.labels_table or env.get(settings.LABELS_TABLE)
    if not bucket or not table:
        raise RequestError("LITESERVE_BUCKET and LITESERVE_LABELS_TABLE must be set (or --bucket, --labels-table)")
    config = Config(
        bucket=bucket,
        labels_table=table,
        window_hours=setting(args.window_hours, settings.RETRAIN_WINDOW_HOURS, DEFAULT_WINDOW_HOURS, float),
        min_labelled=setting(args.min_labelled, settings.RETRAIN_MIN_LABELLED, DEFAULT_MIN_LABELLED, int),
        recent_share=setting(args.recent_share, settings.RETRAIN_RECENT_SHARE, DEFAULT_RECENT_SHARE, float),
        model_root=args.model_root or env.get(settings.MODEL_ROOT, "layers/model/models"),
        key_field=env.get(settings.KEY_FIELD, "key"),
    )
    if config.window_hours <= 0 or config.min_labelled < 1 or not 0 <= config.recent_share < 1:
        raise RequestError(
            f"window hours must be > 0, min labelled >= 1 and recent share in [0, 1); got {config.window_hours}, "
            f"{config.min_labelled}, {config.recent_share}"
        )
    return request, config


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the result line)."""
    print(f"[retrain] {message}", file=sys.stderr, flush=True)


def load_recent(
    store: ObjectStore,
    labels: LabelStore,
    signatures: Signatures,
    manifest: dict[str, Any],
    window: DataWindow,
    key_field: str,
    now: float,
) -> tuple[Rows, dict[str, int]]:
    """The window's labelled predictions of the model, read with the evaluation pipeline's readers."""
    keys: list[str] = []
    day = window.start - 3600
    while day <= window.end + 3600 + 86400:
        for p in LOG_PREFIXES:
            keys += store.keys(f"{p}{hour_path(day)[:10]}/")
        day += 86400
    objects = log_objects(keys, window)
    records: list[dict[str, Any]] = []
    bad = 0
    for key in objects:
        got, nbad = read_object(store.read(key), signatures, key_field)
        records.extend(got)
        bad += nbad
    # Labels arrive after their predictions: everything received from the window's start until now.
    label_map = {str(i["key"]): str(i["label"]) for i in labels.received(window.start, max(now, window.end))}
    inputs = manifest["signatures"][manifest["task"]["signature"]]["inputs"]
    classes = manifest["labels"] if manifest["task"]["kind"] == "classification" else None
    rows, counts = join(records, label_map, manifest["name"], window, inputs, classes)
    counts.update(log_objects=len(objects), unreadable_lines=bad, labels_received=len(label_map))
    return rows, counts


def claim_version(registry: CandidateRegistry, request: Request, claim: dict[str, Any]) -> Plan:
    """Plan again and claim a new version (another build may take a number first: then try the next)."""
    for _ in range(CLAIM_TRIES):
        p = plan(registry.entries(), request.window_id, request.parent)
        if p.action != "create" or registry.claim(p.version, {**claim, "version": p.version}):
            return p
    raise RetrainError(f"could not claim a version of {request.model} after {CLAIM_TRIES} tries")


def scores(model: Model, manifest: dict[str, Any], rows: Rows) -> dict[str, float | int | None]:
    """The task's metrics of a served model (through its task signature) on labelled rows: accuracy and log loss
    (classification), MAE, RMSE and R² (regression)."""
    task = manifest["task"]
    if task["kind"] == "regression":
        if len(rows) == 0:
            return {"n": 0, "mae": None, "rmse": None}
        out = model.predict(task["signature"], rows.inputs)
        return {"n": len(rows), **task_metrics.regression_metrics(out[task["score"]], rows.labels)}
    if len(rows) == 0:
        return {"n": 0, "accuracy": None, "log_loss": None}
    out = model.predict(task["signature"], rows.inputs)
    probs = tasks.probabilities(task, out)
    return {
        "n": len(rows),
        "accuracy": float(np.mean(tasks.predicted_class(task, out) == rows.labels)),
        "log_loss": task_metrics.log_loss(probs, rows.labels) if probs is not None else None,
    }


def parent_manifest(registry: CandidateRegistry, request: Request, model_root: str) -> dict[str, Any]:
    """The manifest of the version being replaced: the registry's, else the model layer's (the version deployed
    with the stack). RequestError when neither has the model."""
    if request.parent is not None:
        manifest = registry.read_json(request.parent, "manifest.json")
        if manifest is not None:
            return manifest
    path = Path(model_root) / request.model / "manifest.json"
    if not path.is_file():
        raise RequestError(f"model {request.model!r} is neither in the registry nor in the model layer {model_root}")
    return orjson.loads(path.read_bytes())


def parent_model(registry: CandidateRegistry, request: Request, model_root: str, tmp: Path) -> tuple[Model, str] | None:
    """The version being replaced, from the registry, else from the model layer when it is that version."""
    if request.parent is None:
        return None
    manifest = registry.read_json(request.parent, "manifest.json")
    if manifest is not None:
        target = tmp / "parent" / request.model
        target.mkdir(parents=True)
        (target / "manifest.json").write_bytes(orjson.dumps(manifest))
        (target / manifest.get("file", "model.tflite")).write_bytes(
            registry.read_bytes(request.parent, manifest.get("file", "model.tflite"))
        )
        return Model(target), registry.uri(request.parent)
    layer = Path(model_root) / request.model
    if (layer / "manifest.json").is_file():
        model = Model(layer)
        if model.version == request.parent:
            return model, str(layer)
    return None


def holdout_lines(rows: Rows, manifest: dict[str, Any]) -> bytes:
    """holdout.jsonl: one `{key, x, label}` per row (`inputs` by name instead of `x` for several inputs), the label
    as the label store holds it (the class name, or the number)."""
    classification = manifest["task"]["kind"] == "classification"
    names = list(rows.inputs)
    out = []
    for i, key in enumerate(rows.keys or []):
        y = rows.labels[i]
        label = manifest["labels"][int(y)] if classification else repr(float(y))
        values = {n: rows.inputs[n][i] for n in names}
        doc = {"key": key, **({"x": values[names[0]]} if len(names) == 1 else {"inputs": values}), "label": label}
        out.append(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    return b"".join(out)


def run(request: Request, config: Config, now: float | None = None) -> dict[str, Any]:
    """Retrain `request.model` (or find this window's candidate); returns the result line."""
    now = time.time() if now is None else now
    registry = CandidateRegistry(config.bucket, request.model)

    def result(p: Plan, status: str) -> dict[str, Any]:
        return {
            "model": request.model,
            "version": p.version,
            "prefix": registry.uri(p.version),
            "status": status,
            "window_id": request.window_id,
        }

    first = plan(registry.entries(), request.window_id, request.parent)
    if first.action == "exists":
        log(f"{registry.uri(first.version)} already holds the candidate of window {request.window_id}")
        return result(first, "exists")

    # The contract first: a model that cannot be retrained fails before any data is read or a version claimed.
    manifest = parent_manifest(registry, request, config.model_root)
    try:
        declaration = retraining.declared(manifest)
        entry_point = retraining.resolve(declaration.entry_point)
    except ContractError as err:
        raise RequestError(str(err)) from None

    window = DataWindow.ending(request.window_end, config.window_hours, request.window_id)
    store = ObjectStore(config.bucket)
    rows, counts = load_recent(
        store,
        LabelStore(config.labels_table),
        Signatures(config.model_root),
        manifest,
        window,
        config.key_field,
        now,
    )
    log(f"window {window.as_dict()['start_iso']} .. {window.as_dict()['end_iso']}: {counts}")
    if len(rows) < config.min_labelled:
        raise RetrainError(
            f"only {len(rows)} labelled predictions of {request.model} in {window.as_dict()['start_iso']} .. "
            f"{window.as_dict()['end_iso']} ({counts['predictions']} predictions, {counts['labels_received']} labels "
            f"received); at least {config.min_labelled} are needed (LITESERVE_RETRAIN_MIN_LABELLED): no candidate "
            "written"
        )
    if not all(len(part) for part in split_holdout(rows)):
        raise RetrainError(f"{len(rows)} labelled rows give an empty training part or holdout: no candidate written")

    with tempfile.TemporaryDirectory(prefix="liteserve-retrain-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            training = retraining.load_training(declaration, manifest, tmp)
        except ContractError as err:
            raise RequestError(str(err)) from None
        claim = {
            "model": request.model,
            "window_id": request.window_id,
            "parent": request.parent,
            "request": request.detail,
            "claimed_at": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "build_id": os.environ.get("CODEBUILD_BUILD_ID"),
        }
        p = claim_version(registry, request, claim)
        if p.action == "exists":
            return result(p, "exists")
        log(f"{p.action} {registry.uri(p.version)} with {declaration.entry_point}")
        job = Job(request, config, registry, p.version, window, manifest, declaration, tmp)
        files = job.build(entry_point, training, rows, counts)
    registry.write(p.version, files)
    return result(p, "created")


@dataclass(frozen=True)
class Job:
    """One candidate's build: who it replaces, where it goes, what the model declares, a scratch folder."""

    request: Request
    config: Config
    registry: CandidateRegistry
    version: str
    window: DataWindow
    manifest: dict[str, Any]  # the parent's
    declaration: retraining.Declaration
    tmp: Path

    def build(self, entry_point: Any, training: Rows, rows: Rows, counts: dict[str, int]) -> dict[str, bytes]:
        """Call the entry point on the training rows + the recent training rows, package its model under the
        parent's options and return the candidate's registry files (manifest with lineage, metrics, holdout).
        RetrainError when the entry point fails or its model fails the packaging checks."""
        request, registry, version = self.request, self.registry, self.version
        recent_train, holdout = split_holdout(rows)
        factor = oversample_factor(len(training), len(recent_train), self.config.recent_share)
        recent = recent_train.repeat(factor)
        trained_on = concat(training, recent)
        rows_block = {
            "original_train": len(training),
            "recent_labelled": len(rows),
            "recent_train": len(recent_train),
            "holdout": len(holdout),
            "oversample_factor": factor,
            "train_total": len(trained_on),
            "validation_total": len(trained_on) + len(holdout),
            "prediction_log": counts,
        }
        spec = self.declaration.entry_point
        workdir = self.tmp / "entry_point"
        workdir.mkdir()
        data = RetrainInput(
            model=request.model,
            version=version,
            parent=request.parent,
            task=self.manifest["task"],
            labels=list(self.manifest["labels"]),
            feature_names=self.manifest.get("feature_names"),
            training=training,
            recent=recent,
            workdir=workdir,
        )
        t0 = time.perf_counter()
        try:
            source = retraining.run_entry_point(entry_point, spec, data)
            t1 = time.perf_counter()
            candidate = retraining.package_candidate(source, self.manifest, version, trained_on, holdout, spec)
        except TrainingFailed as err:
            raise RetrainError(str(err)) from err
        except PackagingError as err:
            raise RetrainError(f"candidate {registry.uri(version)} failed its checks: {err}") from err
        manifest = candidate.manifest
        out = self.tmp / "candidate"
        manifest.update(
            {
                "data": {
                    "training": self.declaration.data,
                    "n_train": len(trained_on),
                    "n_test": len(trained_on) + len(holdout),
                    "recent": {"window": self.window.as_dict(), "rows": rows_block},
                    "validation": "fidelity: training rows + recent rows + recent holdout; metrics: recent holdout",
                },
                "parent": request.parent,
                "float_reference": {
                    "file": "float.tflite",
                    "sha256": hashlib.sha256(candidate.float_model).hexdigest(),
                },
                "build": {
                    **manifest["build"],
                    "float_size_bytes": len(candidate.float_model),
                    "entry_point_seconds": round(t1 - t0, 2),
                    "package_seconds": round(time.perf_counter() - t1, 2),
                },
                "lineage": {
                    "parent_version": request.parent,
                    "report": request.report,
                    "request": request.detail,
                    "window": self.window.as_dict(),
                    "rows": rows_block,
                    "entry_point": spec,
                    "holdout": {"rule": "int(sha256(key).hexdigest(), 16) % 5 == 0", "file": "holdout.jsonl"},
                    "build_id": os.environ.get("CODEBUILD_BUILD_ID"),
                },
            }
        )
        write(Packaged(candidate.model, manifest), out)  # validates the manifest against its schema
        model = Model(out / request.model)
        metrics: dict[str, Any] = {
            "model": request.model,
            "version": version,
            "candidate": {"training": scores(model, manifest, training), "holdout": scores(model, manifest, holdout)},
            "build": manifest.get("metrics", {}),
            "parent": {"version": request.parent, "source": None},
        }
        parent = parent_model(registry, request, self.config.model_root, self.tmp)
        if parent is not None:
            metrics["parent"] = {
                "version": request.parent,
                "source": parent[1],
                "training": scores(parent[0], self.manifest, training),
                "holdout": scores(parent[0], self.manifest, holdout),
            }
        log(f"candidate {registry.uri(version)}: {json.dumps(metrics['candidate'])}; parent {metrics['parent']}")
        return {
            "model.tflite": candidate.model,
            "float.tflite": candidate.float_model,
            "metrics.json": orjson.dumps(metrics, option=orjson.OPT_INDENT_2),
            "holdout.jsonl": holdout_lines(holdout, manifest),
            "manifest.json": (out / request.model / "manifest.json").read_bytes(),
        }


def main(argv: list[str] | None = None) -> int:
    """Run one retraining; print the result line (and write it to --emit)."""
    p = argparse.ArgumentParser(prog="python -m training.retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model to retrain (overrides RETRAIN_REQUEST's)")
    p.add_argument("--parent", help="version the candidate replaces (overrides the request's 'version')")
    p.add_argument("--window-end", help="end of the recent data: epoch seconds or ISO-8601 (default: now)")
    p.add_argument("--window-id", help="idempotency key of the run (default: the request's window id)")
    p.add_argument("--window-hours", type=float, default=None)
    p.add_argument("--min-labelled", type=int, default=None)
    p.add_argument("--recent-share", type=float, default=None)
    p.add_argument("--bucket")
    p.add_argument("--labels-table")
    p.add_argument("--model-root")
    p.add_argument("--emit", help="also write the result line to this file")
    args = p.parse_args(argv)
    try:
        request, config = resolve(args, os.environ)
        out = run(request, config)
    except RequestError as err:
        print(f"retrain: error: {err}", file=sys.stderr)
        return 2
    except RetrainError as err:
        print(f"retrain: failed: {err}", file=sys.stderr)
        return 1
    line = json.dumps(out)
    print(line, flush=True)
    if args.emit:
        Path(args.emit).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
