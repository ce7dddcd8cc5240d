"""The edge client authenticates: `Authorization: Bearer <token>` from the `token` option or LITESERVE_LOCAL_TOKEN,
only to the endpoint's own origin; a refused token is a rejection, not retried. Against a small in-process server
that refuses requests without the token as the local gateway does (401) and serves the committed edge model."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from liteserve_edge import CloudClient, CloudRejected, TwoPhaseClient, fetch_model
from liteserve_edge.cli import main as cli_main

from tests.support import MODEL_ROOT

EDGE_DIR = MODEL_ROOT / "digits-edge"
TOKEN = "edge-test-token"


class Server:
    """Records the Authorization header of every request; answers 401 without `Bearer TOKEN`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                given = self.headers.get("authorization")
                server.seen.append((self.path, given))
                if given != f"Bearer {TOKEN}":
                    status, out = 401, b'{"message":"Unauthorized"}'
                elif self.path.startswith("/redirect?to="):  # e.g. an artifact route answering with a presigned URL
                    self.send_response(302)
                    self.send_header("location", self.path.split("=", 1)[1])
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                elif self.path.endswith("/artifact/manifest"):
                    status, out = 200, (EDGE_DIR / "manifest.json").read_bytes()
                elif self.path.endswith("/artifact"):
                    status, out = 200, (EDGE_DIR / "model.tflite").read_bytes()
                elif self.path == "/v1/edge/agreements":
                    status, out = 200, json.dumps({"received": len(json.loads(body))}).encode()
                else:  # :predict: class 0 for every key
                    keys = [i["key"] for i in json.loads(body)["instances"]]
                    preds = [{"key": k, "class_id": 0, "probabilities": [1.0] + [0.0] * 9} for k in keys]
                    status, out = 200, json.dumps({"predictions": preds}).encode()
                self.send_response(status)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITESERVE_LOCAL_TOKEN", raising=False)


def test_token_option_and_environment(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    CloudClient(server.url, "m", token=TOKEN).request("GET", "/v1/models/m/artifact/manifest")
    monkeypatch.setenv("LITESERVE_LOCAL_TOKEN", TOKEN)
    CloudClient(server.url, "m").request("GET", "/v1/models/m/artifact/manifest")
    with pytest.raises(CloudRejected):  # the option wins over the environment
        CloudClient(server.url, "m", token="other").request("GET", "/v1/models/m/artifact/manifest")
    assert [given for _, given in server.seen] == [f"Bearer {TOKEN}", f"Bearer {TOKEN}", "Bearer other"]


def test_a_refused_token_is_rejected_without_retries(server: Server) -> None:
    client = CloudClient(server.url, "m", retries=3, backoff=0.0)
    with pytest.raises(CloudRejected) as err:
        client.request("GET", "/v1/models/m/artifact/manifest")
    assert err.value.status == 401 and err.value.message == "Unauthorized"
    assert client.stats.attempts == 1 and server.seen == [("/v1/models/m/artifact/manifest", None)]


def test_the_token_goes_only_to_the_endpoint_origin(server: Server, tmp_path: Path) -> None:
    other = Server()  # e.g. a presigned S3 URL: it must not see the API's token
    try:
        with pytest.raises(CloudRejected):
            fetch_model(server.url, "digits-edge", tmp_path, artifact_url=other.url + "/file/artifact", token=TOKEN)
    finally:
        other.httpd.shutdown()
        other.httpd.server_close()
    assert server.seen == [("/v1/models/digits-edge/artifact/manifest", f"Bearer {TOKEN}")]
    assert other.seen == [("/file/artifact", None)]


def test_the_token_does_not_follow_a_redirect_to_another_origin(server: Server) -> None:
    other = Server()
    try:
        with pytest.raises(CloudRejected):
            client = CloudClient(server.url, "digits", token=TOKEN, retries=0)
            client.request("GET", f"/redirect?to={other.url}/file/artifact")
    finally:
        other.httpd.shutdown()
        other.httpd.server_close()
    assert server.seen == [(f"/redirect?to={other.url}/file/artifact", f"Bearer {TOKEN}")]
    assert other.seen == [("/file/artifact", None)]


def test_two_phase_client_and_fetch_send_the_token(server: Server, tmp_path: Path) -> None:
    with TwoPhaseClient.from_deployment(
        server.url, "digits-edge", tmp_path / "models", 1.0, queue_path=tmp_path / "q.sqlite3", token=TOKEN
    ) as client:
        out = client.predict([{"key": "k1", "x": [0.0] * 64}])
    assert out[0].phase == "cloud" and out[0].error is None
    assert {given for _, given in server.seen} == {f"Bearer {TOKEN}"} and len(server.seen) == 4
    assert server.seen[-1][0] == "/v1/edge/agreements"  # the agreement record goes to the same origin, with the token


def test_cli_reads_the_token_file(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = ["fetch", "--endpoint", server.url, "--dest", str(tmp_path / "m")]
    assert cli_main(args) == 5  # no token: refused
    assert cli_main([*args, "--token-file", str(token_file)]) == 0
    assert (tmp_path / "m" / "model.tflite").read_bytes() == (EDGE_DIR / "model.tflite").read_bytes()
    assert "HTTP 401" in capsys.readouterr().err
