"""``make demo``: the end-to-end story on the embedded default, on a fresh local cloud (the product's story, told
from outside the emulator: it drives `localcloud` as a user would).

Each step prints its progress and result; a summary follows; the exit code is 0 only if every step passed.
Add steps with ``demo.step("title")`` blocks in :func:`run` (each check raises ``StepFailed`` or any exception).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.auth import bearer
from localcloud.checkout import copy_checkout
from localcloud.cloud import LocalCloud

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events" / "predict"
SHARED = REPO / "layers" / "shared" / "python"


class StepFailed(Exception):
    """A demo check did not hold."""


@dataclass
class Demo:
    """Step runner: numbered progress lines, timings, a summary."""

    results: list[tuple[str, bool, float, str]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, title: str, detail: Callable[[], str] | None = None, ticker: bool = True) -> Iterator[list[str]]:
        """Run one step; append short notes to the yielded list to show them next to the result. A step running longer
        than a few seconds prints its elapsed time (and `detail()`) as it goes, unless it shows its own (`ticker`)."""
        n = len(self.results) + 1
        print(f"[{n}] {title} ...", flush=True)
        notes: list[str] = []
        t0 = time.perf_counter()
        try:
            with ticking(detail) if ticker else contextlib.nullcontext():
                yield notes
        except Exception as exc:  # a failed step is reported, and the demo goes on with the next one
            dt = time.perf_counter() - t0
            self.results.append((title, False, dt, f"{type(exc).__name__}: {exc}"))
            print(f"    FAILED ({dt:.2f} s): {type(exc).__name__}: {exc}", flush=True)
            return
        dt = time.perf_counter() - t0
        self.results.append((title, True, dt, "; ".join(notes)))
        print(f"    ok ({dt:.2f} s){': ' + '; '.join(notes) if notes else ''}", flush=True)

    def summary(self) -> int:
        """Print the summary; return the exit code."""
        ok = sum(r[1] for r in self.results)
        print(f"\nsummary: {ok}/{len(self.results)} steps passed")
        for title, passed, dt, note in self.results:
            print(f"  {'PASS' if passed else 'FAIL'}  {dt:6.2f} s  {title}{'  — ' + note if note else ''}")
        return 0 if self.results and ok == len(self.results) else 1


@contextlib.contextmanager
def ticking(detail: Callable[[], str] | None = None, after: float = 3.0) -> Iterator[None]:
    """While the block runs past `after` seconds, print its elapsed time and `detail()` every 5 s (15 s when piped)."""
    stop = threading.Event()
    t0 = time.perf_counter()
    every = 5.0 if sys.stdout.isatty() else 15.0

    def tick() -> None:
        wait = after
        while not stop.wait(wait):
            try:
                text = detail() if detail else ""
            except Exception as exc:  # progress must never fail the step
                text = f"({type(exc).__name__})"
            print(f"      ... {time.perf_counter() - t0:.0f} s{'  ' + text if text else ''}", flush=True)
            wait = every

    thread = threading.Thread(target=tick, name="demo-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def last_line(path: Path, width: int = 100) -> str:
    """The last non-empty line of a growing log file (its tail only), cut to `width` characters."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return ""
    return lines[-1][:width] if lines else ""


@dataclass(frozen=True)
class Api:
    """The local HTTP API: its URL and the bearer token its protected routes need."""

    url: str
    token: str | None = None

    @classmethod
    def of(cls, lc: LocalCloud) -> Api:
        """The API of a running local cloud."""
        return cls(lc.api_url, lc.token)


