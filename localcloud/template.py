"""Read a SAM/CloudFormation template and resolve its intrinsic functions against local physical resources.

Physical names are deterministic (``<stack>-<LogicalId>`` unless the template names the resource), so every
``!Ref`` / ``!GetAtt`` / ``!Sub`` can be resolved before anything exists, exactly as CloudFormation would once the stack
is created. Anything we cannot resolve raises :class:`TemplateError` instead of guessing.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"  # moto's default account
NO_VALUE = object()  # AWS::NoValue marker, removed from the surrounding list/dict


class TemplateError(Exception):
    """The template uses something the local cloud cannot resolve or does not support."""


# --------------------------------------------------------------------------------------------------------------------
# YAML with CloudFormation short-form tags


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns ``!Ref x`` into ``{"Ref": "x"}`` and ``!Sub ...`` into ``{"Fn::Sub": ...}``."""


def _construct(tag: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {tag: value}

    return construct


for _short in ("Ref", "Condition"):
    _CfnLoader.add_constructor(f"!{_short}", _construct(_short))
for _fn in (
    "Sub",
    "GetAtt",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "GetAZs",
    "Base64",
    "ImportValue",
    "Cidr",
    "Length",
    "ToJsonString",
):
    _CfnLoader.add_constructor(f"!{_fn}", _construct(f"Fn::{_fn}"))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation YAML (or JSON) template with its short-form tags."""
    with open(path, encoding="utf-8") as fh:
        doc = yaml.load(fh, Loader=_CfnLoader)
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return doc


# --------------------------------------------------------------------------------------------------------------------
# Globals


def _merge_globals(glob: Any, local: Any) -> Any:
    """SAM's Globals merge: maps merge recursively (local wins), lists concatenate (globals first), scalars: local."""
    if isinstance(glob, dict) and isinstance(local, dict):
        out = copy.deepcopy(glob)
        for k, v in local.items():
            out[k] = _merge_globals(glob[k], v) if k in glob else copy.deepcopy(v)
        return out
    if isinstance(glob, list) and isinstance(local, list):
        return copy.deepcopy(glob) + copy.deepcopy(local)
    return copy.deepcopy(local)


_GLOBAL_SECTIONS = {
    "Function": "AWS::Serverless::Function",
    "HttpApi": "AWS::Serverless::HttpApi",
    "Api": "AWS::Serverless::Api",
    "SimpleTable": "AWS::Serverless::SimpleTable",
    "LayerVersion": "AWS::Serverless::LayerVersion",
}


# --------------------------------------------------------------------------------------------------------------------
# Physical identities


def _physical_kind(rtype: str) -> str:
    return {
        "AWS::S3::Bucket": "bucket",
        "AWS::SQS::Queue": "queue",
        "AWS::DynamoDB::Table": "table",
        "AWS::Serverless::SimpleTable": "table",
        "AWS::Events::EventBus": "bus",
        "AWS::Events::Rule": "rule",
        "AWS::Logs::LogGroup": "loggroup",
        "AWS::Serverless::Function": "function",
        "AWS::Lambda::Function": "function",
        "AWS::Serverless::LayerVersion": "layer",
        "AWS::Lambda::LayerVersion": "layer",
        "AWS::Serverless::HttpApi": "httpapi",
        "AWS::SNS::Topic": "topic",
        "AWS::IAM::Role": "role",
        "AWS::CodeBuild::Project": "codebuild",
        "AWS::Scheduler::Schedule": "schedule",
        "AWS::KinesisFirehose::DeliveryStream": "firehose",
    }.get(rtype, "other")


_NAME_PROPERTY = {
    "bucket": "BucketName",
    "queue": "QueueName",
    "table": "TableName",
    "bus": "Name",
    "rule": "Name",
    "loggroup": "LogGroupName",
    "function": "FunctionName",
    "layer": "LayerName",
    "topic": "TopicName",
    "role": "RoleName",
    "codebuild": "Name",
    "schedule": "Name",
    "httpapi": "Name",
    "firehose": "DeliveryStreamName",
}


@dataclass
class Template:
    """A loaded template: parameters applied, Globals merged into each resource, intrinsics resolvable."""

    path: Path
    doc: dict[str, Any]
    stack_name: str = "liteserve"
    region: str = "us-east-1"
    parameters: dict[str, str] = field(default_factory=dict)
    endpoint_url: str = "http://127.0.0.1:5000"
    api_url: str = "http://127.0.0.1:3000"
    resources: dict[str, dict[str, Any]] = field(init=False)
    _names: dict[str, str] = field(init=False, default_factory=dict)
    _resolving: set[str] = field(init=False, default_factory=set)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Template:
        """Load ``path`` and prepare it (``stack_name``, ``region``, ``parameters``, ``endpoint_url`` as kwargs)."""
        return cls(Path(path).resolve(), load_yaml(path), **kwargs)

    def __post_init__(self) -> None:
        declared = self.doc.get("Parameters") or {}
        unknown = set(self.parameters) - set(declared)
        if unknown:
            raise TemplateError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        self.param_values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in self.parameters:
                value: Any = self.parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default and no value was given")
            if str(spec.get("Type", "String")).startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                value = [v.strip() for v in str(value).split(",")] if isinstance(value, str) else value
            elif not isinstance(value, str):
                value = str(value)
            allowed = spec.get("AllowedValues")
            if allowed and value not in [str(a) for a in allowed]:
                raise TemplateError(f"parameter {name}={value!r} not in AllowedValues {allowed}")
            self.param_values[name] = value
        glob = self.doc.get("Globals") or {}
        self.resources = {}
        for lid, res in self.doc["Resources"].items():
            res = copy.deepcopy(res)
            for section, rtype in _GLOBAL_SECTIONS.items():
                if res.get("Type") == rtype and section in glob:
                    res["Properties"] = _merge_globals(glob[section], res.get("Properties") or {})
            self.resources[lid] = res
        self.conditions: dict[str, bool] = {}
        for name in self.doc.get("Conditions") or {}:
            self.condition(name)

    # ---------------------------------------------------------------- lookups

    @property
    def base_dir(self) -> Path:
        """Directory relative to which CodeUri/ContentUri are interpreted."""
        return self.path.parent

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        """Resources of the given types whose Condition holds, by logical id."""
        return {lid: r for lid, r in self.resources.items() if r.get("Type") in types and self.active(lid)}

    def active(self, lid: str) -> bool:
        """Whether the resource's Condition (if any) is true."""
        cond = self.resources[lid].get("Condition")
        return True if cond is None else self.condition(cond)

    def condition(self, name: str) -> bool:
        """Evaluate a named condition."""
        if name not in self.conditions:
            body = (self.doc.get("Conditions") or {}).get(name)
            if body is None:
                raise TemplateError(f"unknown condition {name}")
            self.conditions[name] = bool(self.resolve(body))
        return self.conditions[name]

    def props(self, lid: str) -> dict[str, Any]:
        """The resolved Properties of a resource."""
        return self.resolve(self.resources[lid].get("Properties") or {})

    def kind(self, lid: str) -> str:
        """Short kind (bucket, queue, table, function, ...) of a logical id."""
        return _physical_kind(self.resources[lid]["Type"])

    # ---------------------------------------------------------------- physical names and attributes

    def name(self, lid: str) -> str:
        """Physical name of a resource: the template's name property if set, else ``<stack>-<LogicalId>``."""
        if lid in self._names:
            return self._names[lid]
        if lid not in self.resources:
            raise TemplateError(f"unknown resource {lid}")
        if lid in self._resolving:
            raise TemplateError(f"circular reference while naming {lid}")
        self._resolving.add(lid)
        try:
            kind = self.kind(lid)
            raw = (self.resources[lid].get("Properties") or {}).get(_NAME_PROPERTY.get(kind, ""))
            name = self.resolve(raw) if raw is not None else f"{self.stack_name}-{lid}"
            if kind == "bucket":
                name = name.lower()
            if (
                kind == "queue"
                and (self.resources[lid].get("Properties") or {}).get("FifoQueue")
                and not name.endswith(".fifo")
            ):
                name += ".fifo"
        finally:
            self._resolving.discard(lid)
        self._names[lid] = str(name)
        return self._names[lid]

    def arn(self, lid: str) -> str:
        """ARN of a resource, built the way AWS builds it."""
        kind, name, reg, acct = self.kind(lid), self.name(lid), self.region, ACCOUNT_ID
        svc = {
            "bucket": f"arn:aws:s3:::{name}",
            "queue": f"arn:aws:sqs:{reg}:{acct}:{name}",
            "table": f"arn:aws:dynamodb:{reg}:{acct}:table/{name}",
            "bus": f"arn:aws:events:{reg}:{acct}:event-bus/{name}",
            "rule": f"arn:aws:events:{reg}:{acct}:rule/{name}",
            "loggroup": f"arn:aws:logs:{reg}:{acct}:log-group:{name}:*",
            "function": f"arn:aws:lambda:{reg}:{acct}:function:{name}",
            "layer": f"arn:aws:lambda:{reg}:{acct}:layer:{name}:1",
            "topic": f"arn:aws:sns:{reg}:{acct}:{name}",
            "role": f"arn:aws:iam::{acct}:role/{name}",
            "codebuild": f"arn:aws:codebuild:{reg}:{acct}:project/{name}",
            "schedule": f"arn:aws:scheduler:{reg}:{acct}:schedule/default/{name}",
            "firehose": f"arn:aws:firehose:{reg}:{acct}:deliverystream/{name}",
        }
        if kind not in svc:
            raise TemplateError(f"cannot build an ARN for {lid} ({self.resources[lid]['Type']})")
        return svc[kind]

    def queue_url(self, lid: str) -> str:
        """The queue URL moto serves for this queue."""
        return f"{self.endpoint_url}/{ACCOUNT_ID}/{self.name(lid)}"

    def ref(self, lid: str) -> str:
        """What ``!Ref`` returns for a resource."""
        kind = self.kind(lid)
        if kind == "queue":
            return self.queue_url(lid)
        if kind in ("layer", "topic"):
            return self.arn(lid)
        if kind == "httpapi":
            return self.api_id(lid)
        if kind == "other":
            # CloudFormation returns the physical id; for kinds we do not emulate, a stable name stands in.
            return self.name(lid)
        return self.name(lid)

    def api_id(self, lid: str) -> str:
        """A stable 10-character API id for an HTTP API resource."""
        return re.sub(r"[^a-z0-9]", "", lid.lower())[:10].ljust(10, "0")

    def get_att(self, lid: str, attr: str) -> str:
        """What ``!GetAtt lid.attr`` returns."""
        if lid not in self.resources:
            raise TemplateError(f"GetAtt of unknown resource {lid}")
        kind = self.kind(lid)
        name = self.name(lid)
        table: dict[tuple[str, str], Any] = {
            ("bucket", "DomainName"): f"{name}.s3.amazonaws.com",
            ("bucket", "RegionalDomainName"): f"{name}.s3.{self.region}.amazonaws.com",
            ("queue", "QueueName"): name,
            ("queue", "QueueUrl"): self.queue_url(lid) if kind == "queue" else None,
            ("table", "StreamArn"): f"{self.arn(lid)}/stream/1970-01-01T00:00:00.000" if kind == "table" else None,
            ("bus", "Name"): name,
            ("role", "RoleId"): f"AROA{name.upper()[:16]}",
            ("httpapi", "ApiEndpoint"): self.api_url,
        }
        if attr == "Arn":
            return self.arn(lid)
        value = table.get((kind, attr))
        if value is None:
            raise TemplateError(f"unsupported GetAtt {lid}.{attr} ({self.resources[lid]['Type']})")
        return value

    # ---------------------------------------------------------------- intrinsics

    def resolve(self, node: Any) -> Any:
        """Resolve every intrinsic function in ``node`` (returns a new structure)."""
        if isinstance(node, list):
            out = [self.resolve(v) for v in node]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._fn(key[4:], arg)
        out_d = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in out_d.items() if v is not NO_VALUE}

    def _ref(self, name: Any) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/local",
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.param_values:
            return self.param_values[name]
        if name in self.resources:
            return self.ref(name)
        raise TemplateError(f"unresolvable !Ref {name}")

    def _fn(self, fn: str, arg: Any) -> Any:
        if fn == "GetAtt":
            lid, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.get_att(self.resolve(lid), self.resolve(attr))
        if fn == "Sub":
            text, extra = (arg[0], self.resolve(arg[1])) if isinstance(arg, list) else (arg, {})
            return self._sub(text, extra)
        if fn == "Join":
            sep, items = arg
            return str(self.resolve(sep)).join(str(v) for v in self.resolve(items))
        if fn == "Select":
            idx, items = self.resolve(arg)
            return items[int(idx)]
        if fn == "Split":
            sep, text = self.resolve(arg)
            return str(text).split(sep)
        if fn == "If":
            cond, yes, no = arg
            return self.resolve(yes) if self.condition(cond) else self.resolve(no)
        if fn == "Equals":
            a, b = self.resolve(arg)
            return str(a) == str(b)
        if fn == "Not":
            return not self.resolve(arg[0])
        if fn == "And":
            return all(self.resolve(a) for a in arg)
        if fn == "Or":
            return any(self.resolve(a) for a in arg)
        if fn == "FindInMap":
            m, k1, k2 = self.resolve(arg)
            try:
                return self.doc["Mappings"][m][k1][k2]
            except KeyError as exc:
                raise TemplateError(f"FindInMap {m}/{k1}/{k2} not found") from exc
        if fn == "GetAZs":
            return [f"{self.region}{z}" for z in "abc"]
        if fn == "Base64":
            import base64

            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if fn == "ToJsonString":
            import json

            return json.dumps(self.resolve(arg), separators=(",", ":"))
        if fn == "Length":
            return len(self.resolve(arg))
        raise TemplateError(f"unsupported intrinsic Fn::{fn}")

    def _sub(self, text: str, extra: dict[str, Any]) -> str:
        def repl(m: re.Match[str]) -> str:
            var = m.group(1)
            if var.startswith("!"):
                return "${" + var[1:] + "}"
            if var in extra:
                return str(extra[var])
            if "." in var and var.split(".", 1)[0] in self.resources:
                lid, attr = var.split(".", 1)
                return str(self.get_att(lid, attr))
            return str(self._ref(var))

        return re.sub(r"\$\{([^}]+)\}", repl, text)

    # ---------------------------------------------------------------- helpers for event sources

    def layer_folder(self, lid: str) -> Path | None:
        """The local folder whose contents a layer puts in /opt, or None when the dev venv stands in for it.

        An unbuilt layer is its ContentUri folder. A built one (``Metadata.BuildMethod``) is that folder too when it
        already holds the ``python/`` tree the build ships (the shared layer: its build only adds bytecode); one
        without (the runtime layer: pip wheels) is stood in for by the dev venv."""
        content = self.props(lid).get("ContentUri") or self.props(lid).get("Content")
        if not isinstance(content, str):
            return None
        folder = (self.base_dir / content).resolve()
        built = bool((self.resources[lid].get("Metadata") or {}).get("BuildMethod"))
        return None if built and not (folder / "python").is_dir() else folder

    def logical_id_of(self, value: Any, kinds: tuple[str, ...] = ()) -> str:
        """Map a resolved reference (name, ARN or URL) back to the logical id it came from."""
        for lid in self.resources:
            if kinds and self.kind(lid) not in kinds:
                continue
            try:
                candidates = {self.name(lid), self.ref(lid)}
                if self.kind(lid) != "other":
                    candidates.add(self.arn(lid))
            except TemplateError:
                continue
            if value in candidates:
                return lid
        raise TemplateError(f"{value!r} does not refer to a resource of this template")
