"""CloudWatch Logs subscription filters -> Firehose -> S3, emulated from the template.

Each ``AWS::Logs::SubscriptionFilter`` on a function's log group whose destination is a Firehose delivery stream with
an S3 destination is honoured: the function's log lines (what Lambda would send to CloudWatch Logs) are filtered with
the filter pattern and written to the stream's bucket the way Firehose writes them (message extraction, delimiter,
GZIP, ``!{timestamp:...}`` prefixes, ``<stream>-1-<time>-<uuid>`` object names), every buffering interval (capped by
the local cloud's setting) or on :meth:`LogShipper.flush`.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.template import Template, TemplateError

log = logging.getLogger("localcloud.logship")


# ------------------------------------------------------------------------------------------------ filter patterns


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A CloudWatch Logs filter pattern as a predicate on one log message (JSON patterns and term patterns)."""
    text = pattern.strip()
    if not text:
        return lambda _msg: True
    if text.startswith("{"):
        if not text.endswith("}"):
            raise TemplateError(f"filter pattern {pattern!r}: unbalanced braces")
        expr = _JsonPatternParser(text[1:-1]).parse()

        def match_json(msg: str) -> bool:
            try:
                doc = json.loads(msg)
            except ValueError:
                return False
            return isinstance(doc, dict) and expr(doc)

        return match_json
    terms = re.findall(r'[?-]?"[^"]*"|\S+', text)
    any_of = [t[1:].strip('"') for t in terms if t.startswith("?")]
    none_of = [t[1:].strip('"') for t in terms if t.startswith("-")]
    all_of = [t.strip('"') for t in terms if t[0] not in "?-"]
    if any_of:
        return lambda msg: any(t in msg for t in any_of)
    return lambda msg: all(t in msg for t in all_of) and not any(t in msg for t in none_of)


_TOKEN = re.compile(r'\s*(\(|\)|&&|\|\||!=|<=|>=|=|<|>|"(?:[^"\\]|\\.)*"|\$[^\s=!<>()&|]*|[^\s=!<>()&|"]+)')


class _JsonPatternParser:
    """``{ ($.a = "x") || ($.b.c > 3 && $.d != "y*") }``: comparisons joined by && (binds tighter) and ||."""

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or not m.group(1):
                if text[pos:].strip():
                    raise TemplateError(f"cannot parse filter pattern near {text[pos:]!r}")
                break
            self.tokens.append(m.group(1))
            pos = m.end()
        self.i = 0

    def parse(self) -> Callable[[dict[str, Any]], bool]:
        expr = self._or()
        if self.i != len(self.tokens):
            raise TemplateError(f"unexpected {self.tokens[self.i]!r} in filter pattern")
        return expr

    def _next(self) -> str:
        if self.i >= len(self.tokens):
            raise TemplateError("filter pattern ends too early")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _or(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self._and()]
        while self.i < len(self.tokens) and self.tokens[self.i] == "||":
            self.i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda d: any(p(d) for p in parts))

    def _and(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self._atom()]
        while self.i < len(self.tokens) and self.tokens[self.i] == "&&":
            self.i += 1
            parts.append(self._atom())
        return parts[0] if len(parts) == 1 else (lambda d: all(p(d) for p in parts))

    def _atom(self) -> Callable[[dict[str, Any]], bool]:
        tok = self._next()
        if tok == "(":
            inner = self._or()
            if self._next() != ")":
                raise TemplateError("missing ) in filter pattern")
            return inner
        if not tok.startswith("$"):
            raise TemplateError(f"expected a $.selector in filter pattern, got {tok!r}")
        path = re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", tok[1:])
        op, raw = self._next(), self._next()
        return _comparison(path, op, raw)


def _comparison(path: list[tuple[str, str]], op: str, raw: str) -> Callable[[dict[str, Any]], bool]:
    missing = object()

    def select(doc: Any) -> Any:
        node = doc
        for name, index in path:
            try:
                node = node[int(index)] if index else node[name]
            except (KeyError, IndexError, TypeError):
                return missing
        return node

    if raw.startswith('"'):
        regex = re.compile("^" + ".*".join(re.escape(p) for p in json.loads(raw).split("*")) + "$")
        if op not in ("=", "!="):
            raise TemplateError(f"operator {op} needs a number")
        return lambda d: (isinstance(v := select(d), str) and bool(regex.match(v))) == (op == "=")
    if raw in ("TRUE", "FALSE", "NULL", "true", "false", "null"):
        want = {"true": True, "false": False, "null": None}[raw.lower()]
        return lambda d: (select(d) is want) == (op == "=")
    num = float(raw)
    ops: dict[str, Callable[[float, float], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    if op not in ops:
        raise TemplateError(f"unknown operator {op} in filter pattern")

    def compare(d: dict[str, Any]) -> bool:
        v = select(d)
        return isinstance(v, int | float) and not isinstance(v, bool) and ops[op](float(v), num)

    return compare


# ------------------------------------------------------------------------------------------------ shipping


_JAVA_TIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}


def firehose_prefix(prefix: str, now: float) -> str:
    """Evaluate Firehose's ``!{timestamp:...}`` / ``!{firehose:random-string}`` namespaces (UTC)."""

    def repl(m: re.Match[str]) -> str:
        kind, _, arg = m.group(1).partition(":")
        if kind == "timestamp":
            fmt = re.sub("|".join(_JAVA_TIME), lambda x: _JAVA_TIME[x.group(0)], arg)
            return time.strftime(fmt, time.gmtime(now))
        if kind == "firehose" and arg == "random-string":
            return uuid.uuid4().hex[:11]
        raise TemplateError(f"Firehose prefix expression !{{{m.group(1)}}} is not emulated")

    if "!{timestamp" not in prefix:
        prefix += time.strftime("%Y/%m/%d/%H/", time.gmtime(now))
    return re.sub(r"!\{([^}]+)\}", repl, prefix)


def object_key(stream: str, prefix: str, now: float, compressed: bool = True) -> str:
    """The S3 key Firehose gives the object it writes at `now`: the evaluated prefix (``YYYY/MM/DD/HH/`` appended when
    it has no ``!{timestamp}``), then ``<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>`` (``.gz`` when GZIP-compressed)."""
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now))
    return f"{firehose_prefix(prefix, now)}{stream}-1-{stamp}-{uuid.uuid4()}{'.gz' if compressed else ''}"


