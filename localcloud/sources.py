"""Event sources: SQS pollers, S3 and EventBridge deliveries (via SQS transport queues in moto) and schedules."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localcloud.runtime import FunctionPool, InvocationError
from localcloud.schedule import Expression, utcnow
from localcloud.template import ACCOUNT_ID, Template, TemplateError

log = logging.getLogger("localcloud.sources")
ASYNC_ATTEMPTS = 3  # asynchronous invocation: 1 try + 2 retries (Lambda's default MaximumRetryAttempts)


def sqs_record(m: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS ``receive_message`` message turned into the record Lambda's SQS poller delivers."""
    attrs = dict(m.get("Attributes") or {})
    mattrs = {}
    for k, v in (m.get("MessageAttributes") or {}).items():
        a: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": v["DataType"]}
        if "StringValue" in v:
            a["stringValue"] = v["StringValue"]
        if "BinaryValue" in v:
            a["binaryValue"] = base64.b64encode(v["BinaryValue"]).decode()
        mattrs[k] = a
    rec: dict[str, Any] = {
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": attrs,
        "messageAttributes": mattrs,
        "md5OfBody": m["MD5OfBody"],
    }
    if "MD5OfMessageAttributes" in m:
        rec["md5OfMessageAttributes"] = m["MD5OfMessageAttributes"]
    rec.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
    return rec


def complete_s3_record(rec: dict[str, Any]) -> dict[str, Any]:
    """Fill in the fields of a real S3 notification record that moto leaves out (identity, request ids, sequencer)."""
    rid = uuid.uuid4().hex[:16].upper()
    rec.setdefault("userIdentity", {"principalId": "AWS:AIDALOCALCLOUD"})
    rec.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
    rec.setdefault(
        "responseElements",
        {"x-amz-request-id": rid, "x-amz-id-2": base64.b64encode(hashlib.sha256(rid.encode()).digest()).decode()},
    )
    bucket = rec["s3"]["bucket"]
    bucket.setdefault("ownerIdentity", {"principalId": "A3LOCALCLOUD"})
    obj = rec["s3"]["object"]
    obj.setdefault("sequencer", f"{time.time_ns():016X}")
    return rec


def eventbridge_event(e: dict[str, Any], region: str) -> dict[str, Any]:
    """An event as EventBridge delivers it to a target (moto's SQS target drops ``account``)."""
    return {
        "version": e.get("version", "0"),
        "id": e["id"],
        "detail-type": e["detail-type"],
        "source": e["source"],
        "account": e.get("account", ACCOUNT_ID),
        "time": e["time"],
        "region": e.get("region", region),
        "resources": e.get("resources", []),
        "detail": e.get("detail", {}),
    }


def json_path(doc: Any, path: str) -> Any:
    """Evaluate a simple JSONPath (``$``, ``$.a.b``, ``$.a[0].b``) as EventBridge input paths use them."""
    node = doc
    for name, index in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", path.strip()[1:]):
        node = node[int(index)] if index else node[name]
    return node


