"""The gateway Lambda as its own seed async worker (ingest/async_worker.py): it may invoke itself, Lambda never
retries a job, a failed or expired job lands in a queue that alarms, and the timeout is the config's."""

from __future__ import annotations

from aws_cdk.assertions import Match

from common import constants as c
from infra.config import FullUnit
from tests.infra.conftest import Assembly


def _gateway_function_id(bare: Assembly) -> str:
    (logical_id,) = [k for k, r in bare.templates["bare-gateway"]["Resources"].items()
                     if r["Type"] == "AWS::Lambda::Function"
                     and r["Properties"].get("Handler") == "ingest.lambda_handler.handler"]
    return logical_id


def test_the_gateway_may_invoke_itself_and_nothing_else(bare: Assembly) -> None:
    function = _gateway_function_id(bare)
    statements = [s for p in bare.resources("bare-gateway", "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]
                  if "lambda:InvokeFunction" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    (invoke,) = statements
    assert invoke["Resource"] == {"Fn::GetAtt": [function, "Arn"]}


def test_worker_jobs_are_never_retried_expire_with_the_longpoll_item_and_fail_into_a_queue(bare: Assembly) -> None:
    template = bare.template("bare-gateway")
    template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {
        "FunctionName": {"Ref": _gateway_function_id(bare)}, "Qualifier": "$LATEST",
        "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 900,
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [Match.any_value(), "Arn"]}}},
    })
    template.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "ApproximateNumberOfMessagesVisible", "Namespace": "AWS/SQS", "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold"})


def test_the_gateway_timeout_is_long_enough_for_a_generation(bare: Assembly, deployment: Assembly) -> None:
    bare.template("bare-gateway").has_resource_properties("AWS::Lambda::Function", {
        "Handler": "ingest.lambda_handler.handler", "Timeout": 300})
    assert deployment.config is not None
    for unit in deployment.config.units:
        if isinstance(unit, FullUnit) and unit.gateway.runtime == "lambda":
            stack = f"modelmeter-{unit.name}"
            deployment.template(stack).has_resource_properties("AWS::Lambda::Function", {  # zip or image
                "Environment": {"Variables": Match.object_like({"POWERTOOLS_SERVICE_NAME": c.SERVICE_GATEWAY})},
                "Timeout": unit.api.lambda_timeout_seconds})
            # and the worker's alarm notifies the unit's alarm topic like every other alarm
            deployment.template(stack).has_resource_properties("AWS::CloudWatch::Alarm", {
                "MetricName": "ApproximateNumberOfMessagesVisible", "AlarmActions": [Match.any_value()]})
