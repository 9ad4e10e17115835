"""The one way modelmeter builds a Python Lambda: runtime, code asset, Powertools settings, logs, VPC placement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from common.constants import METRICS_NAMESPACE
from infra.nag import acknowledge
from infra.runtime_code import lambda_image, runtime_code

# The project targets Python 3.11 (pyproject.toml); the Lambda runs the same interpreter as the tests.
RUNTIME = lambda_.Runtime.PYTHON_3_11


def python_function(scope: Construct, construct_id: str, *, handler: str, service: str, description: str,
                    memory_mb: int, timeout: Duration, environment: Mapping[str, str], vpc: ec2.IVpc,
                    subnets: ec2.SubnetSelection, security_group: ec2.ISecurityGroup,
                    layers: Sequence[lambda_.ILayerVersion] = (), retry_attempts: int | None = None,
                    dead_letter_queue: sqs.IQueue | None = None, package: str = "zip") -> lambda_.Function:
    """A Lambda running ``handler`` from the runtime asset (``package`` ``zip``) or the container image
    (``image``), in the VPC's private subnets.

    ``service`` becomes ``POWERTOOLS_SERVICE_NAME`` (the ``service`` dimension of its metrics). An image carries its
    own runtime, handler (its ``CMD``) and dependencies, so ``layers`` apply to the zip form only.
    """
    log_group = logs.LogGroup(scope, f"{construct_id}Logs", retention=logs.RetentionDays.THREE_MONTHS,
                              removal_policy=RemovalPolicy.DESTROY)
    common: dict[str, Any] = dict(
        architecture=lambda_.Architecture.ARM_64, description=description, memory_size=memory_mb, timeout=timeout,
        environment={
            "POWERTOOLS_SERVICE_NAME": service,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            **environment,
        },
        log_group=log_group, vpc=vpc, vpc_subnets=subnets, security_groups=[security_group],
        retry_attempts=retry_attempts, dead_letter_queue=dead_letter_queue,
    )
    if package == "image":
        function: lambda_.Function = lambda_.DockerImageFunction(scope, construct_id, code=lambda_image(handler),
                                                                 **common)
    else:
        function = lambda_.Function(scope, construct_id, runtime=RUNTIME, handler=handler, code=runtime_code(),
                                    layers=list(layers), **common)
        acknowledge(function, "AwsSolutions-L1",
                    "Pinned to Python 3.11, the version modelmeter is built and tested with (pyproject.toml).")
    for policy in ("AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole"):
        acknowledge(role_of(function), f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                                   f"{policy}]",
                    "AWS-managed Lambda execution policy: logs and VPC network interfaces (ENIs cannot be named).")
    return function


def role_of(function: lambda_.IFunction) -> iam.IRole:
    """The execution role CDK made for ``function`` (never None for functions built here)."""
    role = function.role
    assert role is not None, f"{function.node.path} has no execution role"
    return role


def scheduled(scope: Construct, *, function: lambda_.Function, dead_letter_queue: sqs.IQueue, schedule: str,
              description: str, alarm_description: str) -> tuple[events.Rule, cloudwatch.Alarm]:
    """Run ``function`` on ``schedule`` (retried, then dead-lettered) and alarm on a failed run: the ``Schedule``
    rule and the ``Failures`` alarm of a scheduled job (the transform, the billing import), under ``scope``."""
    rule = events.Rule(
        scope, "Schedule", schedule=events.Schedule.expression(schedule), description=description,
        targets=[targets.LambdaFunction(
            function, retry_attempts=4, max_event_age=Duration.hours(2), dead_letter_queue=dead_letter_queue,
            event=events.RuleTargetInput.from_object({"source": "schedule"}))])
    alarm = cloudwatch.Alarm(
        scope, "Failures", alarm_description=alarm_description,
        # FILL: a run that never started (no Errors datapoint) but left a dead letter must still alarm.
        metric=cloudwatch.MathExpression(
            expression="FILL(errors, 0) + FILL(dead, 0)", label="failed runs", period=Duration.hours(1),
            using_metrics={"errors": function.metric_errors(statistic="Sum"),
                           "dead": dead_letter_queue.metric_approximate_number_of_messages_visible(
                               statistic="Maximum")}),
        threshold=1, evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
    return rule, alarm
