"""Offline SAM tooling: expand the AWS::Serverless transform and check deployment package sizes.

``python -m localcloud.sam_translate template.yaml`` prints the template as CloudFormation JSON,
translated by samtranslator with no AWS call (the way cfn-lint did it: local code paths become
placeholder S3 URIs, managed policy names resolve from the map bundled with samtranslator instead
of IAM). cfn-lint on that output sees what only the expanded template shows, e.g. dependency cycles.

``python -m localcloud.sam_translate --check-size .aws-sam/build`` sums, for every function of the
built template, the unzipped size of its code and layers, prints a JSON table and exits 1 when one
exceeds Lambda's 250 MB limit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

import boto3
import yaml
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import intrinsics_multi_constructor

MIB = 1024 * 1024
LAMBDA_UNZIPPED_LIMIT = 250 * MIB  # function code + all its layers, unzipped
SIZE_GOAL = 80 * MIB  # liteserve's own budget (issue 2)
_PLACEHOLDER_BUCKET = "liteserve-sam-translate"
# Properties SAM reads as local paths (sam build / sam package turn them into S3 objects).
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form intrinsics (!Ref, !Sub, ...) as their long form."""


_CfnLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a CloudFormation/SAM template (YAML or JSON) with short-form intrinsics expanded."""
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # a SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a template (top level is not a mapping)")
    return document


def _managed_policy_map() -> dict[str, str]:
    """AWS managed policy name -> ARN without calling IAM (samtranslator's bundled copy)."""
    try:
        from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
    except ImportError:  # older/newer samtranslator layout: names then only resolve if given as ARNs
        return {}
    return get_bundled_managed_policy_map("aws") or {}


def _replace_local_uris(template: dict[str, Any]) -> None:
    """Point local CodeUri/ContentUri/DefinitionUri at placeholder S3 objects (the translator wants S3)."""
    for logical_id, resource in (template.get("Resources") or {}).items():
        prop = _LOCAL_URI_PROPERTIES.get(resource.get("Type", ""))
        props = resource.get("Properties")
        if prop is None or not isinstance(props, dict):
            continue
        if resource["Type"] == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            continue
        value = props.get(prop, ".")
        # Keep {Bucket, Key} objects and S3 URIs; a !Ref/!Sub path is local too (as cfn-lint treats it).
        if isinstance(value, dict) and set(value) not in ({"Ref"}, {"Fn::Sub"}):
            continue
        if isinstance(value, str) and value.startswith("s3://"):
            continue
        props[prop] = f"s3://{_PLACEHOLDER_BUCKET}/{logical_id}.zip"


def translate(
    path: str | os.PathLike[str], parameters: dict[str, Any] | None = None, region: str | None = None
) -> dict[str, Any]:
    """Return the template at ``path`` with the AWS::Serverless transform expanded, offline.

    ``parameters`` override the template's parameter defaults. Raises ``ValueError`` listing every
    problem the translator found.
    """
    template = load_template(path)
    _replace_local_uris(template)  # in place: the template was just loaded
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # A Session only holds the region here: the translator makes no call when given a policy map.
    translator = Translator(
        managed_policy_map=_managed_policy_map(),
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name=region),
    )
    try:
        return translator.translate(
            sam_template=template, parameter_values=dict(parameters or {}), passthrough_metadata=True
        )
    except InvalidDocumentException as error:
        causes = "; ".join(cause.message for cause in error.causes)
        raise ValueError(f"{path}: {causes}") from error


# ---------------------------------------------------------------- package sizes


def _dir_size(root: Path, zipped: bool) -> dict[str, int]:
    """Bytes of the regular files under ``root`` and, if asked, their deflated size (what a zip holds)."""
    total = deflated = files = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            file = Path(dirpath, name)
            if not file.is_file():
                continue
            files += 1
            total += file.stat().st_size
            if zipped:
                compressor = zlib.compressobj(6, zlib.DEFLATED, -15)  # zip's raw deflate, default level
                with file.open("rb") as handle:
                    while chunk := handle.read(MIB):
                        deflated += len(compressor.compress(chunk))
                deflated += len(compressor.flush())
    sizes = {"files": files, "bytes": total}
    if zipped:
        sizes["zipped_bytes"] = deflated
    return sizes