def target_input(event: dict[str, Any], target: dict[str, Any]) -> Any:
    """What a rule target receives: ``Input``, ``InputPath`` or ``InputTransformer`` applied to the event."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        return json_path(event, target["InputPath"])
    if "InputTransformer" in target:
        tr = target["InputTransformer"]
        values = {k: json_path(event, v) for k, v in (tr.get("InputPathsMap") or {}).items()}
        return _fill_template(tr["InputTemplate"], values)
    return event


def _fill_template(template: str, values: dict[str, Any]) -> Any:
    """EventBridge input templates: ``<name>`` inside a JSON string inserts text, outside it inserts JSON."""
    out, in_str, i = [], False, 0
    while i < len(template):
        ch = template[i]
        m = re.match(r"<([A-Za-z0-9_.-]+)>", template[i:]) if ch == "<" else None
        if m and m.group(1) in values:
            v = values[m.group(1)]
            if in_str:
                out.append(json.dumps(v if isinstance(v, str) else json.dumps(v))[1:-1])
            else:
                out.append(json.dumps(v))
            i += m.end()
            continue
        if ch == '"' and (i == 0 or template[i - 1] != "\\"):
            in_str = not in_str
        out.append(ch)
        i += 1
    text = "".join(out)
    try:
        return json.loads(text)
    except ValueError:
        return text  # a non-JSON template yields a plain string


@dataclass
class _Poller:
    """Threads polling one queue for one function."""

    name: str
    threads: int
    loop: Callable[[threading.Event], None]
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self, stop: threading.Event) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(stop,), name=f"{self.name}#{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.loop(stop)
            except (ClientError, BotoCoreError) as exc:  # e.g. queue gone during a reset: back off, retry
                log.debug("%s: %s", self.name, exc)
                stop.wait(0.5)
            except Exception:
                log.exception("%s: poller error", self.name)
                stop.wait(1.0)

    def join(self, timeout: float) -> None:
        for t in self._workers:
            t.join(timeout)


@dataclass
class ScheduleSpec:
    """One schedule bound to a function."""

    function: str
    event_name: str
    rule_name: str
    expression: Expression
    input: str | None
    enabled: bool
    v2: bool
    next_at: datetime | None = None
    target: dict[str, Any] | None = None  # a rule's target: its InputPath / InputTransformer apply to the event

    def event(self, region: str, when: datetime | None = None) -> Any:
        """The payload the target receives."""
        if self.input is not None:
            return json.loads(self.input)
        if self.v2:
            return {}  # EventBridge Scheduler sends no event envelope; with no Input the payload is empty.
        when = when or utcnow()
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region,
            "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{self.rule_name}"],
            "detail": {},
        }
        return target_input(event, self.target) if self.target else event


class Sources:
    """All non-HTTP event sources of a template, wired to the function pools."""

    def __init__(
        self,
        tpl: Template,
        pools: dict[str, FunctionPool],
        session: Any,
        endpoint_url: str,
        time_scale: float = 1.0,
        clock: bool = True,
        retry_delay: int = 1,
        builds: dict[str, Any] | None = None,
    ) -> None:
        self.tpl, self.pools, self.region = tpl, pools, tpl.region
        # Anything an event can target: function pools and (CodeBuild) build runners, by logical id.
        self.targets: dict[str, Any] = {**pools, **(builds or {})}
        self.sqs = session.client("sqs", endpoint_url=endpoint_url)
        self.s3 = session.client("s3", endpoint_url=endpoint_url)
        self.events = session.client("events", endpoint_url=endpoint_url)
        self.time_scale, self.clock, self.retry_delay = time_scale, clock, retry_delay
        self.stop_event = threading.Event()
        self.pollers: list[_Poller] = []
        self.schedules: list[ScheduleSpec] = []
        self.transport: dict[str, str] = {}  # transport queue name -> purpose
        self._visibility: dict[str, int] = {}
        self._s3_notifications: dict[str, list[dict[str, Any]]] = {}
        # (rule name, bus, pattern json, transport queue, state)
        self._rules: list[tuple[str, str, str | None, Any, str]] = []
        self._plan()

    # ------------------------------------------------------------------ planning (from the template)

    def _plan(self) -> None:
        tpl = self.tpl
        for lid, pool in self.pools.items():
            for ev_name, ev in pool.spec.events.items():
                typ, p = ev.get("Type"), tpl.resolve(ev.get("Properties") or {})
                if typ == "SQS":
                    self._plan_sqs(lid, ev_name, p)
                elif typ == "S3":
                    self._plan_s3(lid, ev_name, p)
                elif typ in ("Schedule", "ScheduleV2"):
                    expr = p.get("Schedule") or p.get("ScheduleExpression")
                    state = p.get("State", "ENABLED" if p.get("Enabled", True) else "DISABLED")
                    self.schedules.append(
                        ScheduleSpec(
                            lid,
                            ev_name,
                            p.get("Name") or f"{tpl.stack_name}-{lid}{ev_name}",
                            Expression(expr),
                            p.get("Input"),
                            state == "ENABLED",
                            typ == "ScheduleV2",
                        )
                    )
                elif typ in ("EventBridgeRule", "CloudWatchEvent"):
                    if "Pattern" not in p:
                        raise TemplateError(f"{lid}.{ev_name}: an EventBridgeRule needs a Pattern")
                    self._plan_rule(
                        lid,
                        ev_name,
                        p.get("RuleName") or f"{tpl.stack_name}-{lid}{ev_name}",
                        p.get("EventBusName", "default"),
                        p["Pattern"],
                        p,
                    )
                elif typ == "HttpApi":
                    continue
                else:
                    raise TemplateError(f"{lid}.{ev_name}: event type {typ} is not emulated")
        # Standalone AWS::Events::Rule resources that target our functions.
        for rid in tpl.of_type("AWS::Events::Rule"):
            p = tpl.props(rid)
            state = p.get("State", "ENABLED")
            for target in p.get("Targets") or []:
                try:
                    fn = tpl.logical_id_of(target["Arn"], ("function", "codebuild"))
                except TemplateError:
                    log.warning("rule %s: target %s is not emulated", rid, target["Arn"])
                    continue
                if fn not in self.targets:
                    continue
                if "ScheduleExpression" in p:
                    self.schedules.append(
                        ScheduleSpec(
                            fn,
                            rid,
                            tpl.name(rid),
                            Expression(p["ScheduleExpression"]),
                            target.get("Input"),
                            state == "ENABLED",
                            False,
                            target=target,
                        )
                    )
                if "EventPattern" in p:
                    bus = p.get("EventBusName", "default")
                    bus = bus.rsplit("/", 1)[-1]
                    self._plan_rule(fn, rid, tpl.name(rid), bus, p["EventPattern"], target, state)

    def _transport_queue(self, fn: str, ev_name: str, purpose: str) -> str:
        name = f"localcloud-{fn}-{ev_name}"[:80]
        self.transport[name] = purpose
        # Visibility above the function timeout: a message is never redelivered while its invocation runs.
        self._visibility[name] = int(self.targets[fn].spec.timeout) + 10
        return name

    def _plan_sqs(self, fn: str, ev_name: str, p: dict[str, Any]) -> None:
        qlid = self.tpl.logical_id_of(p["Queue"], ("queue",))
        url, arn = self.tpl.queue_url(qlid), self.tpl.arn(qlid)
        batch = int(p.get("BatchSize", 10))
        window = float(p.get("MaximumBatchingWindowInSeconds", 0))
        partial = "ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or [])
        pool = self.pools[fn]
        vis = int(self.tpl.props(qlid).get("VisibilityTimeout", 30))
        if vis < pool.spec.timeout:
            # CloudFormation rejects this mapping too: a message would reappear while its batch still runs.
            raise TemplateError(
                f"{fn}.{ev_name}: queue {qlid} visibility timeout ({vis} s) is less than the "
                f"function timeout ({pool.spec.timeout:g} s)"
            )
        max_conc = (p.get("ScalingConfig") or {}).get("MaximumConcurrency")
        threads = min(int(max_conc), pool.concurrency) if max_conc else pool.concurrency
        if not p.get("Enabled", True):
            return

        def loop(stop: threading.Event) -> None:
            msgs: list[dict[str, Any]] = []
            deadline = time.monotonic() + window
            while len(msgs) < batch and not stop.is_set():
                left = deadline - time.monotonic()
                wait = 1 if not msgs else max(0, min(1, int(left)))
                resp = self.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=min(10, batch - len(msgs)),
                    WaitTimeSeconds=wait,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                msgs += resp.get("Messages", [])
                if msgs and time.monotonic() >= deadline:
                    break
            if not msgs:
                return
            records = [sqs_record(m, arn, self.region) for m in msgs]
            try:
                result = pool.invoke({"Records": records})
            except InvocationError as exc:
                log.info(
                    "%s: batch of %d failed (%s); messages return after the visibility timeout", fn, len(msgs), exc
                )
                return
            done = msgs
            if partial and isinstance(result, dict) and result.get("batchItemFailures"):
                failed = {f.get("itemIdentifier") for f in result["batchItemFailures"]}
                ids = {m["MessageId"] for m in msgs}
                if not failed <= ids:  # an invalid identifier: Lambda treats the whole batch as failed
                    log.warning("%s: batchItemFailures names unknown ids %s; whole batch fails", fn, failed - ids)
                    return
                done = [m for m in msgs if m["MessageId"] not in failed]
            for i in range(0, len(done), 10):
                self.sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(done[i : i + 10])
                    ],
                )

        self.pollers.append(_Poller(f"sqs:{fn}.{ev_name}", max(threads, 1), loop))

    def _plan_s3(self, fn: str, ev_name: str, p: dict[str, Any]) -> None:
        blid = self.tpl.logical_id_of(p["Bucket"], ("bucket",))
        qname = self._transport_queue(fn, ev_name, f"S3 {blid} -> {fn}")
        events = p["Events"] if isinstance(p["Events"], list) else [p["Events"]]
        conf: dict[str, Any] = {
            "Id": f"{fn}{ev_name}",
            "QueueArn": f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{qname}",
            "Events": events,
        }
        rules = ((p.get("Filter") or {}).get("S3Key") or {}).get("Rules")
        if rules:
            conf["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"].lower(), "Value": r["Value"]} for r in rules]}}
        self._s3_notifications.setdefault(self.tpl.name(blid), []).append(conf)

        def events_of(body: dict[str, Any]) -> list[Any]:
            if body.get("Event") == "s3:TestEvent":
                return []
            return [{"Records": [complete_s3_record(r)]} for r in body.get("Records", [])]

        self._plan_async(fn, ev_name, qname, events_of)

    def _plan_rule(
        self,
        fn: str,
        ev_name: str,
        rule: str,
        bus: str,
        pattern: Any,
        target: dict[str, Any],
        state: str = "ENABLED",
    ) -> None:
        qname = self._transport_queue(fn, ev_name, f"EventBridge rule {rule} -> {fn}")
        text = json.dumps(pattern) if not isinstance(pattern, str) else pattern
        self._rules.append((rule, bus, text, qname, state))

        def events_of(body: dict[str, Any]) -> list[Any]:
            return [target_input(eventbridge_event(body, self.region), target)]

        self._plan_async(fn, ev_name, qname, events_of)

    def _plan_async(self, fn: str, ev_name: str, qname: str, events_of: Callable[[dict[str, Any]], list[Any]]) -> None:
        """Poll a transport queue and invoke asynchronously: up to 3 attempts, then the event is dropped (logged)."""
        pool = self.targets[fn]
        url = f"{self.tpl.endpoint_url}/{ACCOUNT_ID}/{qname}"

        def loop(stop: threading.Event) -> None:
            resp = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1, AttributeNames=["All"]
            )
            attempts = getattr(pool.spec, "async_attempts", ASYNC_ATTEMPTS)
            for m in resp.get("Messages", []):
                attempt = int(m["Attributes"].get("ApproximateReceiveCount", "1"))
                event: Any = None
                try:
                    for event in events_of(json.loads(m["Body"])):
                        pool.invoke(event)
                except InvocationError as exc:
                    if attempt < attempts:
                        log.info("%s.%s: attempt %d failed (%s); retrying", fn, ev_name, attempt, exc)
                        self.sqs.change_message_visibility(
                            QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=self.retry_delay
                        )
                        continue
                    self.async_failed(fn, event, exc.payload, attempt)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

        self.pollers.append(_Poller(f"async:{fn}.{ev_name}", max(1, pool.concurrency), loop))

    # ------------------------------------------------------------------ wiring in moto (repeated after a reset)

    def setup(self) -> None:
        """Create transport queues, bucket notifications and EventBridge rules in moto."""
        for qname in self.transport:
            self.sqs.create_queue(QueueName=qname, Attributes={"VisibilityTimeout": str(self._visibility[qname])})
        for bucket, confs in self._s3_notifications.items():
            self.s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": confs}
            )
        for rule, bus, pattern, qname, state in self._rules:
            self.events.put_rule(Name=rule, EventPattern=pattern, EventBusName=bus, State=state)
            if state != "ENABLED":
                continue  # moto would still deliver to a disabled rule's targets
            self.events.put_targets(
                Rule=rule,
                EventBusName=bus,
                Targets=[{"Id": "localcloud", "Arn": f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{qname}"}],
            )

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Start the pollers and (if enabled) the schedule clock."""
        for p in self.pollers:
            p.start(self.stop_event)
        if self.clock and self.schedules:
            threading.Thread(target=self._clock, name="schedules", daemon=True).start()

    def stop(self) -> None:
        """Stop polling (each poller returns within about one long-poll second)."""
        self.stop_event.set()
        for p in self.pollers:
            p.join(5)

    def _clock(self) -> None:
        real0 = utcnow()

        def virtual_now() -> datetime:
            return real0 + (utcnow() - real0) * self.time_scale

        for s in self.schedules:
            s.next_at = s.expression.next_after(real0, start=real0)
        while not self.stop_event.is_set():
            now = virtual_now()
            for s in self.schedules:
                if s.enabled and s.next_at is not None and s.next_at <= now:
                    threading.Thread(target=self._fire_async, args=(s, s.next_at), daemon=True).start()
                    s.next_at = s.expression.next_after(now, start=real0)
            pending = [s.next_at for s in self.schedules if s.enabled and s.next_at is not None]
            wait = ((min(pending) - now).total_seconds() / self.time_scale) if pending else 60
            self.stop_event.wait(min(max(wait, 0.05), 60))

    def _fire_async(self, s: ScheduleSpec, when: datetime) -> None:
        event = s.event(self.region, when)
        target = self.targets[s.function]
        attempts = getattr(target.spec, "async_attempts", ASYNC_ATTEMPTS)
        for attempt in range(1, attempts + 1):
            try:
                target.invoke(event)
                return
            except InvocationError as exc:
                log.warning("schedule %s.%s attempt %d failed: %s", s.function, s.event_name, attempt, exc)
                if attempt == attempts:
                    self.async_failed(s.function, event, exc.payload, attempt)
                elif self.stop_event.wait(self.retry_delay):
                    return

    def async_failed(self, fn: str, event: Any, error: dict[str, Any], attempts: int) -> None:
        """An asynchronous invocation failed for good: send it to the function's DLQ / on-failure destination."""
        spec = self.targets[fn].spec
        targets = getattr(spec, "on_failure", [])
        if not targets:
            log.error("%s: event dropped after %d attempts: %s", fn, attempts, error.get("errorMessage"))
            return
        request_id = str(uuid.uuid4())
        for kind, arn in targets:
            service = arn.split(":")[2]
            if kind == "dlq" and service == "sqs":
                self.sqs.send_message(
                    QueueUrl=f"{self.tpl.endpoint_url}/{ACCOUNT_ID}/{arn.rsplit(':', 1)[1]}",
                    MessageBody=json.dumps(event),
                    MessageAttributes={
                        "RequestID": {"DataType": "String", "StringValue": request_id},
                        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                        "ErrorMessage": {"DataType": "String", "StringValue": str(error.get("errorMessage"))[:1024]},
                    },
                )
                continue
            record = {
                "version": "1.0",
                "timestamp": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "requestContext": {
                    "requestId": request_id,
                    "functionArn": f"{spec.arn}:$LATEST",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": attempts,
                },
                "requestPayload": event,
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": error,
            }
            if kind == "destination" and service == "sqs":
                self.sqs.send_message(
                    QueueUrl=f"{self.tpl.endpoint_url}/{ACCOUNT_ID}/{arn.rsplit(':', 1)[1]}",
                    MessageBody=json.dumps(record),
                )
            elif kind == "destination" and service == "events":
                self.events.put_events(
                    Entries=[
                        {
                            "Source": "lambda",
                            "DetailType": "Lambda Function Invocation Result - Failure",
                            "Detail": json.dumps(record),
                            "EventBusName": arn.rsplit("/", 1)[1],
                            "Resources": [arn],
                        }
                    ]
                )
            else:
                log.error("%s: on-failure target %s is not emulated; event dropped", fn, arn)
        log.warning("%s: event sent to %s after %d failed attempts", fn, [a for _, a in targets], attempts)

    def find_schedules(self, name: str) -> list[ScheduleSpec]:
        """Schedules matching NAME: a function logical id, an event name, ``Function.Event`` or a rule name."""
        found = [
            s for s in self.schedules if name in (s.function, s.event_name, f"{s.function}.{s.event_name}", s.rule_name)
        ]
        if not found:
            known = ", ".join(f"{s.function}.{s.event_name}" for s in self.schedules) or "none"
            raise KeyError(f"no schedule named {name!r} (known: {known})")
        return found

    def fire(self, name: str, when: datetime | None = None) -> list[Any]:
        """Fire matching schedules now (or as if at ``when``), synchronously; return each handler's result (raises
        InvocationError)."""
        return [self.targets[s.function].invoke(s.event(self.region, when)) for s in self.find_schedules(name)]

    def depths(self) -> dict[str, dict[str, int]]:
        """Visible / in-flight message counts of every template queue and transport queue."""
        out: dict[str, dict[str, int]] = {}
        names = {self.tpl.name(q): q for q in self.tpl.of_type("AWS::SQS::Queue")}
        for name in [*names, *self.transport]:
            try:
                a = self.sqs.get_queue_attributes(
                    QueueUrl=f"{self.tpl.endpoint_url}/{ACCOUNT_ID}/{name}",
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
            except ClientError:
                continue
            out[names.get(name, name)] = {
                "visible": int(a["ApproximateNumberOfMessages"]),
                "in_flight": int(a["ApproximateNumberOfMessagesNotVisible"]),
            }
        return out
