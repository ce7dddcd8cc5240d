"""Promotion steps bound to their adapters: the gate run after a retraining, the canary review run after each
scheduled evaluation, and the manual promote / rollback commands. Every step records its decision and numbers."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from liteserve import settings
from liteserve.adapters import ObjectStore
from liteserve.evaluation.metrics import regression_report
from liteserve.evaluation.task import Task, numeric_label, task_metric
from liteserve.manifest import Manifest
from liteserve.promotion.decide import (
    MAX_REL_ERROR,
    PromotionPolicy,
    Verdict,
    accuracy,
    gate,
    not_judged,
    review_canary,
)
from liteserve.promotion.deploy import LambdaDeployer, extract_model, replace_model
from liteserve.protocols.labels import class_labels
from liteserve.registry import MODEL_FILES, Registry, prefix
from liteserve.runtime import Model


@dataclass(frozen=True)
class PromotionConfig:
    """Names from the environment (see template.yaml)."""

    bucket: str
    function_name: str
    model_layer: str
    alias: str = "live"

    @classmethod
    def from_env(cls) -> PromotionConfig:
        """LITESERVE_BUCKET, LITESERVE_PREDICT_FUNCTION, LITESERVE_MODEL_LAYER_NAME, LITESERVE_LIVE_ALIAS."""
        env = os.environ
        return cls(
            bucket=env[settings.BUCKET],
            function_name=env[settings.PREDICT_FUNCTION],
            model_layer=env[settings.MODEL_LAYER_NAME],
            alias=env.get(settings.LIVE_ALIAS, "live"),
        )

    @classmethod
    def optional_from_env(cls) -> PromotionConfig | None:
        """The config when the environment names the served function (LITESERVE_PREDICT_FUNCTION), else None."""
        return cls.from_env() if os.environ.get(settings.PREDICT_FUNCTION) else None


def holdout_accuracy(model_dir: Path, inputs: dict[str, np.ndarray], labels: list[str]) -> float:
    """Accuracy of the model in `model_dir` (checksum verified) on labelled rows (batches by input name), through
    its task signature's class output."""
    return _accuracy(Model(model_dir), inputs, labels)