def http(
    api: Api, method: str, path: str, body: str | bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """Call the local HTTP API with its token (``headers`` may override it); return (status, parsed JSON or text)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(
        api.url + path,
        data=data,
        method=method,
        headers={"content-type": "application/json", **bearer(api.token), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def expect(cond: bool, message: str) -> None:
    """Fail the current step unless ``cond``."""
    if not cond:
        raise StepFailed(message)


def replay(api: Api, event_file: Path) -> tuple[int, Any]:
    """Send the request an HTTP API event file describes (method, path, query, body) to the local API."""
    ev = json.loads(event_file.read_text())
    path = ev["rawPath"] + (f"?{ev['rawQueryString']}" if ev.get("rawQueryString") else "")
    return http(api, ev["requestContext"]["http"]["method"], path, ev.get("body"))


def run(demo: Demo, lc: LocalCloud) -> None:
    """The story: online serving, batch serving, labels and scheduled evaluation, two-phase prediction."""
    from training.data import split  # numpy + scikit-learn: the held-out digits the models never saw

    data = split()
    x, y = data.x_test, data.y_test
    online_keys = online(demo, Api.of(lc), x, y)
    batch_keys = batch(demo, lc, x, y)
    # Drifted traffic that later feeds retraining uses the training split's images; what is judged uses the held-out.
    evaluation(demo, lc, x, y, online_keys, batch_keys, data.x_train, data.y_train)
    retraining(demo, lc, x, y)
    two_phase(demo, lc, x, y)


def online(demo: Demo, api: Api, x: Any, y: Any) -> dict[str, int]:
    """Auth, keyed requests in both protocols and both signatures, and one bad request."""
    with demo.step("auth: data routes need the bearer token, health routes are open") as notes:
        anonymous, wrong = Api(api.url), Api(api.url, "not-the-token")
        status, body = http(anonymous, "GET", "/v2/health/ready")
        expect(status == 200, f"GET /v2/health/ready without a token -> {status} {body}")
        status, body = http(anonymous, "POST", "/v1/models/digits:predict", '{"instances": []}')
        expect((status, body) == (401, {"message": "Unauthorized"}), f"no token -> {status} {body}")
        status, body = http(wrong, "POST", "/v1/models/digits:predict", '{"instances": []}')
        expect((status, body) == (403, {"message": "Forbidden"}), f"wrong token -> {status} {body}")
        notes.append("health 200 without a token; predict 401 without, 403 with a wrong one")
    with demo.step("online: Open Inference V2 health and model metadata") as notes:
        status, body = http(api, "GET", "/v2/health/ready")
        expect(status == 200, f"GET /v2/health/ready -> {status} {body}")
        status, meta = http(api, "GET", "/v2/models/digits")
        expect(status == 200, f"GET /v2/models/digits -> {status} {meta}")
        notes.append(f"ready; digits v{meta['versions'][0]}, inputs {meta['inputs']}")
    keys = {f"online-{i:04d}": int(y[i]) for i in range(40)}
    items = list(keys)
    with demo.step("online: TF Serving :predict, 20 keyed instances (row format)") as notes:
        body = {"instances": [{"key": k, "x": x[i].tolist()} for i, k in enumerate(items[:20])]}
        status, out = http(api, "POST", "/v1/models/digits:predict", json.dumps(body))
        expect(status == 200, f"{status} {out}")
        preds = out["predictions"]
        expect([p["key"] for p in preds] == items[:20], "keys did not come back in order")
        right = sum(p["class_id"] == keys[p["key"]] for p in preds)
        for p in preds[:3]:
            print(f"      {p['key']}: class {p['class_id']} (p={max(p['probabilities']):.3f}), label {keys[p['key']]}")
        notes.append(f"{right}/20 correct")
    with demo.step("online: signature 'embedding' and the columnar format") as notes:
        body = {"signature_name": "embedding", "inputs": {"x": x[:2].tolist(), "key": items[:2]}}
        status, out = http(api, "POST", "/v1/models/digits:predict", json.dumps(body))
        expect(status == 200, f"{status} {out}")
        notes.append(f"keys {out['outputs']['key']}, embedding of {len(out['outputs']['embedding'][0])} values")
    with demo.step("online: Open Inference V2 infer, 20 keyed instances (BYTES key in, BYTES key out)") as notes:
        rows = x[20:40]
        body = {
            "id": "demo-1",
            "inputs": [
                {"name": "key", "shape": [20], "datatype": "BYTES", "data": items[20:40]},
                {"name": "x", "shape": [20, 64], "datatype": "FP32", "data": rows.reshape(-1).tolist()},
            ],
        }
        status, out = http(api, "POST", "/v2/models/digits/infer", json.dumps(body))
        expect(status == 200, f"{status} {out}")
        tensors = {t["name"]: t["data"] for t in out["outputs"]}
        expect(tensors["key"] == items[20:40], "V2 keys did not come back")
        right = sum(c == keys[k] for k, c in zip(tensors["key"], tensors["class_id"], strict=True))
        notes.append(f"id {out['id']}, {right}/20 correct")
    with demo.step("online: a bad request is a 400 that names the instance") as notes:
        body = {"instances": [{"key": "a", "x": x[0].tolist()}, {"key": "b", "x": x[1].tolist()[:60]}]}
        status, out = http(api, "POST", "/v1/models/digits:predict", json.dumps(body))
        expect(status == 400 and "instance 1" in out.get("error", ""), f"{status} {out}")
        notes.append(f"{status} {out['error']}")
    return keys


def batch(demo: Demo, lc: LocalCloud, x: Any, y: Any, rows: int = 20_000) -> dict[str, int]:
    """A keyed file dropped into S3, with shard progress, the manifest and a few output rows."""
    import orjson

    s3, bucket = lc.client("s3"), lc.name("DataBucket")
    keys: dict[str, int] = {}
    lines = []
    for i in range(rows):
        key = f"batch-{(i * 7919) % rows:05d}"  # shuffled, unique
        if i % 100 == 50:
            lines.append(orjson.dumps({"key": key, "x": x[i % len(x)].tolist()[:63]}))  # 1 % malformed
            continue
        keys[key] = int(y[i % len(x)])
        lines.append(orjson.dumps({"key": key, "x": x[i % len(x)].tolist()}))
    title = f"batch: drop incoming/demo-scores.jsonl ({rows} keyed rows, 1 % malformed), wait"
    with demo.step(title, ticker=False) as notes:  # it draws its own progress bar
        s3.put_object(Bucket=bucket, Key="incoming/demo-scores.jsonl", Body=b"\n".join(lines) + b"\n")
        deadline = time.monotonic() + 180
        job: dict[str, Any] = {}
        shown = None
        tty = sys.stdout.isatty()
        while time.monotonic() < deadline:
            status, job = http(Api.of(lc), "GET", "/v1/batch/jobs/demo-scores.jsonl")
            if status == 200:
                total, done = job["shards"]["total"] or 0, job["shards"]["done"]
                if (done, total, job["state"]) != shown:  # redraw only on progress (one line each when piped)
                    shown = (done, total, job["state"])
                    bar = "#" * int(30 * done / total) if total else ""
                    line = f"      [{bar:<30}] {done}/{total or '?'} shards  {job['state']:<10}"
                    print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
                if job.get("published"):  # ended and its manifest written
                    break
            time.sleep(0.3)
        if tty:
            print()
        expect(job.get("state") == "SUCCEEDED", f"job ended {job.get('state')}: {job.get('reasons')}")
        counts = job["counts"]
        expect(counts["rows_predicted"] == len(keys), f"{counts}")
        notes.append(
            f"{counts['rows_predicted']} predicted, {counts['rows_rejected']} rejected, "
            f"{job['shards']['total']} shards, {job['timings']['elapsed_s']} s"
        )
    with demo.step("batch: the _SUCCESS manifest, output rows joined back by key, the error file") as notes:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key="results/demo-scores.jsonl/_SUCCESS")["Body"].read())
        print("      " + json.dumps({k: manifest[k] for k in ("state", "run", "counts", "shards", "model_version")}))

        def read(uri: str) -> bytes:
            return s3.get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))["Body"].read()

        part = read(manifest["output"]["parts"][0])  # the manifest lists exactly the run's parts
        for line in part.splitlines()[:3]:
            row = orjson.loads(line)
            print(
                f"      {row['key']}: class {row['class_id']} (label {keys[row['key']]}), model v{row['model_version']}"
            )
        first = orjson.loads(read(manifest["output"]["errors"][0]).splitlines()[0])
        print(f"      error: {first}")
        notes.append(f"{len(part.splitlines())} rows in the first of {len(manifest['output']['parts'])} parts")
    return keys


def evaluation(
    demo: Demo,
    lc: LocalCloud,
    x: Any,
    y: Any,
    online_keys: dict[str, int],
    batch_keys: dict[str, int],
    x_drift: Any,
    y_drift: Any,
) -> None:
    """Labels by key, a scheduled evaluation of clean traffic, then drifted traffic that asks for retraining."""

    # Ground truth arrives for part of the traffic, as it would in production.
    labels = {**online_keys, **dict(list(batch_keys.items())[:3000])}
    with demo.step("labels: POST /v1/labels and a labels/ file with a bad row") as notes:
        items = [{"key": k, "label": str(v)} for k, v in labels.items()]
        for start in range(0, len(items), 5000):
            status, out = http(Api.of(lc), "POST", "/v1/labels", json.dumps(items[start : start + 5000]))
            expect(status == 200, f"{status} {out}")
        body = b'{"key": "online-0000", "label": "%d"}\n{"key": "broken"\n' % online_keys["online-0000"]
        lc.client("s3").put_object(Bucket=lc.name("DataBucket"), Key="labels/demo.jsonl", Body=body)
        lc.wait_idle(timeout=60)
        notes.append(f"{len(items)} labels posted; labels-errors/demo.jsonl names line 2")
    with demo.step("evaluation: ship the prediction log, fire the evaluation schedule (clean traffic)") as notes:
        lc.flush_logs()
        lc.wait_idle(timeout=60)
        [summary] = lc.fire_schedule("EvaluateFunction")
        result = summary["models"]["digits"]
        report = _report(lc, result["report"])
        version = report["versions"][next(iter(report["versions"]))]
        expect(result["retrain"] is False, f"clean traffic asked for retraining: {result.get('reasons')}")
        notes.append(
            f"{version['labelled']} labelled, accuracy {version['metrics']['accuracy']:.4f}, "
            f"drifted features {version['drift'].get('drifted_features', '?')}, no retraining"
        )
    with demo.step("evaluation: 1000 drifted requests (faded contrast, thicker strokes) + labels, fire again") as notes:
        drift_traffic(lc, "drift", x_drift[:1000], y_drift[:1000], seed=3)
        lc.flush_logs()
        lc.wait_idle(timeout=60)
        [summary] = lc.fire_schedule("EvaluateFunction")
        result = summary["models"]["digits"]
        expect(result["retrain"] is True, f"drift was not detected: {result}")
        print(f"      RetrainRequested ({result['trigger']}): {'; '.join(result['reasons'])}")
        local = _save_report(lc, result["report"])
        notes.append(f"report: {result['report']} (copy: {local})")


DRIFT_KINDS = ("contrast", "stroke")  # learnable covariate drift; the scenario's pixel noise destroys information


def drift_traffic(lc: LocalCloud, name: str, x: Any, y: Any, seed: int, chunk: int = 20) -> dict[str, int]:
    """Keyed V2 requests of drifted digits (`chunk` rows each: the alias picks a version per request), then their
    labels; returns how many rows each model version served."""
    import numpy as np

    from liteserve_dev.scenario import corrupt

    drifted = corrupt(np.asarray(x), 0.6, np.random.default_rng(seed), DRIFT_KINDS)
    keys = [f"{name}-{i:04d}" for i in range(len(drifted))]
    served: dict[str, int] = {}
    for start in range(0, len(keys), chunk):
        k, rows = keys[start : start + chunk], drifted[start : start + chunk]
        body = {
            "inputs": [
                {"name": "key", "datatype": "BYTES", "shape": [len(k)], "data": k},
                {"name": "x", "datatype": "FP32", "shape": [len(k), 64], "data": rows.reshape(-1).tolist()},
            ]
        }
        status, out = http(Api.of(lc), "POST", "/v2/models/digits/infer", json.dumps(body))
        expect(status == 200, f"{status} {out}")
        served[out["model_version"]] = served.get(out["model_version"], 0) + len(k)
    labels = [{"key": k, "label": str(int(v))} for k, v in zip(keys, y, strict=True)]
    status, out = http(Api.of(lc), "POST", "/v1/labels", json.dumps(labels))
    expect(status == 200, f"{status} {out}")
    return served


def _registry(lc: LocalCloud, key: str) -> Any:
    s3 = lc.client("s3")
    try:
        return json.loads(s3.get_object(Bucket=lc.name("DataBucket"), Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def retraining(demo: Demo, lc: LocalCloud, x: Any, y: Any) -> None:
    """RetrainRequested -> the retraining build -> candidate -> holdout gate -> canary -> promotion."""
    build_log = lc.builds["RetrainProject"].log_path
    with demo.step(
        "retraining: RetrainRequested -> CodeBuild project (local, .venv-train) -> candidate",
        detail=lambda: f"build log: {last_line(build_log)}",
    ) as notes:
        deadline = time.monotonic() + 900
        while True:
            done = [b for b in lc.status()["builds"]["RetrainProject"] if b.get("status") not in (None, "IN_PROGRESS")]
            if done or time.monotonic() > deadline:
                break
            time.sleep(1)
        expect(bool(done) and done[0]["status"] == "SUCCEEDED", f"retraining build: {done}")
        metrics = _registry(lc, "models/digits/2/metrics.json") or {}
        gate = (_registry(lc, "models/digits/2/promotion.json") or {"events": [{}]})["events"]
        verdict = next((e for e in gate if e.get("step") == "gate"), {})
        expect(verdict.get("action") == "canary", f"gate: {verdict}")
        n = verdict["numbers"]
        notes.append(
            f"build {done[0].get('duration_s', '?')} s; registry models/digits/2/ ({len(metrics)} metric sets)"
        )
        notes.append(
            f"gate on {n['holdout_rows']} held-out recent rows: candidate {n['candidate_accuracy']:.4f} vs live "
            f"{n['live_accuracy']:.4f} -> canary"
        )
    with demo.step("canary: alias live sends 50 % to version 2; drifted traffic; the schedule promotes it") as notes:
        served = drift_traffic(lc, "canary", x[:300], y[:300], seed=4)
        expect(set(served) == {"1", "2"}, f"served by {served}")
        lc.flush_logs()
        lc.wait_idle(timeout=60)
        [summary] = lc.fire_schedule("EvaluateFunction")
        canary = summary["models"]["digits"]["canary"]
        expect(canary["verdict"]["action"] == "promote", f"canary review: {canary}")
        scores = canary["since_canary"]
        notes.append(
            f"served {served}; since the canary: "
            + ", ".join(f"v{v} {s['accuracy']:.4f} ({s['labelled']} labelled)" for v, s in scores.items() if s)
        )
    with demo.step("promoted: every request served by version 2, scored on drifted held-out digits") as notes:
        served = drift_traffic(lc, "after", x, y, seed=5)
        expect(set(served) == {"2"}, f"served by {served}")
        lc.flush_logs()
        lc.wait_idle(timeout=60)
        [summary] = lc.fire_schedule("EvaluateFunction")
        result = summary["models"]["digits"]
        local = _save_report(lc, result["report"])
        notes.append(f"version 2 accuracy in the window {result['versions']['2']['accuracy']:.4f}")
        notes.append(f"report: {result['report']} (open {local})")


def _report(lc: LocalCloud, uri: str) -> dict[str, Any]:
    key = uri.split("/", 3)[3].replace(".html", ".json")
    return json.loads(lc.client("s3").get_object(Bucket=lc.name("DataBucket"), Key=key)["Body"].read())


def _save_report(lc: LocalCloud, uri: str) -> Path:
    """moto keeps objects in memory: copy the HTML report next to the demo's state so a person can open it."""
    key = uri.split("/", 3)[3]
    local = lc.state_dir / "reports" / key.replace("/", "_")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(lc.client("s3").get_object(Bucket=lc.name("DataBucket"), Key=key)["Body"].read())
    return local


def two_phase(demo: Demo, lc: LocalCloud, x: Any, y: Any) -> None:
    """The edge client on a stream; the cloud goes offline halfway, comes back, the queue is flushed."""
    from liteserve_edge import fetch_model
    from liteserve_edge.demo import run_stream

    with demo.step("two-phase: edge model on a stream, cloud offline halfway, back, flush") as notes:
        edge_dir = fetch_model(lc.api_url, "digits-edge", lc.state_dir / "device" / "digits-edge", token=lc.token)
        status, cloud_manifest = http(Api.of(lc), "GET", "/v1/models/digits-cloud/artifact/manifest")
        expect(status == 200, f"{status} {cloud_manifest}")
        queue = lc.state_dir / "device" / "queue.sqlite"
        queue.unlink(missing_ok=True)
        instances = [{"key": f"dev-{i:03d}", "x": x[i].tolist()} for i in range(len(x))]
        summary = run_stream(
            lc.api_url,
            edge_dir,
            instances,
            go_offline=lc.stop_api,
            go_online=lc.start_api,
            queue_path=queue,
            labels={f"dev-{i:03d}": int(y[i]) for i in range(len(x))},
            cloud_manifest=cloud_manifest,
            emit=lambda line: print(f"      {line}"),
            token=lc.token,
        )
        expect(lc.gateway is not None, "the API did not come back")
        notes.append(", ".join(f"{k} {v}" for k, v in summary.items() if not isinstance(v, dict | list))[:200])


def own_model(demo: Demo, state_dir: Path) -> None:
    """Bring your own model, after the digits story: the diabetes example (examples/diabetes: regression on named CSV
    columns) trained and packaged by `liteserve-model package` in .venv-train, served by a local cloud on a copy of
    the checkout whose model layer holds it (the original stays untouched), answering both protocols and a batch file.
    """
    import numpy as np

    work = state_dir / "own-model"
    shutil.rmtree(work, ignore_errors=True)
    src, repo = work / "src", work / "checkout"
    train = str(REPO / ".venv-train" / "bin" / "python")
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{SHARED}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    with demo.step("your own model: train examples/diabetes, then `liteserve-model package` it (.venv-train)") as notes:
        subprocess.run([train, str(REPO / "examples" / "diabetes" / "train.py"), str(src)], env=env, check=True)
        copy_checkout(REPO, repo, ["template.yaml", "layers/model"])
        t0 = time.perf_counter()
        args = [src / "saved_model", "--data", src / "data.csv", "--label-field", "target", "--name", "diabetes"]
        cmd = [train, "-m", "liteserve_dev", "package", *map(str, args), "--out", str(repo / "layers/model/models")]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        expect(proc.returncode == 0, (proc.stderr.strip().splitlines() or ["no output"])[-1])
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        fid, mae = summary["fidelity"], summary["metrics"]
        notes.append(
            f"packaged in {time.perf_counter() - t0:.1f} s: {summary['quantization']}, {summary['size_bytes']} B"
        )
        notes.append(f"max |Δ| vs source {fid['max_abs_error']:.2f}; MAE float {mae['float']['mae']:.1f}, int8 "
                     f"{mae['int8']['mae']:.1f}")  # fmt: skip
    if not demo.results[-1][1]:
        return
    lines = (src / "batch.csv").read_text().splitlines()
    keys = [line.split(",", 1)[0] for line in lines[1:]]
    rows = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]], dtype=np.float32)
    ref = dict(line.split(",") for line in (src / "reference.csv").read_text().splitlines()[1:])
    bound = fid["max_abs_error"] + 1e-3
    with contextlib.ExitStack() as stack:
        with demo.step("your own model: a local cloud serving it; TF Serving and V2, keyed, vs the source") as notes:
            lc = LocalCloud(
                repo / "template.yaml", state_dir=work / "localcloud", api_port=0, moto_port=0, schedules=False
            )
            stack.callback(lc.stop)
            lc.start()
            body = {"instances": [{"key": k, "features": r.tolist()} for k, r in zip(keys[:5], rows[:5], strict=True)]}
            status, out = http(Api.of(lc), "POST", "/v1/models/diabetes:predict", json.dumps(body))
            expect(status == 200, f"{status} {out}")
            got = {p["key"]: p["output_0"][0] for p in out["predictions"]}
            body = {
                "inputs": [
                    {"name": "key", "shape": [5], "datatype": "BYTES", "data": keys[5:10]},
                    {"name": "features", "shape": [5, 10], "datatype": "FP32", "data": rows[5:10].ravel().tolist()},
                ]
            }
            status, out = http(Api.of(lc), "POST", "/v2/models/diabetes/infer", json.dumps(body))
            expect(status == 200, f"{status} {out}")
            tensors = {t["name"]: t["data"] for t in out["outputs"]}
            got |= dict(zip(tensors["key"], tensors["output_0"], strict=True))
            worst = max(abs(v - float(ref[k])) for k, v in got.items())
            expect(sorted(got) == keys[:10] and worst <= bound, f"answers {got}, worst |Δ| {worst}")
            for k in keys[:3]:
                print(f"      {k}: served {got[k]:.2f}, source model {float(ref[k]):.2f}")
            notes.append(f"10 keyed answers (5 per protocol) within {worst:.2f} of the source (bound {bound:.2f})")
        if not demo.results[-1][1]:
            return
        with demo.step("your own model: batch file incoming/diabetes.csv (442 keyed rows, named columns)") as notes:
            s3, bucket = lc.client("s3"), lc.name("DataBucket")
            s3.put_object(
                Bucket=bucket,
                Key="incoming/diabetes.csv",
                Body=(src / "batch.csv").read_bytes(),
                Metadata={"model": "diabetes"},
            )
            deadline, job = time.monotonic() + 180, {}
            while not job.get("published") and time.monotonic() < deadline:
                time.sleep(0.5)
                job = http(Api.of(lc), "GET", "/v1/batch/jobs/diabetes.csv")[1]
            expect(job.get("state") == "SUCCEEDED", f"job: {job}")
            done = json.loads(s3.get_object(Bucket=bucket, Key="results/diabetes.csv/_SUCCESS")["Body"].read())
            out_rows = [
                json.loads(line)
                for uri in done["output"]["parts"]
                for line in s3.get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))["Body"].iter_lines()
            ]
            worst = max(abs(r["output_0"][0] - float(ref[r["key"]])) for r in out_rows)
            expect(sorted(r["key"] for r in out_rows) == sorted(keys) and worst <= bound, f"worst |Δ| {worst}")
            notes.append(f"{len(out_rows)} rows in {job['timings']['elapsed_s']} s, within {worst:.2f} of the source")


