"""The online prediction service: routes TF Serving and Open Inference Protocol V2 requests to the models.

Plain Python: `PredictService.handle(request)` returns (status, document) or raises a LiteserveError. The Lambda
handler only adapts events to it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from liteserve import settings
from liteserve.errors import BadRequest, ModelUnavailable, NotFound
from liteserve.http import Binary, Request, Result, Router, Served
from liteserve.keys import key_field
from liteserve.protocols import labels, tfserving, v2
from liteserve.runtime import Model, ModelRepository

# API Gateway and Lambda cap a synchronous request at 6 MB; refuse earlier with a clear 413.
_DEFAULT_MAX_BODY = 6 * 1024 * 1024
_NAME = r"(?P<name>[A-Za-z0-9._-]+)"
_VERSION = r"(?:/versions/(?P<version>[A-Za-z0-9._-]+))?"


@dataclass(frozen=True)
class ServingConfig:
    """Limits and names, from the environment (see template.yaml)."""

    max_body_bytes: int = _DEFAULT_MAX_BODY
    max_instances: int = 1000
    key_field: str = "key"

    @classmethod
    def from_env(cls) -> ServingConfig:
        """Read LITESERVE_MAX_BODY_BYTES, LITESERVE_MAX_INSTANCES and LITESERVE_KEY_FIELD."""
        return cls(
            max_body_bytes=int(os.environ.get(settings.MAX_BODY_BYTES, _DEFAULT_MAX_BODY)),
            max_instances=int(os.environ.get(settings.MAX_INSTANCES, 1000)),
            key_field=key_field(),
        )


class PredictService(Router):
    """Routes a request to its protocol handler (its route table is the TF Serving and V2 REST APIs)."""

    def __init__(self, models: ModelRepository, config: ServingConfig | None = None) -> None:
        self.models = models
        self.config = config or ServingConfig.from_env()
        super().__init__(
            [
                ("POST", rf"/v1/models/{_NAME}{_VERSION}:(?P<verb>predict|classify|regress)", self._tf_predict),
                ("GET", rf"/v1/models/{_NAME}{_VERSION}/metadata", self._tf_metadata),
                ("GET", rf"/v1/models/{_NAME}{_VERSION}/artifact", self._artifact),
                ("GET", rf"/v1/models/{_NAME}{_VERSION}/artifact/manifest", self._artifact_manifest),
                ("GET", rf"/v1/models/{_NAME}{_VERSION}", self._tf_status),
                ("GET", r"/v2", self._v2_server),
                ("GET", r"/v2/health/live", self._v2_live),
                ("GET", r"/v2/health/ready", self._v2_ready),
                ("GET", rf"/v2/models/{_NAME}{_VERSION}/ready", self._v2_model_ready),
                ("GET", rf"/v2/models/{_NAME}{_VERSION}", self._v2_model),
                ("POST", rf"/v2/models/{_NAME}{_VERSION}/infer", self._v2_infer),
                ("GET", r"/openapi\.json", self._openapi),
            ]
        )

    # Dispatch on method and path; unknown paths are 404, known paths with another method 405 (an alias, not a
    # wrapper: one call less per request).
    handle = Router.dispatch

    def _model(self, name: str, version: str | None) -> Model:
        model = self.models.get(name)
        if version is not None and version != model.version:
            raise NotFound(f"model '{name}' version {version} not found; serving version {model.version}")
        return model

    # TF Serving REST
    def _tf_predict(self, request: Request, name: str, version: str | None, verb: str) -> Result:
        model = self._model(name, version)
        doc, has_bools = request.json(self.config.max_body_bytes)
        if verb != "predict":
            return self._tf_examples(model, verb, doc, has_bools)
        call = tfserving.decode_predict(
            doc, model, key_field=self.config.key_field, max_instances=self.config.max_instances, check_bools=has_bools
        )
        outputs = model.predict(call.signature.name, call.inputs)
        served = Served(model, call.signature.name, call.keys, call.inputs, outputs)
        return Result(200, tfserving.encode_predict(call, tfserving.select_outputs(call, model, outputs)), served)

    def _tf_examples(self, model: Model, verb: str, doc: object, has_bools: bool) -> Result:
        """`:classify` / `:regress` over the JSON examples format."""
        call = tfserving.decode_examples(
            doc,
            model,
            verb,
            key_field=self.config.key_field,
            max_instances=self.config.max_instances,
            check_bools=has_bools,
            labels=model.manifest.labels,
        )
        outputs = model.predict(call.signature.name, call.inputs)
        served = Served(model, call.signature.name, call.keys, call.inputs, outputs, json_exchange=False)
        if verb == "classify":
            return Result(200, tfserving.encode_classify(call, outputs, model.manifest.labels), served)
        return Result(200, tfserving.encode_regress(call, outputs), served)

    def _tf_metadata(self, request: Request, name: str, version: str | None) -> Result:
        return Result(200, tfserving.model_metadata(self._model(name, version)))

    def _tf_status(self, request: Request, name: str, version: str | None) -> Result:
        return Result(200, tfserving.model_status(self._model(name, version)))

    # Model artifacts, for edge devices (two-phase prediction): the served file and its manifest
    def _artifact(self, request: Request, name: str, version: str | None) -> Result:
        model = self._model(name, version)
        content = (self.models.root / model.name / model.manifest.file).read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        if digest != model.sha256:  # the layer is read-only: only a broken deployment gets here
            raise ModelUnavailable(f"model {model.name}: {model.manifest.file} changed since it was loaded")
        headers = {
            "x-liteserve-sha256": digest,
            "x-liteserve-model-version": model.version,
            "content-disposition": f'attachment; filename="{model.name}.tflite"',
        }
        return Result(200, Binary(content, headers=headers))

    def _artifact_manifest(self, request: Request, name: str, version: str | None) -> Result:
        return Result(200, self._model(name, version).manifest.raw)

    def _openapi(self, request: Request) -> Result:
        from liteserve import openapi  # only this route needs it: keep it out of the cold start

        doc = openapi.document(self.models, max_instances=self.config.max_instances, key_field=self.config.key_field)
        return Result(200, doc)

    # Open Inference Protocol V2
    def _v2_server(self, request: Request) -> Result:
        return Result(200, v2.server_metadata())

    def _v2_live(self, request: Request) -> Result:
        return Result(200, {"live": True})

    def _v2_ready(self, request: Request) -> Result:
        ready = bool(self.models.names)
        return Result(200 if ready else 503, {"ready": ready})

    def _v2_model_ready(self, request: Request, name: str, version: str | None) -> Result:
        return Result(200, {"name": self._model(name, version).name, "ready": True})

    def _v2_model(self, request: Request, name: str, version: str | None) -> Result:
        return Result(200, v2.model_metadata(self._model(name, version)))

    def _v2_infer(self, request: Request, name: str, version: str | None) -> Result:
        model = self._model(name, version)
        header = request.headers.get(v2.HEADER_LENGTH)
        json_length = None
        if header is not None:
            try:
                json_length = int(header)
            except ValueError:
                raise BadRequest(f"{v2.HEADER_LENGTH} must be an integer, got {header!r}") from None
        doc, has_bools = request.json(self.config.max_body_bytes, json_length)
        binary = b"" if json_length is None else request.binary_tail(self.config.max_body_bytes, json_length)
        call = v2.decode_infer(
            doc,
            model,
            key_field=self.config.key_field,
            max_instances=self.config.max_instances,
            check_bools=has_bools,
            binary=binary,
        )
        outputs = model.predict(call.signature.name, call.inputs)
        plain = not (call.binary_inputs or call.binary_outputs)
        served = Served(model, call.signature.name, call.keys, call.inputs, outputs, json_exchange=plain)
        shown = labels.with_labels(model, call.signature.name, outputs, call.requested)
        if call.binary_outputs:
            body, length = v2.encode_binary(call, model, shown)
            return Result(200, Binary(body, headers={v2.HEADER_LENGTH: str(length)}), served)
        return Result(200, v2.encode_infer(call, model, shown), served)
