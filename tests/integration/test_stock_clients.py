"""Stock Open Inference Protocol HTTP clients with their default settings (binary tensor data on) against the local
cloud's HTTP API: tritonclient's InferenceServerClient and kserve's InferenceRESTClient (v2) — health, metadata and
infer with binary inputs and outputs, BYTES keys, requested outputs including the key, a pinned version, gzip."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from liteserve.runtime import ModelRepository
from tritonclient.utils import InferenceServerException

from localcloud import LocalCloud
from tests.integration.conftest import auth, project_cloud
from tests.support import MODEL_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-stock-clients") as cloud:
        yield cloud


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    from training.data import split

    return split().x_test[:3].astype(np.float32)


@pytest.fixture(scope="module")
def reference(rows: np.ndarray) -> dict[str, np.ndarray]:
    return ModelRepository(MODEL_ROOT).get("digits").predict("serving_default", {"x": rows})


@pytest.fixture(scope="module")
def client(lc: LocalCloud) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(lc.api_url.removeprefix("http://")) as c:
        yield c


def _triton_inputs(rows: np.ndarray, keys: list[bytes]) -> list[triton.InferInput]:
    x = triton.InferInput("x", list(rows.shape), "FP32")
    x.set_data_from_numpy(rows)  # binary_data=True: the client's default
    key = triton.InferInput("key", [len(keys)], "BYTES")
    key.set_data_from_numpy(np.array(keys, dtype=np.object_))
    return [x, key]


def test_tritonclient_health_and_metadata(lc, client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits", headers=auth(lc))
    server = client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("digits", headers=auth(lc))
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]


def test_tritonclient_infer_binary_in_and_out(lc, client, rows, reference):
    result = client.infer("digits", _triton_inputs(rows, [b"a", b"b", b"c"]), headers=auth(lc))
    np.testing.assert_array_equal(result.as_numpy("probabilities"), reference["probabilities"])
    np.testing.assert_array_equal(result.as_numpy("class_id"), reference["class_id"])  # INT64
    assert result.as_numpy("key").tolist() == [b"a", b"b", b"c"]
    assert result.get_output("probabilities")["parameters"]["binary_data_size"] == rows.shape[0] * 10 * 4


def test_tritonclient_requested_outputs_version_and_gzip(lc, client, rows, reference):
    outputs = [triton.InferRequestedOutput("key"), triton.InferRequestedOutput("class_id", binary_data=False)]
    result = client.infer(
        "digits",
        _triton_inputs(rows, [b"k1", b"k2", b"k3"]),
        outputs=outputs,
        model_version="1",
        request_compression_algorithm="gzip",
        headers=auth(lc),
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["key", "class_id"]
    assert result.as_numpy("key").tolist() == [b"k1", b"k2", b"k3"]
    assert result.get_output("class_id")["data"] == reference["class_id"].tolist()  # JSON, as asked


def test_tritonclient_sees_a_clear_error(lc, client, rows):
    x = triton.InferInput("x", [3, 63], "FP32")
    x.set_data_from_numpy(rows[:, :63].copy())
    with pytest.raises(InferenceServerException, match=r"shape \[3, 63\] does not match the model's \[N, 64\]"):
        client.infer("digits", [x], headers=auth(lc))


def test_kserve_rest_client_v2(lc, rows, reference):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    async def run() -> None:
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            assert await client.is_server_live(lc.api_url)
            assert await client.is_server_ready(lc.api_url)
            assert await client.is_model_ready(lc.api_url, "digits", headers=auth(lc))
            x = InferInput("x", list(rows.shape), "FP32")
            x.set_data_from_numpy(rows)  # binary_data=True: the client's default
            key = InferInput("key", [3], "BYTES")
            key.set_data_from_numpy(np.array([b"r1", b"r2", b"r3"], dtype=np.object_))
            request = InferRequest(model_name="digits", infer_inputs=[x, key], request_id="kserve-1")
            response = await client.infer(lc.api_url, request, model_name="digits", headers=auth(lc))
            got = {o.name: o.as_numpy() for o in response.outputs}
            np.testing.assert_array_equal(got["probabilities"], reference["probabilities"])
            np.testing.assert_array_equal(got["class_id"], reference["class_id"])
            assert got["key"].tolist() == ["r1", "r2", "r3"]
            assert response.id == "kserve-1"
            ask = [
                RequestedOutput("key", {"binary_data": True}),
                RequestedOutput("probabilities", {"binary_data": True}),
            ]
            request = InferRequest(model_name="digits", infer_inputs=[x, key], request_outputs=ask)
            response = await client.infer(lc.api_url, request, model_name="digits", headers=auth(lc))
            assert [o.name for o in response.outputs] == ["key", "probabilities"]
            np.testing.assert_array_equal(response.outputs[1].as_numpy(), reference["probabilities"])
        finally:
            await client.close()

    asyncio.run(run())
