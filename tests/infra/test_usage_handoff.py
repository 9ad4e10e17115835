"""The usage hand-off's AWS resources (infra/constructs/usage_handoff.py): the encrypted, TLS-only queue and its
dead-letter queue, the drain Lambda on an SQS event source with partial batch responses, least-privilege IAM for the
gateway and the drain, the alarms; and the unit stack wiring it to the Lambda gateway (cdk-nag on that synth)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from common import constants as c
from infra.constructs.usage_handoff import (
    BATCH_SIZE,
    DRAIN_TIMEOUT_SECONDS,
    MAX_AGE_SECONDS,
    MAX_RECEIVE_COUNT,
    UsageHandoff,
)
from infra.nag import FEATURE_FLAGS
from tests.infra.conftest import Assembly

STREAM_ARN = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/modelmeter-bare-usage"


@pytest.fixture(scope="module")
def template() -> Template:
    app = App(context=FEATURE_FLAGS)
    stack = Stack(app, "bare-handoff")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    gateway = lambda_.Function(stack, "Gateway", runtime=lambda_.Runtime.PYTHON_3_11, handler="index.handler",
                               code=lambda_.Code.from_inline("def handler(e, c): return e"))
    handoff = UsageHandoff(stack, "Handoff", unit_name="bare", key=kms.Key(stack, "K"), stream_arn=STREAM_ARN,
                           stream_name="modelmeter-bare-usage", vpc=vpc,
                           subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
                           security_group=ec2.SecurityGroup(stack, "Sg", vpc=vpc))
    handoff.attach_gateway(gateway)
    return Template.from_stack(stack)


def _by_type(template: Template, cfn_type: str) -> dict[str, dict[str, Any]]:
    return template.find_resources(cfn_type)


def _statements(template: Template, role_fragment: str) -> list[dict[str, Any]]:
    """The statements of the policies attached to the roles whose logical id contains ``role_fragment``."""
    found = []
    for policy in _by_type(template, "AWS::IAM::Policy").values():
        roles = [r["Ref"] for r in policy["Properties"]["Roles"]]
        if any(role_fragment in r for r in roles):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_the_queues_are_encrypted_tls_only_and_redrive_to_the_dead_letter_queue(template: Template) -> None:
    queues = _by_type(template, "AWS::SQS::Queue")
    assert len(queues) == 2
    assert all("KmsMasterKeyId" in q["Properties"] and q["Properties"]["MessageRetentionPeriod"] == 14 * 86400
               for q in queues.values())
    (main_id,) = [k for k, q in queues.items() if "RedrivePolicy" in q["Properties"]]
    (dlq_id,) = set(queues) - {main_id}
    main = queues[main_id]["Properties"]
    assert main["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                                     "maxReceiveCount": MAX_RECEIVE_COUNT}
    assert main["VisibilityTimeout"] == 6 * DRAIN_TIMEOUT_SECONDS
    policies = _by_type(template, "AWS::SQS::QueuePolicy").values()
    denied = [p for p in policies if any(s["Effect"] == "Deny" and s["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}} for s in p["Properties"]["PolicyDocument"]["Statement"])]
    assert len(denied) == 2


def test_the_drain_reads_the_queue_with_partial_batch_responses(template: Template) -> None:
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "BatchSize": BATCH_SIZE, "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp("HandoffQueue"), "Arn"]}})
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "ingest.handoff_drain.handler", "Timeout": DRAIN_TIMEOUT_SECONDS,
        "Environment": {"Variables": Match.object_like({
            c.ENV_FIREHOSE_STREAM: "modelmeter-bare-usage", "POWERTOOLS_SERVICE_NAME": c.SERVICE_USAGE_DRAIN,
            c.ENV_HANDOFF_QUEUE_URL: {"Ref": Match.string_like_regexp("HandoffQueue")},
            c.ENV_HANDOFF_DLQ_URL: {"Ref": Match.string_like_regexp("HandoffDeadLetters")}})}})


def test_the_gateway_may_only_send_to_the_queue(template: Template) -> None:
    statements = _statements(template, "GatewayServiceRole")
    sqs = [s for s in statements if any(a.startswith("sqs:") for a in _actions(s))]
    assert [(_actions(s), s["Resource"]) for s in sqs] == [
        (["sqs:SendMessage"], {"Fn::GetAtt": [_queue_id(template), "Arn"]})]
    kms = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    assert sorted(a for s in kms for a in _actions(s)) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert not [s for s in statements if any(a.startswith("firehose:") for a in _actions(s))]
    template.has_resource_properties("AWS::Lambda::Function", {"Handler": "index.handler", "Environment": {
        "Variables": {c.ENV_HANDOFF_QUEUE_URL: {"Ref": _queue_id(template)}}}})


def _queue_id(template: Template) -> str:
    (found,) = [k for k, q in _by_type(template, "AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"]]
    return found


def test_the_drain_puts_into_the_stream_receives_and_requeues_and_nothing_more(template: Template) -> None:
    statements = _statements(template, "HandoffDrainServiceRole")
    actions = sorted({a for s in statements for a in _actions(s)})
    assert actions == sorted(["firehose:PutRecordBatch", "kms:Decrypt", "kms:GenerateDataKey",
                              "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                              "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:SendMessage"])
    (put,) = [s for s in statements if "firehose:PutRecordBatch" in _actions(s)]
    assert put["Resource"] == STREAM_ARN


def test_alarms_on_dead_letters_the_oldest_message_and_calls_not_recorded(template: Template) -> None:
    alarms = {a["Properties"]["MetricName"]: a["Properties"]
              for a in _by_type(template, "AWS::CloudWatch::Alarm").values()}
    assert set(alarms) == {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage",
                           c.METRIC_USAGE_NOT_RECORDED}
    assert alarms["ApproximateNumberOfMessagesVisible"]["Threshold"] == 1
    assert alarms["ApproximateAgeOfOldestMessage"]["Threshold"] == MAX_AGE_SECONDS
    not_recorded = alarms[c.METRIC_USAGE_NOT_RECORDED]
    assert not_recorded["Namespace"] == c.METRICS_NAMESPACE and not_recorded["Threshold"] == 1
    assert {d["Name"]: d["Value"] for d in not_recorded["Dimensions"]} == {
        "service": c.SERVICE_GATEWAY, "business_unit": "bare"}


def test_the_unit_stack_wires_the_handoff_to_the_lambda_gateway(deployment: Assembly) -> None:
    # The deployment is synthesized with cdk-nag (AwsSolutionsChecks): an unacknowledged finding fails the fixture.
    template = deployment.template("modelmeter-research")
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "ingest.lambda_handler.handler",
        "Environment": {"Variables": Match.object_like({c.ENV_HANDOFF_QUEUE_URL: Match.any_value()})}})
    template.has_resource_properties("AWS::Lambda::Function", {"Handler": "ingest.handoff_drain.handler"})