def _accuracy(model: Model, inputs: dict[str, np.ndarray], labels: list[str]) -> float:
    index = {name: i for i, name in enumerate(model.manifest.labels)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(f"holdout labels {unknown[:5]} are not classes of {model.name}")
    y = np.asarray([index[label] for label in labels])
    signature = model.manifest.raw.get("task", {}).get("signature", "serving_default")
    predicted = class_labels(model, signature, model.predict(signature, inputs))
    return accuracy(np.asarray([index[name] for name in predicted]), y)


def holdout_scores(model_dir: Path, inputs: dict[str, np.ndarray], labels: list[str]) -> dict[str, Any]:
    """The task's labelled metrics of the model in `model_dir` (checksum verified) on holdout rows (batches by input
    name, labels as text): a classifier's `accuracy`; a regression's MAE, RMSE, R² and mean error against numeric
    labels (through the task signature's score output). ValueError for labels the task cannot read or no rows."""
    model = Model(model_dir)
    task = Task.of(model.manifest)
    if task.kind == "classification":
        return {"task": task.kind, "n": len(labels), "accuracy": _accuracy(model, inputs, labels)}
    if task.kind != "regression":
        raise ValueError(f"{model.name} is a {task.kind} model: no labelled metric to score on a holdout")
    values = [numeric_label(label) for label in labels]
    bad = [label for label, value in zip(labels, values, strict=True) if value is None]
    if bad:
        raise ValueError(f"holdout labels {bad[:5]} of regression model {model.name} are not numbers")
    if not labels:
        raise ValueError("no labelled rows")
    score = model.predict(task.signature, inputs)[task.output("score") or ""]
    report = regression_report(np.asarray(values), np.asarray(score, dtype=np.float64).reshape(len(labels), -1)[:, 0])
    return {"task": task.kind, **{k: report[k] for k in ("n", "mae", "rmse", "r2", "mean_error")}}


class Promoter:
    """Gate, canary, promote and rollback for one model served by one function's `live` alias."""

    def __init__(
        self,
        config: PromotionConfig,
        policy: PromotionPolicy | None = None,
        deployer: LambdaDeployer | None = None,
    ) -> None:
        self.config = config
        self.policy = policy or PromotionPolicy.from_env()
        self.registry = Registry(ObjectStore(config.bucket))
        self.deployer = deployer or LambdaDeployer(config.function_name, config.model_layer, config.alias)

    def _live(self, model: str) -> dict[str, Any]:
        """The live record, or one describing the template's deployment before any promotion."""
        record = self.registry.live(model)
        if record is not None:
            return record
        routing = self.deployer.routing()
        _, layer_zip = self.deployer.model_layer_zip(routing.primary)
        manifest = extract_model(layer_zip, model)["manifest.json"]
        return {
            "primary": {"model_version": str(orjson.loads(manifest)["version"]), "function_version": routing.primary},
            "canary": None,
        }

    def gate(self, model: str, version: str) -> Verdict:
        """Score the candidate and the live primary on the candidate's holdout; start a canary or reject.

        Once per version: a repeated retraining request (EventBridge delivers at least once) finds the earlier
        decision and returns it, so a rejected or rolled-back candidate never comes back as a canary."""
        decided = [e for e in self.registry.events(model, version) if e.get("action") in ("canary", "reject")]
        if decided:
            return Verdict(decided[-1]["action"], ["already decided", *decided[-1].get("reasons", [])])
        live = self._live(model)
        self._check_routing(live)
        if live.get("canary"):
            verdict = Verdict("defer", [f"canary {live['canary']['model_version']} is still under review"])
            return self._recorded(model, version, verdict)
        raw = self.registry.manifest_dict(model, version)
        if raw is None:
            raise LookupError(f"no candidate {prefix(model, version)}manifest.json")
        task = Task.of(Manifest.from_dict(raw))
        if task_metric(task.kind) is None:
            return self._recorded(model, version, Verdict("reject", not_judged(task.kind), {"task": task.kind}))
        primary_fv = live["primary"]["function_version"]
        base_arn, base_zip = self.deployer.model_layer_zip(primary_fv)
        _, x, labels = self.registry.holdout(model, version, list(task.inputs))
        with tempfile.TemporaryDirectory(prefix="liteserve-gate-") as tmp:
            live_dir = Path(tmp) / "live" / model
            live_dir.mkdir(parents=True)
            for name, data in extract_model(base_zip, model).items():
                (live_dir / name).write_bytes(data)
            live_raw = orjson.loads((live_dir / "manifest.json").read_bytes())
            live_kind = Task.of(Manifest.from_dict(live_raw)).kind
            if live_kind != task.kind:
                reason = f"the live model is a {live_kind} model, the candidate a {task.kind} one: nothing to compare"
                numbers = {"task": task.kind, "live_task": live_kind}
                return self._recorded(model, version, Verdict("reject", [reason], numbers))
            cand_dir = self.registry.download(model, version, Path(tmp) / "candidate")
            live_scores = holdout_scores(live_dir, x, labels)
            cand_scores = holdout_scores(cand_dir, x, labels)
            files = {name: (cand_dir / name).read_bytes() for name in MODEL_FILES}
        all_int8 = bool((raw.get("quantization") or {}).get("all_signatures_int8"))
        # A regression's fidelity bound is the one the live model was packaged under (`--max-rel-error`, carried on
        # by retraining), not the candidate's own claim.
        bound = ((live_raw.get("fidelity") or {}).get("bounds") or {}).get("max_rel_error", MAX_REL_ERROR)
        name = task_metric(task.kind).name  # type: ignore[union-attr]
        verdict = gate(
            live_scores[name],
            cand_scores[name],
            len(labels),
            raw.get("metrics") or {},
            all_int8,
            self.policy,
            task=task.kind,
            fidelity=raw.get("fidelity") or {},
            max_rel_error=float(bound),
        )
        verdict.numbers.update(
            live_model_version=live["primary"]["model_version"],
            holdout={"live": live_scores, "candidate": cand_scores},
            policy=self.policy.as_dict(),
        )
        if verdict.action == "canary":
            self._start_canary(model, version, live, base_zip, files, base_arn, self.policy.canary_weight)
            verdict.numbers["routing"] = self.registry.live(model)
        return self._recorded(model, version, verdict)

    def _recorded(self, model: str, version: str, verdict: Verdict) -> Verdict:
        """Append the gate's verdict to the version's promotion.json and return it."""
        self.registry.record(model, version, {"step": "gate", **verdict.as_dict()})
        return verdict

    def _start_canary(
        self,
        model: str,
        version: str,
        live: dict[str, Any],
        base_zip: bytes,
        files: dict[str, bytes],
        base_arn: str,
        weight: float,
    ) -> None:
        primary_fv = live["primary"]["function_version"]
        layer_zip = replace_model(base_zip, model, files)
        layer_arn = self.deployer.publish_layer(
            layer_zip, self.config.bucket, prefix(model, version) + "layer.zip", f"{model} {version} (from {base_arn})"
        )
        fv = self.deployer.publish_function(primary_fv, layer_arn, f"model {model} version {version}")
        now = self.deployer.route(primary_fv, fv, weight)
        self.registry.set_live(
            model,
            {
                "primary": live["primary"],
                "canary": {
                    "model_version": version,
                    "function_version": fv,
                    "layer": layer_arn,
                    "weight": now.weights.get(fv, 0.0),
                    "since": time.time(),
                },
            },
        )
        self.registry.record(model, version, {"step": "canary", "function_version": fv, "layer": layer_arn})

    def _check_routing(self, live: dict[str, Any]) -> None:
        """Refuse to act on a routing record the alias no longer matches (e.g. a `sam deploy` moved `live` since)."""
        routing = self.deployer.routing()
        canary = live.get("canary")
        expected = (live["primary"]["function_version"], [canary["function_version"]] if canary else [])
        if (routing.primary, sorted(routing.weights)) != expected:
            raise RuntimeError(
                f"alias {self.config.alias} routes to {routing.primary} + {routing.weights}, but the registry's "
                f"live.json says {expected[0]} + {expected[1]}: fix by hand (`status`, then `promote` or `rollback`)"
            )

    def review(self, model: str, since_canary: dict[str, dict[str, Any]]) -> Verdict | None:
        """Judge the running canary on per-version numbers of predictions made since it started (keyed by model
        version; `{"labelled", "accuracy"}` of a classifier, `{"labelled", "rmse"}` of a regression, as the
        canary's registered manifest says); promote or roll back. None when no canary runs."""
        live = self.registry.live(model)
        if not live or not live.get("canary"):
            return None
        self._check_routing(live)
        canary, primary = live["canary"], live["primary"]
        raw = self.registry.manifest_dict(model, canary["model_version"])
        kind = Task.of(Manifest.from_dict(raw)).kind if raw is not None else "classification"
        verdict = review_canary(
            since_canary.get(primary["model_version"]), since_canary.get(canary["model_version"]), self.policy, kind
        )
        if verdict.action == "promote":
            self.promote(model, canary["model_version"], reasons=verdict.reasons, numbers=verdict.numbers)
        elif verdict.action == "rollback":
            self.rollback(model, reasons=verdict.reasons, numbers=verdict.numbers)
        return verdict

    def promote(
        self, model: str, version: str, reasons: list[str] | None = None, numbers: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send all traffic to `version` (the running canary, or any version promoted before)."""
        live = self._live(model)
        known = {live["primary"]["model_version"]: live["primary"]}
        if live.get("canary"):
            known[live["canary"]["model_version"]] = live["canary"]
        for past in live.get("previous") or []:
            known.setdefault(past["model_version"], past)
        if version not in known:
            raise LookupError(f"{model} {version} was never deployed; run the gate (or the `canary` command) first")
        target = {k: known[version][k] for k in ("model_version", "function_version")}
        self.deployer.route(target["function_version"])
        previous = [p for p in [live["primary"], *(live.get("previous") or [])] if p["model_version"] != version]
        self.registry.set_live(model, {"primary": target, "canary": None, "previous": previous[:10]})
        return self.registry.record(
            model, version, {"step": "promote", "reasons": reasons or ["manual"], "numbers": numbers or {}}
        )

    def rollback(
        self, model: str, reasons: list[str] | None = None, numbers: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Stop a running canary (all traffic back to the primary), or, with none running, return to the previous
        primary."""
        live = self._live(model)
        if live.get("canary"):
            dropped, target, previous = live["canary"], live["primary"], live.get("previous") or []
        elif live.get("previous"):
            dropped, target, previous = live["primary"], live["previous"][0], live["previous"][1:]
        else:
            raise LookupError(f"{model}: nothing to roll back to")
        target = {k: target[k] for k in ("model_version", "function_version")}
        self.deployer.route(target["function_version"])
        self.registry.set_live(model, {"primary": target, "canary": None, "previous": previous})
        return self.registry.record(
            model,
            dropped["model_version"],
            {"step": "rollback", "to": target, "reasons": reasons or ["manual"], "numbers": numbers or {}},
        )

    def canary_manual(self, model: str, version: str, weight: float | None = None) -> dict[str, Any]:
        """Deploy a registered version as a canary without the gate (manual override; recorded as such)."""
        live = self._live(model)
        self._check_routing(live)
        if live.get("canary"):
            raise RuntimeError(f"canary {live['canary']['model_version']} is still running: promote or roll back")
        base_arn, base_zip = self.deployer.model_layer_zip(live["primary"]["function_version"])
        with tempfile.TemporaryDirectory(prefix="liteserve-canary-") as tmp:
            cand_dir = self.registry.download(model, version, Path(tmp))
            Model(cand_dir)  # refuses a file that does not match its manifest checksum
            files = {name: (cand_dir / name).read_bytes() for name in MODEL_FILES}
        weight = self.policy.canary_weight if weight is None else weight
        if not 0 < weight < 1:
            raise ValueError(f"canary weight {weight} is not in (0, 1)")
        self._start_canary(model, version, live, base_zip, files, base_arn, weight)
        self.registry.record(model, version, {"step": "gate", "action": "canary", "reasons": ["manual override"]})
        return self.registry.live(model) or {}

    def status(self, model: str) -> dict[str, Any]:
        """The live record and the alias's actual routing."""
        routing = self.deployer.routing()
        return {"live": self._live(model), "alias": {"primary": routing.primary, "weights": routing.weights}}
