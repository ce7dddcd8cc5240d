"""Lambda layers, function versions and weighted aliases in moto, and the local pools that honour them.

At provisioning every layer and function of the template is registered in moto's Lambda API, as CloudFormation
would: layers through an artifacts bucket (as ``sam deploy`` uploads them), functions with their layers and
environment, and for ``AutoPublishAlias`` functions version 1 and the alias. Anything using plain boto3 (promotion:
publish a layer version, update the function's layers, publish a version, shift the alias) then changes what runs:

- :class:`AliasRouter` stands in for a function's pool. Each invocation picks a version by the alias's
  ``RoutingConfig`` weights (the alias is read from moto at most once per ``ALIAS_TTL_S``) and runs it on that
  version's own :class:`~localcloud.runtime.FunctionPool`, created on first use with the version's layers as ``/opt``.
- :class:`Lambdas` maps layer-version ARNs to folders: the template's own layers are their ``ContentUri`` folders;
  others (published by anyone else) are downloaded once from their ``Content.Location`` and unzipped under the state
  folder.

Built layers of pip dependencies (``Metadata.BuildMethod`` and no ``python/`` in their folder, e.g. the 74 MB runtime
layer) are stood in for by the dev venv when functions run, so they are registered with a zip of their source folder
instead of their built content (see README). A built layer whose folder holds its ``python/`` (the shared layer, whose
build adds bytecode) runs from that folder.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import logging
import os
import random
import shutil
import threading
import time
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localcloud.runtime import FunctionPool, FunctionSpec, InvocationError, Stats
from localcloud.template import ACCOUNT_ID, Template, TemplateError

log = logging.getLogger("localcloud.lambdas")
ARTIFACTS_BUCKET = f"localcloud-artifacts-{ACCOUNT_ID}"
PROVISION_THREADS = 4
ALIAS_TTL_S = 1.0  # an update_alias takes effect within this time
MAX_LAYER_UNZIPPED = 250 * 1024 * 1024  # Lambda's limit for function + layers, unzipped
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


# --------------------------------------------------------------------------------------------------------------------
# Deterministic zips of local folders, cached by a fingerprint of their files


def _files(src: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(src, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        out += [Path(root) / f for f in sorted(files) if not f.endswith(".pyc")]
    return out


def fingerprint(src: Path) -> str:
    """A cheap fingerprint of a folder: every file's relative path, size and modification time (as ``make`` does)."""
    h = hashlib.sha256()
    for f in _files(src):
        st = f.stat()
        h.update(f"{f.relative_to(src).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def write_zip(src: Path, dest: Path) -> None:
    """Zip ``src``'s contents (paths relative to it) reproducibly: sorted entries, fixed timestamps."""
    tmp = dest.with_suffix(f".{uuid.uuid4().hex[:6]}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for f in _files(src):
            info = zipfile.ZipInfo(f.relative_to(src).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if os.access(f, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, f.read_bytes())
    tmp.replace(dest)


class ArtifactCache:
    """Zips of local folders under ``root``, rebuilt only when a folder's fingerprint changes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def zip_of(self, src: Path) -> tuple[Path, str]:
        """The zip of ``src`` and its sha256 (hex)."""
        key = hashlib.sha256(f"{src.resolve()}\0{fingerprint(src)}".encode()).hexdigest()[:32]
        path = self.root / f"{key}.zip"
        with self._lock:
            if not path.exists():
                self.root.mkdir(parents=True, exist_ok=True)
                write_zip(src, path)
        return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _b64_sha(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


def unzip_layer(data: bytes, dest: Path) -> None:
    """Unzip a layer's content into ``dest`` (atomically), refusing more than Lambda's 250 MB unzipped."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        size = sum(i.file_size for i in z.infolist())
        if size > MAX_LAYER_UNZIPPED:
            raise ValueError(f"layer unzips to {size} bytes, over Lambda's {MAX_LAYER_UNZIPPED}")
        tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:6]}.tmp")
        z.extractall(tmp)  # extractall drops absolute paths and ".." components
        for info in z.infolist():  # keep the executable bit (zipfile does not)
            mode = (info.external_attr >> 16) & 0o777
            target = (tmp / info.filename).resolve()
            if mode & 0o111 and not info.is_dir() and target.is_relative_to(tmp.resolve()) and target.is_file():
                target.chmod(mode)
    if dest.exists():
        shutil.rmtree(tmp)
    else:
        tmp.rename(dest)


# --------------------------------------------------------------------------------------------------------------------
# Registration in moto and the layer-version ARN -> folder map


@dataclasses.dataclass
class LayerSource:
    """Where a layer version's content comes from locally."""

    arn: str
    directory: Path | None  # None: a built layer, stood in for by the dev venv
    origin: str  # "template:<LogicalId>", "template:<LogicalId> (built: dev venv)" or "downloaded"


def parse_layer_arn(arn: str) -> tuple[str, int]:
    """(layer name, version) of a layer-version ARN."""
    parts = arn.split(":")
    if len(parts) != 8 or parts[2] != "lambda" or parts[5] != "layer" or not parts[7].isdigit():
        raise ValueError(f"not a layer version ARN: {arn}")
    return parts[6], int(parts[7])


class Lambdas:
    """The template's layers and functions registered in moto, and what each layer version is locally."""

    def __init__(self, tpl: Template, session: Any, endpoint_url: str, state_dir: Path) -> None:
        self.tpl, self.state_dir = tpl, state_dir
        self.lam = session.client("lambda", endpoint_url=endpoint_url)
        self.s3 = session.client("s3", endpoint_url=endpoint_url)
        self.iam = session.client("iam", endpoint_url=endpoint_url)
        self.cache = ArtifactCache(state_dir / "artifacts")
        self.layers: dict[str, LayerSource] = {}  # layer-version ARN -> source
        self.template_layers: dict[str, str] = {}  # layer logical id -> registered version ARN
        self.routers: dict[str, AliasRouter] = {}
        self.provision_s = 0.0
        self._download_lock = threading.Lock()

    # ---------------------------------------------------------------- provisioning

    def provision(self, specs: dict[str, FunctionSpec]) -> None:
        """Register every layer and function of the template (idempotent); publish version 1 + alias where asked."""
        t0 = time.perf_counter()
        self.layers.clear()
        self.template_layers.clear()
        try:
            self.s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        # A few calls in flight at once: most of the time is HTTP round trips to moto.
        with ThreadPoolExecutor(PROVISION_THREADS) as pool:
            layers = self.tpl.of_type("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
            list(pool.map(self._register_layer, [lid for lid in layers if self.tpl.active(lid)]))
            list(pool.map(self._register_function, specs.values()))
        for router in self.routers.values():
            router.reset()
        self.provision_s = time.perf_counter() - t0

    def _register_layer(self, lid: str) -> None:
        props = self.tpl.props(lid)
        content = props.get("ContentUri") or props.get("Content")
        src = (self.tpl.base_dir / content).resolve() if isinstance(content, str) else None
        if src is None or not src.is_dir():  # function_specs refuses it if a function uses it
            log.warning("layer %s: content %r is not a local folder; not registered", lid, content)
            return
        built = self.tpl.layer_folder(lid) is None
        path, sha = self.cache.zip_of(src)
        name = self.tpl.name(lid)
        arn = self._existing_layer(name, sha)
        if arn is None:
            key = f"layers/{sha}.zip"
            self.s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=path.read_bytes())
            args: dict[str, Any] = {
                "LayerName": name,
                "Content": {"S3Bucket": ARTIFACTS_BUCKET, "S3Key": key},
                "Description": str(props.get("Description", ""))[:256],
            }
            for k in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
                if props.get(k):
                    args[k] = props[k]
            arn = self.lam.publish_layer_version(**args)["LayerVersionArn"]
        self.template_layers[lid] = arn
        self.layers[arn] = LayerSource(
            arn, None if built else src, f"template:{lid}" + (" (built: the dev venv stands in)" if built else "")
        )

    def _existing_layer(self, name: str, sha_hex: str) -> str | None:
        """The latest version of ``name`` if it already has this content (a re-provisioning publishes nothing)."""
        try:
            versions = self.lam.list_layer_versions(LayerName=name).get("LayerVersions", [])
        except ClientError:
            return None
        if versions:
            latest = max(versions, key=lambda v: v["Version"])
            got = self.lam.get_layer_version(LayerName=name, VersionNumber=latest["Version"])
            if got["Content"].get("CodeSha256") == _b64_sha(sha_hex):
                return str(latest["LayerVersionArn"])
        return None

    def _role(self, spec: FunctionSpec) -> str:
        """The function's execution role ARN, created in moto (which checks that it exists)."""
        role = self.tpl.props(spec.logical_id).get("Role")
        trust: Any = _LAMBDA_TRUST
        if isinstance(role, str) and ":role/" in role:
            name = role.rsplit("/", 1)[1]
            try:
                rlid = self.tpl.logical_id_of(role, ("role",))
                trust = self.tpl.props(rlid).get("AssumeRolePolicyDocument") or _LAMBDA_TRUST
            except TemplateError:
                pass
        else:
            name = f"{self.tpl.stack_name}-{spec.logical_id}Role"[:64]  # SAM's generated role
            role = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        try:
            self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
        return role

    def _register_function(self, spec: FunctionSpec) -> None:
        props = self.tpl.props(spec.logical_id)
        code, _ = self.cache.zip_of(spec.code_dir)
        config: dict[str, Any] = {
            "FunctionName": spec.name,
            "Role": self._role(spec),
            "Handler": spec.handler,
            "Runtime": str(props.get("Runtime", "python3.11")),
            "Timeout": int(spec.timeout),
            "MemorySize": spec.memory,
            "Description": str(props.get("Description", ""))[:256],
            "Environment": {"Variables": spec.env},
            "Layers": [self.template_layers[lid] for lid in spec.layers if lid in self.template_layers],
        }
        try:
            self.lam.create_function(
                **config, Code={"ZipFile": code.read_bytes()}, Architectures=props.get("Architectures") or ["x86_64"]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceConflictException":
                raise
            self.lam.update_function_configuration(**config)
        if not spec.alias:
            return
        version = self.lam.publish_version(FunctionName=spec.name)["Version"]
        try:
            self.lam.create_alias(FunctionName=spec.name, Name=spec.alias, FunctionVersion=version)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceConflictException":
                raise
            self.lam.update_alias(
                FunctionName=spec.name,
                Name=spec.alias,
                FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )

    # ---------------------------------------------------------------- layer versions as folders

    def layer_dir(self, arn: str) -> Path | None:
        """The folder holding layer version ``arn`` (downloaded once if the local cloud did not create it)."""
        if arn in self.layers:
            return self.layers[arn].directory
        with self._download_lock:
            if arn in self.layers:
                return self.layers[arn].directory
            name, version = parse_layer_arn(arn)
            got = self.lam.get_layer_version(LayerName=name, VersionNumber=version)
            location = got["Content"].get("Location", "")
            if not location.startswith(("http://", "https://")):
                raise ValueError(
                    f"layer {arn}: Content.Location {location!r} cannot be downloaded "
                    "(is moto running as `python -m localcloud.motoserver`?)"
                )
            sha = base64.b64decode(got["Content"]["CodeSha256"]).hex()
            dest = self.state_dir / "layers" / name / f"{version}-{sha[:12]}"
            if not dest.exists():
                with urllib.request.urlopen(location, timeout=60) as resp:
                    data = resp.read()
                if hashlib.sha256(data).hexdigest() != sha:
                    raise ValueError(f"layer {arn}: downloaded content does not match its CodeSha256")
                dest.parent.mkdir(parents=True, exist_ok=True)
                unzip_layer(data, dest)
                log.info("layer %s downloaded to %s", arn, dest)
            self.layers[arn] = LayerSource(arn, dest, "downloaded")
            return dest

    def version_spec(self, spec: FunctionSpec, version: str, invoked_arn: str) -> tuple[FunctionSpec, list[str], str]:
        """``spec`` as published ``version`` (layers, environment, timeout, memory), its layer ARNs and /opt name."""
        conf = self.lam.get_function_configuration(FunctionName=spec.name, Qualifier=version)
        arns = [layer["Arn"] for layer in conf.get("Layers") or []]
        dirs = [d for d in (self.layer_dir(a) for a in arns) if d is not None]
        vspec = dataclasses.replace(
            spec,
            arn=invoked_arn,
            layer_dirs=dirs,
            env=dict((conf.get("Environment") or {}).get("Variables") or spec.env),
            timeout=float(conf.get("Timeout", spec.timeout)),
            memory=int(conf.get("MemorySize", spec.memory)),
        )
        digest = hashlib.sha256("\n".join(arns).encode()).hexdigest()[:8]
        return vspec, arns, f"{spec.logical_id}@{version}-{digest}"

    # ---------------------------------------------------------------- pools and status

    def pool(self, spec: FunctionSpec, base_env: dict[str, str], concurrency: int) -> FunctionPool | AliasRouter:
        """The pool event sources invoke: the template's ($LATEST) pool, behind an alias router if it has one."""
        latest = FunctionPool(spec, base_env, self.state_dir, concurrency)
        if not spec.alias:
            return latest
        router = AliasRouter(latest, self, base_env, self.state_dir)
        self.routers[spec.logical_id] = router
        return router

    def describe(self, lid: str) -> dict[str, Any]:
        """A function's alias routing and its versions' layers (for ``status``)."""
        router = self.routers.get(lid)
        return router.describe() if router else {}

    def layers_status(self) -> dict[str, str]:
        """Every layer version known locally -> where its content comes from."""
        return {
            arn: f"{src.origin}: {src.directory}" if src.directory else src.origin for arn, src in self.layers.items()
        }


# --------------------------------------------------------------------------------------------------------------------
# Invocation through an alias


class AliasRouter:
    """A function's invocations through its alias: weighted choice of a version, one pool per version.

    Duck-types :class:`~localcloud.runtime.FunctionPool` (``invoke``, ``counts``, ``stats``, ``recycle`` ...), so the
    gateway, the event sources and the CLI use it unchanged. A container serves one version for its whole life; pools
    of versions the alias no longer routes to have their idle containers stopped.
    """

    def __init__(
        self,
        latest: FunctionPool,
        lambdas: Lambdas,
        base_env: dict[str, str],
        state_dir: Path,
        ttl: float = ALIAS_TTL_S,
    ) -> None:
        self.latest, self.lambdas, self.base_env, self.state_dir, self.ttl = latest, lambdas, base_env, state_dir, ttl
        self.spec, self.concurrency, self.log_path = latest.spec, latest.concurrency, latest.log_path
        self.alias = str(latest.spec.alias)
        self.alias_arn = f"{latest.spec.arn}:{self.alias}"
        self.versions: dict[str, FunctionPool] = {}
        self.version_layers: dict[str, list[str]] = {}
        self._route: tuple[str, list[tuple[str, float]]] | None = None  # (primary, [(additional, weight)])
        self._fetched = 0.0
        self._lock = threading.Lock()  # guards versions
        self._creating = threading.Lock()
        self._refreshing = threading.Lock()
        self.lookups = 0  # alias reads from moto (cache misses)

    # ---------------------------------------------------------------- routing

    def routing(self) -> tuple[str, list[tuple[str, float]]]:
        """The alias's (primary version, [(additional version, weight)]), read from moto at most once per ``ttl``."""
        route = self._route
        if route is not None and time.monotonic() - self._fetched < self.ttl:
            return route
        # One thread refreshes; the others keep using the previous routing meanwhile.
        if not self._refreshing.acquire(blocking=route is None):
            return route  # type: ignore[return-value]
        try:
            if self._route is not None and time.monotonic() - self._fetched < self.ttl:
                return self._route
            try:
                alias = self.lambdas.lam.get_alias(FunctionName=self.spec.name, Name=self.alias)
            except (ClientError, BotoCoreError) as exc:  # no alias, or moto unreachable
                if self._route is None:
                    raise InvocationError(
                        {"errorType": "ResourceNotFoundException", "errorMessage": f"alias {self.alias_arn}: {exc}"}
                    ) from exc
                log.warning("%s: alias lookup failed (%s); keeping the previous routing", self.alias_arn, exc)
                self._fetched = time.monotonic()
                return self._route
            self.lookups += 1
            weights = ((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")) or {}
            new = (str(alias["FunctionVersion"]), [(str(v), float(w)) for v, w in weights.items()])
            if new != self._route:
                log.info("%s -> %s %s", self.alias_arn, new[0], dict(new[1]) or "")
            # Every refresh: a container that was busy at the switch is idle by now.
            self._retire({new[0], *(v for v, _ in new[1])})
            self._route, self._fetched = new, time.monotonic()
            return new
        finally:
            self._refreshing.release()

    @staticmethod
    def pick(route: tuple[str, list[tuple[str, float]]], r: float) -> str:
        """The version for one invocation, given a uniform draw ``r`` in [0, 1)."""
        primary, extra = route
        for version, weight in extra:
            if r < weight:
                return version
            r -= weight
        return primary

    def _retire(self, routed: set[str]) -> None:
        with self._lock:
            idle = [p for v, p in self.versions.items() if v not in routed]
        for pool in idle:
            pool.recycle()

    def _pool(self, version: str) -> FunctionPool:
        if version == "$LATEST":
            return self.latest
        pool = self.versions.get(version)
        if pool is not None:
            return pool
        with self._creating:  # one version at a time; invocations of existing versions go on meanwhile
            pool = self.versions.get(version)
            if pool is None:
                try:
                    spec, arns, opt = self.lambdas.version_spec(self.latest.spec, version, self.alias_arn)
                except (ClientError, BotoCoreError, ValueError, OSError) as exc:
                    raise InvocationError(
                        {"errorType": "ResourceNotFoundException", "errorMessage": f"version {version}: {exc}"}
                    ) from exc
                pool = FunctionPool(spec, self.base_env, self.state_dir, self.concurrency, version, opt)
                with self._lock:
                    self.versions[version] = pool
                    self.version_layers[version] = arns
            return pool

    # ---------------------------------------------------------------- the FunctionPool interface

    def invoke(self, event: Any, request_id: str | None = None, qualifier: str | None = None) -> Any:
        """Invoke through the alias (or the given version / "$LATEST" / alias name)."""
        through_alias = qualifier in (None, self.alias)
        version = self.pick(self.routing(), random.random()) if through_alias else str(qualifier)
        return self._pool(version).invoke(event, request_id)

    def _all(self) -> list[FunctionPool]:
        with self._lock:
            return [self.latest, *self.versions.values()]

    @property
    def stats(self) -> Stats:
        """Counters summed over every version."""
        total = Stats()
        for p in self._all():
            s = p.stats
            total.invocations += s.invocations
            total.errors += s.errors
            total.timeouts += s.timeouts
            total.cold_starts += s.cold_starts
            total.max_memory_mb = max(total.max_memory_mb, s.max_memory_mb)
        return total

    def counts(self) -> dict[str, int]:
        """Container counts summed over every version."""
        out = {"containers": 0, "idle": 0, "busy": 0}
        for p in self._all():
            for k, v in p.counts().items():
                out[k] += v
        return out

    def kill_busy(self) -> int:
        """Fault injection: kill every version's busy containers."""
        return sum(p.kill_busy() for p in self._all())

    def recycle(self) -> int:
        """Kill every version's idle containers."""
        return sum(p.recycle() for p in self._all())

    def reset(self) -> None:
        """Forget versions and routing (after moto was reset and provisioned again: version numbers restart)."""
        with self._lock:
            old, self.versions, self.version_layers = list(self.versions.values()), {}, {}
            self._route = None
        for p in old:
            p.close()

    def close(self) -> None:
        """Kill every container of every version."""
        for p in self._all():
            p.close()

    def describe(self) -> dict[str, Any]:
        """Alias routing and per-version layers and containers."""
        route = self._route
        if route is None:
            try:
                route = self.routing()
            except InvocationError:
                route = None
        with self._lock:
            versions, layers = dict(self.versions), dict(self.version_layers)
        return {
            "alias": {
                "name": self.alias,
                "version": route[0] if route else None,
                "weights": dict(route[1]) if route else {},
            },
            "versions": {
                v: {"layers": layers.get(v, []), **p.counts(), "invocations": p.stats.invocations}
                for v, p in versions.items()
            },
        }