def main(argv: list[str] | None = None) -> int:
    """Start a fresh local cloud, run the steps, stop everything."""
    p = argparse.ArgumentParser(prog="python -m liteserve_dev.demo", description=__doc__)
    p.add_argument("--template", default=os.environ.get("LOCALCLOUD_TEMPLATE", str(REPO / "template.yaml")))
    p.add_argument("--state-dir", default=str(REPO / ".localcloud" / "demo"))
    p.add_argument("--api-port", type=int, default=0, help="0 = any free port (default)")
    p.add_argument("--moto-port", type=int, default=0, help="0 = any free port (default)")
    args = p.parse_args(argv)
    demo = Demo()
    t0 = time.perf_counter()
    print("starting the local cloud (moto server, resources from the template, functions, HTTP API) ...", flush=True)
    try:
        with ticking():  # the first start compiles and provisions for several seconds
            lc = LocalCloud(
                args.template,
                state_dir=args.state_dir,
                api_port=args.api_port,
                moto_port=args.moto_port,
                schedules=False,
                log_subscriptions=True,
                # ~7 shards for the demo's 20 000 rows to watch fan out; a 50 % canary judged on 100 labelled rows.
                parameters={"ShardBytes": "1048576", "CanaryWeight": "0.5", "CanaryMinLabelled": "100"},
            ).start()
    except Exception as exc:
        print(f"error: the local cloud did not start: {exc}", file=sys.stderr)
        return 1
    print(f"up in {time.perf_counter() - t0:.1f} s: HTTP API {lc.api_url}, AWS endpoint {lc.endpoint_url}\n")
    try:
        run(demo, lc)
    finally:
        lc.stop()
        print("\nlocal cloud stopped")
    own_model(demo, Path(args.state_dir))
    return demo.summary()


if __name__ == "__main__":
    sys.exit(main())
