"""moto as the local cloud needs it: ``python -m localcloud.motopatch -p PORT`` (moto.server's arguments).

:func:`patch` is applied before the server starts (``localcloud.motoserver``, the persisting entry point, applies it
too):

- ``GetLayerVersion`` (and every response listing layer versions) returns ``Content.Location`` as a presigned URL on
  this server, as AWS does, instead of moto's ``"s3://"``. Like Lambda, the layer's content is copied at publish time
  (moto keeps the bytes), so the URL stays valid when the object it was published from is replaced or deleted. The
  copy lands in an internal bucket on first request.
- ``GetLayerVersionByArn``, which moto does not implement.
- ``CreateAlias`` / ``UpdateAlias`` validate ``RoutingConfig`` the way Lambda does (one additional version, a weight in
  [0, 1], an existing published version other than the alias's own); moto stores anything.
- A ranged S3 ``GetObject`` (``Range: bytes=a-b``) reads only its range, as S3 serves it: moto reads the whole object
  and slices it, so every 4 MiB shard of a 340 MB batch file cost moto ~0.26 s instead of ~0.01 s (the batch workers'
  reads grew with the file's size, not with their shard's).

Nothing here runs functions: the local cloud never calls moto's Invoke (which would need Docker).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

LAYER_BUCKET = "localcloud-lambda-layers"
_state: dict[str, Any] = {"base_url": "http://127.0.0.1:5000"}
_lock = threading.Lock()
_ranged = threading.local()  # set while moto serves a ranged GetObject in this thread
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def presign(bucket: str, key: str, region: str, expires: int = 600) -> str:
    """A SigV4 presigned GET URL of an object on this server (botocore's signer alone: no client to build)."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=f"{_state['base_url']}/{bucket}/{quote(key)}")
    S3SigV4QueryAuth(Credentials("localcloud", "localcloud"), "s3", region, expires=expires).add_auth(request)
    return str(request.url)


def layer_location(layer: Any) -> str:
    """Copy ``layer``'s content into the internal bucket (once) and return a presigned GET URL for it."""
    from moto.s3.exceptions import MissingBucket, MissingKey
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    backend = s3_backends[layer.account_id][get_partition(layer.region)]
    digest = hashlib.sha256(layer.code_bytes).hexdigest()
    key = f"{layer.name}/{layer.version}/{digest}.zip"
    with _lock:
        try:
            backend.get_bucket(LAYER_BUCKET)
        except MissingBucket:
            backend.create_bucket(LAYER_BUCKET, layer.region)
        try:
            found = backend.get_object(LAYER_BUCKET, key)
        except MissingKey:
            found = None
        if found is None:
            backend.put_object(LAYER_BUCKET, key, layer.code_bytes, disable_notification=True)
    return presign(LAYER_BUCKET, key, layer.region)


def _check_routing(storage: Any, function_name: str, function_version: str | None, routing: Any) -> None:
    from moto.awslambda.exceptions import InvalidParameterValueException

    weights = (routing or {}).get("AdditionalVersionWeights") or {}
    if not weights:
        return
    if len(weights) > 1:
        raise InvalidParameterValueException("Number of items in AdditionalVersionWeights cannot be greater than 1")
    (version, weight), *_ = weights.items()
    if not isinstance(weight, int | float) or not 0.0 <= float(weight) <= 1.0:
        raise InvalidParameterValueException(f"Invalid weight {weight!r} for version {version}: must be in [0.0, 1.0]")
    if str(version).lower() == "$latest" or (function_version or "").lower() == "$latest":
        raise InvalidParameterValueException("$LATEST is not supported for an alias pointing to more than 1 version")
    if function_version is not None and str(version) == str(function_version):
        raise InvalidParameterValueException(
            f"Version {version} is the alias's primary version; an additional version must differ"
        )
    name = function_name.split(":function:")[-1].split(":")[0]
    if storage._get_version(name, str(version)) is None:
        raise InvalidParameterValueException(f"Function version {version} of {name} does not exist")


def base_url(argv: list[str]) -> str:
    """This server's own URL, from moto.server's ``-H``/``-p``/``-s`` arguments."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("-s", "--ssl", action="store_true")
    known, _ = parser.parse_known_args(argv)
    host = "127.0.0.1" if known.host in ("0.0.0.0", "::", "") else known.host
    return f"{'https' if known.ssl else 'http'}://{host}:{known.port}"


class _Window:
    """An S3 object's stored bytes as moto's range handling uses them (its length, one slice), read only where
    sliced."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def __len__(self) -> int:
        return self.key.size

    def __getitem__(self, part: slice) -> bytes:
        start, stop, _ = part.indices(self.key.size)
        with self.key.lock:
            self.key._value_buffer.seek(start)
            return self.key._value_buffer.read(max(0, stop - start))


def patch_s3_ranges() -> None:
    """Make a ranged GetObject read only its range (idempotent)."""
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    if getattr(FakeKey, "_localcloud", False):
        return
    stored = FakeKey.value

    def value(self: Any) -> Any:
        return _Window(self) if getattr(_ranged, "on", False) else stored.fget(self)

    get_object = S3Response.get_object

    def ranged_get_object(self: Any) -> Any:
        # Only a single `bytes=a-b` range with a <= b, whose every outcome in moto's range handling is a slice (or
        # InvalidRange): the body never leaves moto unsliced.
        match = _RANGE.fullmatch(self.headers.get("range") or "")
        if match is None or int(match[1]) > int(match[2]):
            return get_object(self)
        _ranged.on = True
        try:
            return get_object(self)
        finally:
            _ranged.on = False

    FakeKey.value = property(value, stored.fset)  # type: ignore[method-assign,assignment]
    S3Response.get_object = ranged_get_object  # type: ignore[method-assign]
    FakeKey._localcloud = True  # type: ignore[attr-defined]


def patch(url: str) -> None:
    """Apply the patches to moto's Lambda and S3 (idempotent); ``url`` is this server's own URL (for Location)."""
    patch_s3_ranges()
    from moto.awslambda import models

    _state["base_url"] = url
    from moto.awslambda.exceptions import UnknownLayerVersionException
    from moto.awslambda.responses import LambdaResponse

    if getattr(models.LayerVersion, "_localcloud", False):
        return
    original = models.LayerVersion.get_layer_version

    def get_layer_version(self: Any) -> dict[str, Any]:
        out = original(self)
        out["Content"]["Location"] = layer_location(self)
        return out

    models.LayerVersion.get_layer_version = get_layer_version  # type: ignore[method-assign]
    models.LayerVersion._localcloud = True  # type: ignore[attr-defined]

    put_alias, update_alias = models.LambdaStorage.put_alias, models.LambdaStorage.update_alias

    def checked_put(self: Any, name: str, function_name: str, function_version: str, *a: Any, **kw: Any) -> Any:
        routing = kw.get("routing_config", a[1] if len(a) > 1 else None)
        _check_routing(self, function_name, function_version, routing)
        return put_alias(self, name, function_name, function_version, *a, **kw)

    def checked_update(self: Any, name: str, function_name: str, function_version: str, *a: Any, **kw: Any) -> Any:
        routing = kw.get("routing_config", a[1] if len(a) > 1 else None)
        if routing is not None:
            primary = function_version if function_version is not None else self.get_alias(name, function_name)
            primary = primary if isinstance(primary, str) else primary.function_version
            _check_routing(self, function_name, primary, routing)
        return update_alias(self, name, function_name, function_version, *a, **kw)

    models.LambdaStorage.put_alias = checked_put  # type: ignore[method-assign]
    models.LambdaStorage.update_alias = checked_update  # type: ignore[method-assign]

    def get_layer_version_by_arn(self: Any) -> str:
        arn = self._get_param("Arn")
        layer = self.backend.layers_versions_by_arn(arn)
        if layer is None:
            raise UnknownLayerVersionException([arn])
        return json.dumps(layer.get_layer_version())

    LambdaResponse.get_layer_version_by_arn = get_layer_version_by_arn  # type: ignore[attr-defined]


def warm(url: str, region: str = "us-east-1") -> None:
    """Patch, then make moto build its Lambda and IAM apps and backends (about a second, paid once per server)."""
    patch(url)
    scope = (
        f"AWS4-HMAC-SHA256 Credential=localcloud/20200101/{region}/{{}}/aws4_request, SignedHeaders=host, Signature=0"
    )
    requests = (
        urllib.request.Request(f"{url}/2015-03-31/functions/", headers={"Authorization": scope.format("lambda")}),
        urllib.request.Request(
            f"{url}/?Action=ListRoles&Version=2010-05-08", headers={"Authorization": scope.format("iam")}
        ),
    )
    deadline = time.monotonic() + 30
    for req in requests:
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(req, timeout=10).close()
                break
            except urllib.error.HTTPError:
                break  # answered: the app and the backend exist
            except OSError:
                time.sleep(0.05)  # not listening yet


def main(argv: list[str] | None = None) -> None:
    """Run ``moto.server.main`` with the same arguments, patching moto's Lambda in the background.

    In the background so that the import overlaps with the caller's own start-up instead of delaying the server's
    first answer. A Lambda request that arrives meanwhile waits on the import lock; the patch follows the import
    within microseconds, and only later calls (layer Location, alias updates) depend on it.
    """
    import sys

    from moto import server

    argv = list(sys.argv[1:] if argv is None else argv)
    threading.Thread(target=warm, args=(base_url(argv),), name="warm-lambda", daemon=True).start()
    server.main(argv)


if __name__ == "__main__":
    main()
