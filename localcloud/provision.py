"""Create the template's stateful resources (queues, buckets, tables, buses, log groups, topics, Firehose streams) in
moto: one function per resource type, run in the order of :data:`PROVISIONERS`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localcloud.template import ACCOUNT_ID, Template, TemplateError

log = logging.getLogger("localcloud.provision")

_QUEUE_ATTRS = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
)
_FIREHOSE_S3_KEYS = {"RoleARN", "BucketARN", "Prefix", "ErrorOutputPrefix", "BufferingHints", "CompressionFormat"}
_IGNORED = {
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::Lambda::Permission",
    "AWS::Serverless::Function",
    "AWS::Serverless::LayerVersion",
    "AWS::Serverless::HttpApi",
    "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion",
    "AWS::Events::Rule",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Lambda::Alias",
    "AWS::Lambda::Version",
    "AWS::Serverless::Application",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::CodeBuild::Project",  # run by localcloud.builds
    "AWS::Logs::SubscriptionFilter",  # delivered by localcloud.logship
}


def _tags(props: dict[str, Any]) -> list[dict[str, str]]:
    tags = props.get("Tags") or []
    if isinstance(tags, dict):  # SAM-style map
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in tags]


# ------------------------------------------------------------------------------------- one function per resource type
# Each creates one resource of its type in moto with that service's client and returns notes on what of it is not
# emulated (empty: all of it).


def create_queue(tpl: Template, lid: str, sqs: Any) -> list[str]:
    props = tpl.props(lid)
    attrs = {
        k: str(props[k]).lower() if isinstance(props[k], bool) else str(props[k]) for k in _QUEUE_ATTRS if k in props
    }
    if "RedrivePolicy" in props:
        rp = props["RedrivePolicy"]
        attrs["RedrivePolicy"] = rp if isinstance(rp, str) else json.dumps(rp)
    if "RedriveAllowPolicy" in props:
        rap = props["RedriveAllowPolicy"]
        attrs["RedriveAllowPolicy"] = rap if isinstance(rap, str) else json.dumps(rap)
    url = sqs.create_queue(QueueName=tpl.name(lid), Attributes=attrs)["QueueUrl"]
    if url != tpl.queue_url(lid):
        raise TemplateError(f"moto returned queue URL {url}, expected {tpl.queue_url(lid)}")
    return []


def _dead_letter_queues_first(tpl: Template, lid: str) -> bool:
    """Sort key: a RedrivePolicy never points at a queue that does not exist yet."""
    return "RedrivePolicy" in (tpl.resources[lid].get("Properties") or {})


def create_bucket(tpl: Template, lid: str, s3: Any) -> list[str]:
    props, name = tpl.props(lid), tpl.name(lid)
    kwargs: dict[str, Any] = {"Bucket": name}
    if tpl.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": tpl.region}
    s3.create_bucket(**kwargs)
    if (props.get("VersioningConfiguration") or {}).get("Status"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
    if props.get("BucketEncryption"):
        rules = [
            {
                ("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                for k, v in rule.items()
            }
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
    return [f"{lid}.NotificationConfiguration"] if props.get("NotificationConfiguration") else []


def create_table(tpl: Template, lid: str, ddb: Any) -> list[str]:
    ddb.create_table(**_table_args(tpl, lid))
    ttl = tpl.props(lid).get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=tpl.name(lid),
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    return []


def create_event_bus(tpl: Template, lid: str, events: Any) -> list[str]:
    events.create_event_bus(Name=tpl.name(lid))
    return []


def create_log_group(tpl: Template, lid: str, logs: Any) -> list[str]:
    logs.create_log_group(logGroupName=tpl.name(lid))
    days = tpl.props(lid).get("RetentionInDays")
    if days:
        logs.put_retention_policy(logGroupName=tpl.name(lid), retentionInDays=int(days))
    return []


def create_topic(tpl: Template, lid: str, sns: Any) -> list[str]:
    sns.create_topic(Name=tpl.name(lid))
    return []


def create_delivery_stream(tpl: Template, lid: str, firehose: Any) -> list[str]:
    props = tpl.props(lid)
    kwargs = {
        "DeliveryStreamName": tpl.name(lid),
        "DeliveryStreamType": props.get("DeliveryStreamType", "DirectPut"),
    }
    for key in ("ExtendedS3DestinationConfiguration", "S3DestinationConfiguration"):
        if key in props:
            conf = {k: v for k, v in props[key].items() if k in _FIREHOSE_S3_KEYS}
            if "BufferingHints" in conf:  # CloudFormation takes "60"; the API wants numbers
                conf["BufferingHints"] = {k: int(v) for k, v in conf["BufferingHints"].items()}
            conf.setdefault("RoleARN", f"arn:aws:iam::{ACCOUNT_ID}:role/firehose")
            kwargs[key] = conf
    if len(kwargs) == 2:
        return [f"{lid} (Firehose destination other than S3)"]
    firehose.create_delivery_stream(**kwargs)
    return []


@dataclass(frozen=True)
class Provisioner:
    """How the resources of some types are created: `create(tpl, lid, client)` with the service's client, in the
    template's order (or sorted by `order`)."""

    types: tuple[str, ...]
    service: str
    create: Callable[[Template, str, Any], list[str]]
    order: Callable[[Template, str], Any] | None = None


