"""Shared test/bench helpers: a Lambda context and real-shaped HTTP API (payload v2.0) events."""

from __future__ import annotations

import ast
import base64
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL_ROOT = ROOT / "layers" / "model" / "models"


@dataclass
class FakeLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str = "liteserve-dev-PredictFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:liteserve-dev-PredictFunction:live"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "1"
    log_group_name: str = "/aws/lambda/liteserve-dev-PredictFunction"
    log_stream_name: str = "2026/11/28/[1]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def http_event(
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    route_key: str = "$default",
    raw_body: bytes | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 event, as AWS sends it for the $default stage."""
    text: str | None = None
    b64 = False
    if raw_body is not None:
        try:
            text = raw_body.decode()
        except UnicodeDecodeError:
            text, b64 = base64.b64encode(raw_body).decode(), True
    elif body is not None:
        text = body if isinstance(body, str) else json.dumps(body)
    all_headers = {
        "accept": "*/*",
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": "curl/8.5.0",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if text is not None:
        all_headers["content-type"] = "application/json"
        all_headers["content-length"] = str(len(text))
    all_headers.update(headers or {})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "Jd1xYgJ9IAMEbXw=",
            "routeKey": route_key,
            "stage": "$default",
            "time": "28/Nov/2026:03:10:00 +0000",
            "timeEpoch": 1795835400000,
        },
        "isBase64Encoded": b64,
    }
    if text is not None:
        event["body"] = text
    return event


def predict_env() -> dict[str, str]:
    """The predict function's environment from template.yaml, with the model layer at its local path."""
    return {
        "LITESERVE_MODEL_ROOT": str(MODEL_ROOT),
        "LITESERVE_DEFAULT_MODEL": "digits",
        "POWERTOOLS_SERVICE_NAME": "liteserve",
        "POWERTOOLS_METRICS_NAMESPACE": "Liteserve",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
    }


def import_predict_handler() -> Any:
    """functions/predict/app.py as Lambda would run it, with the predict function's environment set first (one module
    per process, as a warm Lambda container keeps it)."""
    os.environ.update({k: v for k, v in predict_env().items() if k not in os.environ})
    if "handler_predict" not in sys.modules:
        sys.modules["handler_predict"] = _load_handler("predict")
    return sys.modules["handler_predict"]


def create_labels_table(ddb: Any, name: str) -> None:
    """Create a table shaped like template.yaml's LabelsTable (key hash; by_day index on day + time)."""
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "key", "AttributeType": "S"},
            {"AttributeName": "day", "AttributeType": "S"},
            {"AttributeName": "time", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_day",
                "KeySchema": [
                    {"AttributeName": "day", "KeyType": "HASH"},
                    {"AttributeName": "time", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


def import_handler(folder: str, env: dict[str, str]) -> Any:
    """Import functions/<folder>/app.py under a module name of its own (every handler module is called `app`), with
    `env` set first, as Lambda would have it (a fresh module on every call)."""
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return _load_handler(folder)


def _load_handler(folder: str) -> Any:
    """functions/<folder>/app.py executed from its file as module `handler_<folder>`. No sys.path edit: the shared
    package (`liteserve`, the layer's python/) is importable already — pytest's `pythonpath` setting and the Makefile's
    PYTHONPATH put layers/shared/python on the path as Lambda puts /opt/python; handlers import nothing from their own
    folder."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"handler_{folder}", ROOT / "functions" / folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_names(path: Path, name: str) -> set[str]:
    """Every module a file imports, anywhere in it (lazy imports in functions count), as absolute dotted names;
    `from pkg import sub` yields `pkg.sub` too (the walk keeps only the names that are modules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return found
