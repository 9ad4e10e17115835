"""The scheduled transform: EventBridge → Lambda running ``transforms.lambda_handler.handler`` on the S3 lake.

Retries: EventBridge retries delivery (``retry_attempts``) and Lambda retries a failed async run twice; what still
fails lands in an encrypted SQS dead-letter queue, and an alarm fires on either a function error or a message in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from common import constants as c
from infra.constructs.functions import python_function, role_of, scheduled
from infra.nag import acknowledge, acknowledge_kms_grant, nag_ref

# The handler's Powertools service name: the `service` dimension the quarantine-rate alarm selects on.
SERVICE = c.SERVICE_TRANSFORM
# Prefixes the transform rewrites (a day's partitions are replaced atomically, so it also deletes).
WRITE_PREFIXES = (c.CURATED_USAGE_COST, c.CURATED_TEAM_MODEL_DAILY, c.QUARANTINE_EVENTS, c.RUN_MANIFESTS,
                  c.REFERENCE_TEAMS)


class TransformJob(Construct):
    """EventBridge schedule → transform Lambda, with retries, a dead-letter queue and a failure alarm.

    Attributes:
        function: the transform Lambda.
        rule: the schedule.
        dead_letter_queue: failed runs (EventBridge deliveries and Lambda async failures).
        failure_alarm: function errors or dead letters.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, schedule: str, engine: str,
                 memory_mb: int, timeout_minutes: int, bucket: s3.IBucket, key: kms.IKey, database_name: str,
                 reporting_timezone: str, vpc: ec2.IVpc, subnets: ec2.SubnetSelection,
                 security_group: ec2.ISecurityGroup, package: str = "zip",
                 tenant_table: dynamodb.ITable | None = None, athena_workgroup: str | None = None,
                 layers: Sequence[lambda_.ILayerVersion] = (),
                 environment: Mapping[str, str] | None = None) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True,
            retention_period=Duration.days(14))
        # EventBridge sends to the encrypted queue with its own principal: the key policy must let it.
        key.grant(iam.ServicePrincipal("events.amazonaws.com"), "kms:GenerateDataKey", "kms:Decrypt")
        env = {
            c.ENV_LAKE: f"s3://{bucket.bucket_name}",
            c.ENV_TRANSFORM_ENGINE: engine,
            c.ENV_REPORTING_TZ: reporting_timezone,
            c.ENV_GLUE_DATABASE: database_name,
            c.ENV_BUSINESS_UNIT: unit_name,
            **({c.ENV_ATHENA_WORKGROUP: athena_workgroup} if athena_workgroup else {}),
            **({c.ENV_TENANT_TABLE: tenant_table.table_name} if tenant_table else {}),
            **(environment or {}),
        }
        self.function = python_function(
            self, "Function", handler="transforms.lambda_handler.handler", service=SERVICE,
            description=f"modelmeter transform of unit {unit_name} ({engine})", memory_mb=memory_mb,
            timeout=Duration.minutes(timeout_minutes), environment=env, vpc=vpc, subnets=subnets,
            security_group=security_group, layers=layers, retry_attempts=2, dead_letter_queue=self.dead_letter_queue,
            package=package)
        self._grant_lake(bucket, key)
        if tenant_table is not None:
            tenant_table.grant_read_data(self.function)  # refreshes reference/teams from the registry each run
        # engine glue: the Glue job (infra/constructs/glue_transform.py) transforms; this function keeps the
        # schedule for the reference/teams refresh and the spend correction (transforms/lambda_handler.py)
        what = "yesterday and today (UTC)" if engine == "duckdb" else "reference refresh and spend correction"
        self.rule, self.failure_alarm = scheduled(
            self, function=self.function, dead_letter_queue=self.dead_letter_queue, schedule=schedule,
            description=f"modelmeter transform of unit {unit_name}: {what}",
            alarm_description=f"modelmeter {unit_name}: the scheduled transform failed")

    def _grant_lake(self, bucket: s3.IBucket, key: kms.IKey) -> None:
        bucket.grant_read(self.function)
        acknowledge(role_of(self.function), f"AwsSolutions-IAM5[Resource::{nag_ref(bucket)}/*]",
                    "The transform reads the lake (raw events, prices, curated partitions) by partition.")
        acknowledge(role_of(self.function), "AwsSolutions-IAM5[Action::s3:GetObject*]", _S3_GRANT_REASON)
        acknowledge(role_of(self.function), "AwsSolutions-IAM5[Action::s3:GetBucket*]", _S3_GRANT_REASON)
        acknowledge(role_of(self.function), "AwsSolutions-IAM5[Action::s3:List*]", _S3_GRANT_REASON)
        for prefix in WRITE_PREFIXES:
            bucket.grant_put(self.function, f"{prefix}/*")
            bucket.grant_delete(self.function, f"{prefix}/*")
            acknowledge(role_of(self.function), f"AwsSolutions-IAM5[Resource::{nag_ref(bucket)}/{prefix}/*]",
                        "Day partitions are replaced: write and delete only under this prefix.")
        acknowledge(role_of(self.function), "AwsSolutions-IAM5[Action::s3:DeleteObject*]", _S3_GRANT_REASON)
        acknowledge(role_of(self.function), "AwsSolutions-IAM5[Action::s3:Abort*]", _S3_GRANT_REASON)
        key.grant_encrypt_decrypt(self.function)
        acknowledge_kms_grant(role_of(self.function))


_S3_GRANT_REASON = "CDK's S3 grant actions (GetObject*, List*, DeleteObject*…), scoped to the lake bucket's prefixes."
