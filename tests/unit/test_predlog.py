"""Prediction log: the line written after a prediction, and its parsing back into per-key records."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from liteserve.http import Request, response
from liteserve.predlog import INSTANCE_KIND, PredictionLog
from liteserve.records import Signatures, parse_line, parse_lines

from tests.support import MODEL_ROOT, http_event


@pytest.fixture(scope="module")
def signatures() -> Signatures:
    return Signatures(MODEL_ROOT)


def serve(service, path: str, body: dict | str, raw: str | None = None):
    event = http_event("POST", path, body if raw is None else raw)
    request = Request.from_event(event)
    result = service.handle(request)
    return result.served, event["body"], response(result.status, result.document)["body"]


def write(log: PredictionLog, served, protocol: str, request: str, answer: str) -> list[str]:
    lines: list[str] = []
    log._write = lines.append
    log.record(served, protocol, request, answer, "req-1")
    return "".join(lines).splitlines()


def test_one_line_embeds_the_raw_bodies_and_parses_back_per_key(service, digits, signatures):
    x, _ = digits
    body = {"instances": [{"key": f"k{i}", "x": row.tolist()} for i, row in enumerate(x[:5])]}
    served, raw, answer = serve(service, "/v1/models/digits:predict", body)
    [line] = write(PredictionLog(clock=lambda: 1795835400.5), served, "tfserving", raw, answer)
    doc = orjson.loads(line)
    assert doc["liteserve"] == "prediction" and doc["time"] == 1795835400.5 and doc["request_id"] == "req-1"
    assert doc["request"] == body and doc["response"] == orjson.loads(answer)
    records = parse_line(line, signatures)
    assert [r["key"] for r in records] == [f"k{i}" for i in range(5)]
    for r, i in zip(records, range(5), strict=True):
        assert r["model"] == "digits" and r["version"] == served.model.version and r["source"] == "online"
        assert np.allclose(r["inputs"]["x"], x[i])
        assert r["outputs"]["class_id"] == int(served.outputs["class_id"][i])
        assert np.allclose(r["outputs"]["probabilities"], served.outputs["probabilities"][i])


@pytest.mark.parametrize("form", ["columnar_keyed", "unkeyed_rows", "v2_keyed"])
def test_every_request_form_parses_to_the_served_outputs(service, digits, signatures, form):
    x, _ = digits
    rows = x[:3]
    if form == "columnar_keyed":
        path, body = "/v1/models/digits:predict", {"inputs": {"key": ["a", "b", "c"], "x": rows.tolist()}}
    elif form == "unkeyed_rows":
        path, body = "/v1/models/digits:predict", {"signature_name": "embedding", "instances": rows.tolist()}
    else:
        path = "/v2/models/digits/infer"
        body = {
            "inputs": [
                {"name": "key", "datatype": "BYTES", "shape": [3], "data": ["a", "b", "c"]},
                {"name": "x", "datatype": "FP32", "shape": [3, 64], "data": rows.reshape(-1).tolist()},
            ]
        }
    served, raw, answer = serve(service, path, body)
    [line] = write(PredictionLog(), served, "v2" if path.startswith("/v2") else "tfserving", raw, answer)
    records = parse_line(line, signatures)
    assert [r["key"] for r in records] == (list("abc") if form != "unkeyed_rows" else [None] * 3)
    for i, r in enumerate(records):
        assert r["signature"] == served.signature
        for name, value in served.outputs.items():
            assert np.allclose(r["outputs"][name], value[i])


def test_newlines_in_the_raw_body_never_split_the_record(service, digits, signatures):
    x, _ = digits
    row = orjson.dumps(x[0].tolist()).decode()
    raw = '{"instances":\n [{"key": "k", "x": ' + row + "}]\r\n}"
    served, body, answer = serve(service, "/v1/models/digits:predict", {}, raw=raw)
    lines = write(PredictionLog(), served, "tfserving", body, answer)
    assert len(lines) == 1
    assert [r["key"] for r in parse_line(lines[0], signatures)] == ["k"]


def test_large_bodies_fall_back_to_one_line_per_instance(service, digits, signatures):
    x, _ = digits
    body = {"instances": [{"key": f"k{i}", "x": row.tolist()} for i, row in enumerate(x[:4])]}
    served, raw, answer = serve(service, "/v1/models/digits:predict", body)
    lines = write(PredictionLog(max_inline_bytes=100), served, "tfserving", raw, answer)
    assert len(lines) == 4
    assert {orjson.loads(line)["liteserve"] for line in lines} == {INSTANCE_KIND}
    records = list(parse_lines(lines, signatures))
    assert [r["key"] for r in records] == ["k0", "k1", "k2", "k3"]
    assert np.allclose([r["inputs"]["x"] for r in records], x[:4])
    assert [r["outputs"]["class_id"] for r in records] == served.outputs["class_id"].tolist()


def test_sampling_keeps_about_the_configured_share(service, digits):
    x, _ = digits
    served, raw, answer = serve(service, "/v1/models/digits:predict", {"instances": [x[0].tolist()]})
    rng = np.random.default_rng(0)
    log = PredictionLog(sample_rate=0.25, rng=rng.random, write=lambda _: None)
    written = sum(log.record(served, "tfserving", raw, answer, None) for _ in range(4000))
    assert 850 < written < 1150
    assert PredictionLog(sample_rate=0.0, write=lambda _: None).record(served, "tfserving", raw, answer, None) == 0
    with pytest.raises(ValueError):
        PredictionLog(sample_rate=1.5)


def test_other_lines_are_skipped_and_unknown_models_refused(signatures):
    assert parse_line('{"_aws": {}, "Latency": [1.0]}', signatures) == []
    assert parse_line("START RequestId: abc Version: $LATEST", signatures) == []
    line = '{"liteserve":"prediction","time":1,"model":"nope","version":"1","signature":"s","protocol":"v2"}'
    with pytest.raises(ValueError, match="nope"):
        parse_line(line, signatures)


def test_the_predict_handler_writes_the_line_after_answering(digits, capsys):
    from tests.support import FakeLambdaContext, import_predict_handler

    app = import_predict_handler()
    x, _ = digits
    event = http_event("POST", "/v1/models/digits:predict", {"instances": [{"key": "h1", "x": x[0].tolist()}]})
    capsys.readouterr()
    answer = app.lambda_handler(event, FakeLambdaContext())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"liteserve"')]
    assert len(lines) == 1
    assert orjson.loads(lines[0])["response"] == orjson.loads(answer["body"])
