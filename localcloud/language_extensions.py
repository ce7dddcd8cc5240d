"""Resolve ``Fn::If`` on parameter-only conditions, as the AWS::LanguageExtensions transform does before SAM runs.

template.yaml lists ``AWS::LanguageExtensions`` before ``AWS::Serverless-2016-10-31`` so that CloudFormation picks the
HttpApi's default authorizer from the ``ApiAuth`` parameter (SAM itself wants a literal string there). The offline
translator (``localcloud.sam_translate``) runs SAM only, so ``make sam-check`` first passes the template through
this script once per parameter choice:

    python -m localcloud.language_extensions template.yaml -p ApiAuth=JWT > .aws-sam/expanded-JWT.json

Only ``Fn::If`` (and the ``AWS::NoValue`` it may select) in Resources and Outputs is resolved, and only when its
condition depends on parameters alone; every other intrinsic is left for SAM and CloudFormation. SAM CLI's own
emulation of the transform is not used because it also turns an ``Fn::Sub`` it cannot fully resolve into a plain
string (e.g. ``${AWS::StackName}``), which breaks the translated template.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from localcloud.sam_translate import load_template

NO_VALUE = {"Ref": "AWS::NoValue"}
_DROP = object()


class Unresolvable(Exception):
    """A condition depends on something other than parameters (a resource, a pseudo parameter)."""


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Each parameter's value: the override, else its default; CommaDelimitedList values become lists."""
    params = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in params.items():
        if name not in overrides and "Default" not in spec:
            continue
        value = overrides.get(name, spec.get("Default"))
        if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            value = value.split(",")
        values[name] = value
    return values


def _value(node: Any, values: dict[str, Any], conditions: dict[str, Any]) -> Any:
    """A condition operand: a literal, a !Ref to a parameter, or a nested condition function."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            if arg not in values:
                raise Unresolvable(f"Ref {arg}")
            return values[arg]
        return evaluate(node, values, conditions)
    return node


def evaluate(node: Any, values: dict[str, Any], conditions: dict[str, Any]) -> bool:
    """Evaluate a condition expression (Fn::Equals/Not/And/Or, Condition) over parameter values."""
    if not isinstance(node, dict) or len(node) != 1:
        raise Unresolvable(repr(node))
    ((key, arg),) = node.items()
    if key == "Condition":
        return evaluate(conditions[arg], values, conditions)
    if key == "Fn::Equals":
        left, right = (_value(a, values, conditions) for a in arg)
        return str(left) == str(right) if not isinstance(left, list) else left == right
    if key == "Fn::Not":
        return not evaluate(arg[0], values, conditions)
    if key == "Fn::And":
        return all(evaluate(a, values, conditions) for a in arg)
    if key == "Fn::Or":
        return any(evaluate(a, values, conditions) for a in arg)
    raise Unresolvable(key)


def resolve_ifs(node: Any, truth: dict[str, bool]) -> Any:
    """``node`` with every ``Fn::If`` whose condition is in ``truth`` replaced by its branch (NoValue removed)."""
    if isinstance(node, dict):
        if len(node) == 1 and "Fn::If" in node:
            name, when_true, when_false = node["Fn::If"]
            if name in truth:
                chosen = when_true if truth[name] else when_false
                return _DROP if chosen == NO_VALUE else resolve_ifs(chosen, truth)
        out = {}
        for key, value in node.items():
            resolved = resolve_ifs(value, truth)
            if resolved is not _DROP:
                out[key] = resolved
        return out
    if isinstance(node, list):
        return [r for r in (resolve_ifs(v, truth) for v in node) if r is not _DROP]
    return node


def expand(template: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The template with parameter-only ``Fn::If`` resolved in Resources and Outputs."""
    values = parameter_values(template, overrides or {})
    conditions = template.get("Conditions") or {}
    truth: dict[str, bool] = {}
    for name, expression in conditions.items():
        try:
            truth[name] = evaluate(expression, values, conditions)
        except Unresolvable:
            continue  # left for CloudFormation
    out = dict(template)
    for section in ("Resources", "Outputs"):
        if section in out:
            out[section] = resolve_ifs(out[section], truth)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: print the expanded template as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    overrides = {}
    for text in args.parameter:
        name, sep, value = text.partition("=")
        if not sep or not name:
            parser.error(f"expected NAME=VALUE, got {text!r}")
        overrides[name] = value
    try:
        print(json.dumps(expand(load_template(args.template), overrides), indent=1))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
