"""The Lambda control plane of a promotion: model-layer versions, function versions and the weighted `live` alias.

A container serves one immutable model version for its whole life: promotion never touches code, it publishes a new
layer version with the candidate's files, publishes a function version that uses it and moves alias weights.
"""

from __future__ import annotations

import io
import urllib.request
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3

LAYER_MODEL_ROOT = "models"  # the model layer is zipped with models/<name>/ at its root -> /opt/models/<name>/


def replace_model(layer_zip: bytes, model: str, files: dict[str, bytes]) -> bytes:
    """A copy of a model-layer zip with `models/<model>/` replaced by `files` (name -> bytes); others unchanged."""
    folder = f"{LAYER_MODEL_ROOT}/{model}/"
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(layer_zip)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if not info.filename.startswith(folder):
                dst.writestr(info, src.read(info))
        for name, data in sorted(files.items()):
            dst.writestr(folder + name, data)
    return out.getvalue()


def extract_model(layer_zip: bytes, model: str) -> dict[str, bytes]:
    """The files of `models/<model>/` in a model-layer zip (name -> bytes); KeyError when it has no such model."""
    folder = f"{LAYER_MODEL_ROOT}/{model}/"
    with zipfile.ZipFile(io.BytesIO(layer_zip)) as z:
        files = {
            i.filename[len(folder) :]: z.read(i)
            for i in z.infolist()
            if i.filename.startswith(folder) and not i.is_dir() and "/" not in i.filename[len(folder) :]
        }
    if not files:
        raise KeyError(f"the model layer has no {folder}")
    return files


def layer_name_of(arn: str) -> str:
    """`arn:aws:lambda:<region>:<account>:layer:<name>:<version>` -> `<name>`."""
    return arn.split(":")[6]


@dataclass
class Routing:
    """Where the alias sends traffic: the primary function version and the extra versions' weights."""

    primary: str
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def canary(self) -> tuple[str, float] | None:
        """The one weighted extra version, if any."""
        return next(iter(self.weights.items()), None)


class LambdaDeployer:
    """One function's alias, versions and model layer."""

    def __init__(self, function_name: str, model_layer: str, alias: str = "live") -> None:
        self.function_name, self.model_layer, self.alias = function_name, model_layer, alias

    @cached_property
    def _lambda(self) -> Any:
        return boto3.client("lambda")

    @cached_property
    def _s3(self) -> Any:
        return boto3.client("s3")

    def routing(self) -> Routing:
        """The alias's current routing."""
        a = self._lambda.get_alias(FunctionName=self.function_name, Name=self.alias)
        weights = (a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return Routing(a["FunctionVersion"], {str(k): float(v) for k, v in weights.items()})

    def layers(self, version: str) -> list[str]:
        """The layer version ARNs of a function version."""
        cfg = self._lambda.get_function_configuration(FunctionName=self.function_name, Qualifier=version)
        return [layer["Arn"] for layer in cfg.get("Layers") or []]

    def model_layer_zip(self, version: str) -> tuple[str, bytes]:
        """The model layer ARN of a function version and its zip (fetched from the layer's content location)."""
        arn = next((a for a in self.layers(version) if layer_name_of(a) == self.model_layer), None)
        if arn is None:
            raise LookupError(f"{self.function_name}:{version} has no {self.model_layer} layer")
        location = self._lambda.get_layer_version_by_arn(Arn=arn)["Content"]["Location"]
        with urllib.request.urlopen(location, timeout=60) as r:  # a URL the Lambda API handed out
            return arn, r.read()

    def publish_layer(self, layer_zip: bytes, bucket: str, key: str, description: str) -> str:
        """Upload a model-layer zip and publish it as a new version of the model layer; its ARN."""
        self._s3.put_object(Bucket=bucket, Key=key, Body=layer_zip, ContentType="application/zip")
        out = self._lambda.publish_layer_version(
            LayerName=self.model_layer,
            Description=description[:256],
            Content={"S3Bucket": bucket, "S3Key": key},
            CompatibleRuntimes=["python3.11"],
        )
        return out["LayerVersionArn"]

    def publish_function(self, base_version: str, layer_arn: str, description: str) -> str:
        """Publish a function version equal to `base_version` but with `layer_arn` as its model layer."""
        layers = [layer_arn if layer_name_of(a) == self.model_layer else a for a in self.layers(base_version)]
        self._lambda.update_function_configuration(FunctionName=self.function_name, Layers=layers)
        self._lambda.get_waiter("function_updated_v2").wait(FunctionName=self.function_name)
        out = self._lambda.publish_version(FunctionName=self.function_name, Description=description[:256])
        return str(out["Version"])

    def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> Routing:
        """Point the alias at `primary`, with `canary` getting `weight` of the traffic when given."""
        weights = {canary: weight} if canary is not None and weight > 0 else {}
        self._lambda.update_alias(
            FunctionName=self.function_name,
            Name=self.alias,
            FunctionVersion=primary,
            RoutingConfig={"AdditionalVersionWeights": weights},
        )
        return Routing(primary, weights)