# In this order: queues (dead-letter queues first), buckets, tables, buses, log groups, topics, delivery streams.
PROVISIONERS: tuple[Provisioner, ...] = (
    Provisioner(("AWS::SQS::Queue",), "sqs", create_queue, _dead_letter_queues_first),
    Provisioner(("AWS::S3::Bucket",), "s3", create_bucket),
    Provisioner(("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"), "dynamodb", create_table),
    Provisioner(("AWS::Events::EventBus",), "events", create_event_bus),
    Provisioner(("AWS::Logs::LogGroup",), "logs", create_log_group),
    Provisioner(("AWS::SNS::Topic",), "sns", create_topic),
    Provisioner(("AWS::KinesisFirehose::DeliveryStream",), "firehose", create_delivery_stream),
)


def provision(tpl: Template, session: Any, endpoint_url: str) -> list[str]:
    """Create every supported resource of ``tpl`` in moto; return the logical ids not emulated (informational)."""
    not_emulated: list[str] = []
    for prov in PROVISIONERS:
        lids = list(tpl.of_type(*prov.types))
        if prov.order is not None:
            lids = sorted(lids, key=lambda lid, order=prov.order: order(tpl, lid))
        if not lids:
            continue
        client = session.client(prov.service, endpoint_url=endpoint_url)
        for lid in lids:
            not_emulated += prov.create(tpl, lid, client)
    handled = {t for prov in PROVISIONERS for t in prov.types}
    for lid, res in tpl.resources.items():
        if res.get("Type") not in handled | _IGNORED and tpl.active(lid):
            not_emulated.append(f"{lid} ({res.get('Type')})")
    return not_emulated


def _table_args(tpl: Template, lid: str) -> dict[str, Any]:
    props = tpl.props(lid)
    name = tpl.name(lid)
    if tpl.resources[lid]["Type"] == "AWS::Serverless::SimpleTable":
        pk = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
        typ = {"String": "S", "Number": "N", "Binary": "B"}[pk.get("Type", "String")]
        args: dict[str, Any] = {
            "TableName": name,
            "KeySchema": [{"AttributeName": pk["Name"], "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": pk["Name"], "AttributeType": typ}],
        }
        if props.get("ProvisionedThroughput"):
            args["ProvisionedThroughput"] = props["ProvisionedThroughput"]
        else:
            args["BillingMode"] = "PAY_PER_REQUEST"
        return args
    args = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if args["BillingMode"] == "PROVISIONED":
        args["ProvisionedThroughput"] = props.get("ProvisionedThroughput") or {
            "ReadCapacityUnits": 5,
            "WriteCapacityUnits": 5,
        }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            idx = []
            for gsi in props[key]:
                gsi = {
                    k: v
                    for k, v in gsi.items()
                    if k in ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
                }
                if key == "GlobalSecondaryIndexes" and args["BillingMode"] == "PROVISIONED":
                    gsi.setdefault("ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
                idx.append(gsi)
            args[key] = idx
    if props.get("StreamSpecification"):
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if props.get("Tags"):
        args["Tags"] = _tags(props)
    return args
