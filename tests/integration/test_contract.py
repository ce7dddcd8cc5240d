"""Contract test: schemathesis generates requests from the API's own OpenAPI document (fetched from GET /openapi.json)
and sends them to the local cloud's HTTP API (real template, handlers and moto). No request may get a 5xx, every
4xx must carry `{"error": "..."}`, and every 2xx must conform to the documented response schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from localcloud import LocalCloud
from tests.integration.conftest import auth, project_cloud

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Examples per operation and generation mode; the operations with a body (predict, infer, labels) get more: their
# input space is the large one. Operations whose only input is an enum of model names run out after a few.
EXAMPLES = 50
BODY_EXAMPLES = 150
MIN_REQUESTS = 2000


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-contract") as cloud:
        yield cloud


def _error_body(response: requests.Response) -> str | None:
    """Why a 4xx body is not `{"error": "<non-empty>"}`, or None when it is."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:80]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"].strip():
        return f"no error message: {response.text[:80]!r}"
    return None


class Tally:
    """What the run sent and got back."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.statuses: dict[int, int] = {}
        self.failures: list[str] = []
        self.unsatisfiable: list[str] = []


def _fuzz(operation, mode: GenerationMode, base_url: str, headers: dict[str, str], tally: Tally) -> None:
    """Send EXAMPLES generated requests of one operation in one mode; record failures instead of raising (no
    shrinking: every example is a request, and the test reports them all at the end)."""
    label = f"{operation.label} [{mode.value}]"
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]

    @settings(
        max_examples=BODY_EXAMPLES if operation.body else EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        # A new connection per request (no session): the local gateway answers keep-alive requests in two TCP
        # segments, which Nagle + delayed ACK hold for ~40 ms each.
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        tally.sent[label] = tally.sent.get(label, 0) + 1
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        where = f"{label}: {case.method} {case.formatted_path} -> {response.status_code}"
        if response.status_code >= 500:
            tally.failures.append(f"{where} {response.text[:200]}")
        elif response.status_code >= 400:
            problem = _error_body(response)
            if problem:
                tally.failures.append(f"{where} {problem}")
        else:
            try:
                case.validate_response(response, checks=checks)
            except Exception as exc:  # schemathesis reports every failed check in one exception group
                tally.failures.append(f"{where} does not conform: {str(exc)[:300]}")

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        tally.unsatisfiable.append(label)  # e.g. only an enum path parameter, which negative mode cannot break


def test_generated_requests_get_no_5xx_and_4xx_carry_an_error(lc):
    served = requests.get(f"{lc.api_url}/openapi.json", headers=auth(lc), timeout=10)
    assert served.status_code == 200
    assert served.json() == json.loads((ROOT / "openapi.json").read_text())  # the served contract is the committed one
    schema = schemathesis.openapi.from_dict(served.json())
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, lc.api_url, auth(lc), tally)

    total = sum(tally.sent.values())
    print(
        f"\ncontract: {total} requests over {len(tally.sent)} operation/mode pairs; "
        f"statuses {dict(sorted(tally.statuses.items()))}; no negative case for {tally.unsatisfiable}"
    )
    assert not tally.failures, f"{len(tally.failures)} bad answers, first ones:\n" + "\n".join(tally.failures[:15])
    assert total >= MIN_REQUESTS
    assert tally.statuses.get(200, 0) > 0 and sum(n for s, n in tally.statuses.items() if 400 <= s < 500) > 0