@dataclass
class Subscription:
    """One subscription filter bound to a function's log file and a Firehose S3 destination."""

    name: str
    function: str
    matches: Callable[[str], bool]
    stream: str
    bucket: str
    prefix: str
    gzip: bool
    extract: bool
    delimiter: str
    interval: float
    log_group: str
    pending: list[str] = field(default_factory=list)


def plan_subscriptions(tpl: Template, function_log_groups: dict[str, str]) -> tuple[list[Subscription], list[str]]:
    """Subscriptions the local cloud can deliver, and the ones it cannot (with reasons)."""
    subs, skipped = [], []
    by_group = {g: fn for fn, g in function_log_groups.items()}
    for lid in tpl.of_type("AWS::Logs::SubscriptionFilter"):
        p = tpl.props(lid)
        fn = by_group.get(p["LogGroupName"])
        if fn is None:
            skipped.append(f"{lid} (log group {p['LogGroupName']} is not a function's)")
            continue
        try:
            dest = tpl.logical_id_of(p["DestinationArn"], ("firehose",))
        except TemplateError:
            skipped.append(f"{lid} (destination {p['DestinationArn']} is not a Firehose stream of the template)")
            continue
        fp = tpl.props(dest)
        conf = fp.get("ExtendedS3DestinationConfiguration") or fp.get("S3DestinationConfiguration")
        if not conf:
            skipped.append(f"{lid} (Firehose {dest} has no S3 destination)")
            continue
        params = {
            (proc.get("Type"), prm["ParameterName"]): prm["ParameterValue"]
            for proc in (conf.get("ProcessingConfiguration") or {}).get("Processors") or []
            for prm in proc.get("Parameters") or []
        }
        enabled = (conf.get("ProcessingConfiguration") or {}).get("Enabled", False)
        subs.append(
            Subscription(
                name=lid,
                function=fn,
                matches=compile_pattern(p.get("FilterPattern", "")),
                stream=tpl.name(dest),
                bucket=conf["BucketARN"].rsplit(":", 1)[-1],
                prefix=conf.get("Prefix", ""),
                gzip=conf.get("CompressionFormat") == "GZIP",
                extract=bool(enabled)
                and str(params.get(("CloudWatchLogProcessing", "DataMessageExtraction"))).lower() == "true",
                delimiter=json.loads(f'"{params.get(("AppendDelimiterToRecord", "Delimiter"), "")}"')
                if enabled
                else "",
                interval=float((conf.get("BufferingHints") or {}).get("IntervalInSeconds", 300)),
                log_group=p["LogGroupName"],
            )
        )
    return subs, skipped


class LogShipper:
    """Tails the functions' log files and delivers subscribed lines to S3 like Firehose."""

    def __init__(self, subs: list[Subscription], log_files: dict[str, Path], s3: Any, max_interval: float) -> None:
        self.subs, self.log_files, self.s3 = subs, log_files, s3
        self.interval = min([max_interval, *[s.interval for s in subs]])
        # Start at the current end: earlier runs' lines in the same state dir are not this run's.
        self._offsets = {fn: (f.stat().st_size if f.exists() else 0) for fn, f in log_files.items()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.objects_written = 0

    def start(self) -> None:
        """Deliver every ``interval`` seconds in a background thread."""
        if self.subs:
            threading.Thread(target=self._run, name="logship", daemon=True).start()

    def stop(self) -> None:
        """Stop the background thread (pending lines are dropped, as on a deleted stream)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:
                log.exception("log shipping failed")

    def flush(self) -> int:
        """Read new log lines and write one object per subscription that has matching lines; return how many."""
        written = 0
        with self._lock:
            for fn in {s.function for s in self.subs}:
                f = self.log_files[fn]
                if not f.exists():
                    continue
                with open(f, "rb") as fh:
                    fh.seek(self._offsets[fn])
                    data = fh.read()
                end = data.rfind(b"\n") + 1  # complete lines only
                self._offsets[fn] += end
                lines = data[:end].decode("utf-8", "replace").splitlines()
                for s in self.subs:
                    if s.function == fn:
                        s.pending += [line for line in lines if s.matches(line)]
            now = time.time()
            for s in self.subs:
                if not s.pending:
                    continue
                if s.extract:
                    body = "".join(line + s.delimiter for line in s.pending).encode()
                else:
                    events = [
                        {"id": str(i), "timestamp": int(now * 1000), "message": m} for i, m in enumerate(s.pending)
                    ]
                    body = json.dumps(
                        {
                            "messageType": "DATA_MESSAGE",
                            "logGroup": s.log_group,
                            "logStream": "local",
                            "subscriptionFilters": [s.name],
                            "logEvents": events,
                        }
                    ).encode()
                if s.gzip:
                    body = gzip.compress(body, mtime=0)
                key = object_key(s.stream, s.prefix, now, compressed=s.gzip)
                self.s3.put_object(Bucket=s.bucket, Key=key, Body=body)
                log.info("%s: %d line(s) -> s3://%s/%s", s.name, len(s.pending), s.bucket, key)
                s.pending = []
                written += 1
            self.objects_written += written
        return written
