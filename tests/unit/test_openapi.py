"""The OpenAPI document: generated from the codecs' schemas, committed as openapi.json, served by the predict function,
and in step with the route tables and the template's HTTP API routes."""

from __future__ import annotations

import json
import re

import pytest
from liteserve import openapi
from liteserve.batch import api as batch_api
from liteserve.errors import MethodNotAllowed, NotFound
from liteserve.http import Request
from liteserve.runtime import ModelRepository
from liteserve.service import PredictService, ServingConfig
from openapi_spec_validator import validate

from tests.support import ROOT

DEFAULTS = ServingConfig()


@pytest.fixture(scope="module")
def doc(models: ModelRepository) -> dict:
    return openapi.document(models, max_instances=DEFAULTS.max_instances, key_field=DEFAULTS.key_field)


def test_committed_file_is_the_generated_document(doc):
    committed = (ROOT / "openapi.json").read_bytes()
    regenerate = "LITESERVE_MODEL_ROOT=layers/model/models PYTHONPATH=layers/shared/python python -m liteserve.openapi"
    assert committed == openapi.dumps(doc), f"openapi.json is stale: run `{regenerate} > openapi.json`"


def test_document_is_valid_openapi_3_1(doc):
    validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_served_document_equals_the_generated_one(models, doc):
    service = PredictService(models, DEFAULTS)
    result = service.handle(Request("GET", "/openapi.json", {}, b""))
    assert result.status == 200
    assert json.loads(openapi.dumps(result.document)) == json.loads(openapi.dumps(doc))


def test_model_names_and_limits_come_from_the_models_and_config(models):
    small = openapi.document(models, max_instances=7, key_field="id")
    assert small["paths"]["/v1/models/{name}:predict"]["post"]["parameters"][0]["schema"]["enum"] == sorted(
        models.names
    )
    rows = small["components"]["schemas"]["PredictRequest"]["properties"]["instances"]
    assert rows["maxItems"] == 7
    keyed = small["paths"]["/v1/models/{name}:predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "id" in keyed["examples"]["keyed"]["value"]["instances"][0]


def _concrete(path: str, name: str) -> str:
    return path.replace("{name}", name).replace("{version}", "1").replace("{job_id}", "j1").replace("{key}", "k1")


def test_every_documented_operation_has_a_route_and_every_route_is_documented(models, doc):
    service = PredictService(models, DEFAULTS)
    name = sorted(models.names)[0]
    used: set[int] = set()
    for path, operations in doc["paths"].items():
        for method in operations:
            concrete = _concrete(path, name)
            if concrete.startswith((batch_api.JOBS, batch_api.PREDICTIONS)) or concrete == "/v1/labels":
                continue  # other functions: checked against the template below
            hits = [
                i
                for i, (m, pattern, _) in enumerate(service.routes)
                if m == method.upper() and pattern.fullmatch(concrete)
            ]
            assert hits, f"{method.upper()} {path} is documented but PredictService has no route for it"
            used.add(hits[0])
    assert used == set(range(len(service.routes))), "a PredictService route is missing from the document"


def test_unknown_paths_are_not_documented_and_the_service_refuses_them(models):
    service = PredictService(models, DEFAULTS)
    for method, path in (("GET", "/openapi.yaml"), ("POST", "/openapi.json")):
        with pytest.raises((NotFound, MethodNotAllowed)):
            service.handle(Request(method, path, {}, b""))


def _api_routes() -> list[tuple[str, str]]:
    """(method, path) of every HttpApi event in template.yaml."""
    text = (ROOT / "template.yaml").read_text()
    events = re.findall(r"Type: HttpApi\s+Properties:\s+ApiId: !Ref HttpApi\s+Path: (\S+)\s+Method: (\S+)", text)
    return [(method.upper(), path) for path, method in events]


def _gateway_matches(route: str, path: str) -> bool:
    pattern = re.escape(route).replace(r"\{proxy\+\}", ".+")
    pattern = re.sub(r"\\\{[A-Za-z_]+\\\}", "[^/]+", pattern)
    return re.fullmatch(pattern, path) is not None


def test_every_documented_operation_is_routed_by_the_template(models, doc):
    routes = _api_routes()
    assert ("GET", "/openapi.json") in routes
    name = sorted(models.names)[0]
    for path, operations in doc["paths"].items():
        for method in operations:
            concrete = _concrete(path, name)
            assert any(m in (method.upper(), "ANY") and _gateway_matches(r, concrete) for m, r in routes), (
                f"{method.upper()} {path} has no HttpApi route in template.yaml"
            )
