"""The scheduled transform: EventBridge → Lambda running ``transforms.lambda_handler.handler`` on the S3 lake.

Retries: EventBridge retries delivery (``retry_attempts``) and Lambda retries a failed async run twice; what still
fails lands in an encrypted SQS dead-letter queue, and an alarm fires on either a function error or a message in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Annotations, Duration
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
from infra.nag import acknowledge, acknowledge_arn_wildcard, acknowledge_kms_grant, nag_ref, scoped_arn

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
                 results_bucket: s3.IBucket | None = None, layers: Sequence[lambda_.ILayerVersion] = (),
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
        if engine == "athena":
            if not athena_workgroup or results_bucket is None:
                raise ValueError("the athena engine needs the Athena workgroup and its results bucket")
            self._grant_athena(athena_workgroup, results_bucket, database_name)
            # Said at synth, not first found by the failure alarm: the grants are ready, the engine is not.
            Annotations.of(self).add_warning_v2(
                "modelmeter:transform-engine-athena",
                f"unit {unit_name}: transform.engine 'athena' is accepted, but this build's transform handler runs "
                "DuckDB only and refuses it, so every scheduled run will fail and alarm; set engine: duckdb")
        self.rule, self.failure_alarm = scheduled(
            self, function=self.function, dead_letter_queue=self.dead_letter_queue, schedule=schedule,
            description=f"modelmeter transform of unit {unit_name}: yesterday and today (UTC)",
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

    def _grant_athena(self, workgroup: str, results_bucket: s3.IBucket, database_name: str) -> None:
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
                     "athena:StopQueryExecution", "athena:GetWorkGroup"],
            resources=[scoped_arn(self, "arn:{partition}:athena:{region}:{account}:workgroup/") + workgroup]))
        table_arn = "arn:{partition}:glue:{region}:{account}:table/" + database_name + "/*"
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartitions", "glue:CreateTable",
                     "glue:UpdateTable", "glue:DeleteTable"],
            resources=[scoped_arn(self, "arn:{partition}:glue:{region}:{account}:catalog"),
                       scoped_arn(self, "arn:{partition}:glue:{region}:{account}:database/") + database_name,
                       scoped_arn(self, table_arn)]))
        acknowledge_arn_wildcard(role_of(self.function), table_arn,
                                 "Athena statements create and replace the unit's tables and views in its database.")
        results_bucket.grant_read_write(self.function)
        acknowledge(role_of(self.function), f"AwsSolutions-IAM5[Resource::{nag_ref(results_bucket)}/*]",
                    "Athena writes result objects it names itself into the workgroup's results bucket.")


_S3_GRANT_REASON = "CDK's S3 grant actions (GetObject*, List*, DeleteObject*…), scoped to the lake bucket's prefixes."