def _local_dir(build_dir: Path, uri: Any) -> Path | None:
    """The folder a built template's CodeUri/ContentUri names (relative to the template), if local."""
    if not isinstance(uri, str) or uri.startswith("s3://"):
        return None
    path = (build_dir / uri).resolve()
    return path if path.is_dir() else None


def check_size(build_dir: str | os.PathLike[str], zipped: bool = True) -> dict[str, Any]:
    """Size table of every function of ``BUILD_DIR/template.yaml``: its code plus each of its layers."""
    build = Path(build_dir)
    template = load_template(build / "template.yaml")
    resources = template.get("Resources") or {}
    global_layers = ((template.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    cache: dict[str, dict[str, Any]] = {}

    def measure(logical_id: str, uri: Any) -> dict[str, Any]:
        if logical_id not in cache:
            folder = _local_dir(build, uri)
            if folder is None:
                cache[logical_id] = {"path": None, "bytes": None, "note": f"not a local folder: {uri!r}"}
            else:
                cache[logical_id] = {"path": os.path.relpath(folder), **_dir_size(folder, zipped)}
                if not cache[logical_id]["files"]:
                    cache[logical_id]["note"] = "empty folder"
        return cache[logical_id]

    functions: dict[str, Any] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        parts = {"code": measure(logical_id, props.get("CodeUri"))}
        for layer in [*global_layers, *(props.get("Layers") or [])]:
            ref = layer.get("Ref") if isinstance(layer, dict) else None
            if ref in resources:
                parts[ref] = measure(ref, (resources[ref].get("Properties") or {}).get("ContentUri"))
            else:  # a layer ARN from outside the template: its size is unknown here
                parts[json.dumps(layer)] = {"path": None, "bytes": None, "note": "external layer, not counted"}
        total = sum(part["bytes"] or 0 for part in parts.values())
        entry: dict[str, Any] = {
            "parts": parts,
            "total_bytes": total,
            "total_mib": round(total / MIB, 2),
            "total_mb": round(total / 1e6, 2),
            "within_limit": total <= LAMBDA_UNZIPPED_LIMIT,
            "within_goal": total <= SIZE_GOAL,
        }
        if zipped:
            entry["total_zipped_mib"] = round(sum(p.get("zipped_bytes") or 0 for p in parts.values()) / MIB, 2)
        functions[logical_id] = entry
    return {
        "build_dir": os.path.relpath(build),
        "limit_mib": LAMBDA_UNZIPPED_LIMIT // MIB,
        "goal_mib": SIZE_GOAL // MIB,
        "functions": functions,
        "ok": all(f["within_limit"] for f in functions.values()),
    }


# ---------------------------------------------------------------- CLI


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m localcloud.sam_translate", description=__doc__.splitlines()[0])
    parser.add_argument("template", nargs="?", help="SAM template to translate (prints CloudFormation JSON)")
    parser.add_argument("--check-size", metavar="BUILD_DIR", help="size table of a `sam build` output folder")
    parser.add_argument("--no-zip", action="store_true", help="with --check-size: skip the zipped-size estimate")
    parser.add_argument("-p", "--parameter", action="append", type=_parameter, default=[], metavar="NAME=VALUE")
    parser.add_argument("--region", help="region for ARNs and AWS::Region (default: $AWS_REGION or us-east-1)")
    args = parser.parse_args(argv)
    if bool(args.template) == bool(args.check_size):
        parser.error("give either TEMPLATE or --check-size BUILD_DIR")

    if args.check_size:
        if not Path(args.check_size, "template.yaml").is_file():
            print(f"error: {args.check_size}/template.yaml not found: run `sam build` first", file=sys.stderr)
            return 2
        report = check_size(args.check_size, zipped=not args.no_zip)
        print(json.dumps(report, indent=2))
        for name, entry in report["functions"].items():
            if not entry["within_limit"]:
                print(
                    f"error: {name} is {entry['total_mib']} MiB unzipped, over Lambda's {report['limit_mib']} MiB",
                    file=sys.stderr,
                )
            elif not entry["within_goal"]:
                print(
                    f"warning: {name} is {entry['total_mib']} MiB unzipped, over the {report['goal_mib']} MiB goal",
                    file=sys.stderr,
                )
        return 0 if report["ok"] else 1

    try:
        translated = translate(args.template, dict(args.parameter), region=args.region)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(translated, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
