"""The AWS bill into the lake: the payer account's CUR 2.0 Data Export delivers under ``billing/exports/``, and a
scheduled Lambda (``finance.lambda_handler.handler``) imports it into snapshots and reconciles it.

The export itself is created in the payer account (docs/deploy.md); this construct lets it deliver:

- a **bucket policy** on the lake bucket, AWS's documented Data Exports policy
  (https://docs.aws.amazon.com/cur/latest/userguide/dataexports-s3-bucket.html: both service principals,
  ``s3:PutObject`` and ``s3:GetBucketPolicy``, ``aws:SourceAccount`` and ``aws:SourceArn`` of the payer account),
  narrowed to the export's prefix for ``PutObject``;
- a **key policy** statement: the lake bucket encrypts with the unit's KMS key by default (SSE-KMS), and a writer of
  SSE-KMS objects needs ``kms:GenerateDataKey`` (and ``kms:Decrypt`` for a multipart upload) on the key. The Data
  Exports page does not mention SSE-KMS buckets; the grant follows the pattern AWS documents for the vended-log
  delivery principal (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/AWS-logs-infrastructure-S3.html), with
  the bucket policy's source conditions. Untested without a payer account: docs/deploy.md says what to check after
  the first delivery.

The import runs like the transform (``transform_job.py``): EventBridge retries delivery, Lambda retries a failed async
run twice, what still fails lands in an encrypted dead-letter queue, and an alarm fires on an error or a dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from aws_cdk import Duration
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

SERVICE = c.SERVICE_BILLING
#: The service principals AWS's Data Exports bucket policy names (Data Exports, and legacy CUR's billing reports).
DATA_EXPORTS_PRINCIPALS = ("bcm-data-exports.amazonaws.com", "billingreports.amazonaws.com")
#: Data Exports is a us-east-1 service: its export (and legacy CUR report-definition) ARNs name that region.
DATA_EXPORTS_REGION = "us-east-1"
READ_PREFIXES = (c.BILLING_EXPORTS, c.CURATED_USAGE_COST, "pricing")
#: Prefixes the import writes: snapshots (never deleted: they are the bill as imported) and reconciliations.
WRITE_PREFIXES = (c.BILLING_CUR, c.CURATED_RECONCILIATION)


def source_conditions(payer_account: str) -> dict[str, dict[str, object]]:
    """The documented conditions: only the payer account's exports (and CUR report definitions) may deliver."""
    return {"StringLike": {
        "aws:SourceAccount": payer_account,
        "aws:SourceArn": [f"arn:aws:cur:{DATA_EXPORTS_REGION}:{payer_account}:definition/*",
                          f"arn:aws:bcm-data-exports:{DATA_EXPORTS_REGION}:{payer_account}:export/*"]}}


def directory_markers(prefixes: Sequence[str]) -> list[str]:
    """Keys of the empty "directory" objects pyarrow puts for every parent folder it creates (``billing/`` for a
    write under ``billing/cur/``) that a grant on ``<prefix>/*`` does not cover."""
    markers = {"/".join(p.split("/")[:i]) + "/" for p in prefixes for i in range(1, p.count("/") + 1)}
    return sorted(markers)


class BillingImport(Construct):
    """The export's delivery into the lake, and the scheduled import with retries, a dead-letter queue and an alarm.

    Attributes:
        function: the import Lambda.
        rule: the schedule.
        dead_letter_queue: failed runs (EventBridge deliveries and Lambda async failures).
        failure_alarm: function errors or dead letters.
        export_prefix: the S3 prefix the payer's export delivers to (``billing/exports``).
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, payer_account: str,
                 export_name: str, schedule: str, bucket: s3.IBucket, key: kms.IKey, vpc: ec2.IVpc,
                 subnets: ec2.SubnetSelection, security_group: ec2.ISecurityGroup, include_tax: bool = False,
                 memory_mb: int = 2048, timeout_minutes: int = 15, sagemaker_endpoints: Mapping[str, str] | None = None,
                 package: str = "zip", layers: Sequence[lambda_.ILayerVersion] = ()) -> None:
        super().__init__(scope, construct_id)
        self.export_prefix = c.BILLING_EXPORTS
        self._allow_delivery(bucket, key, payer_account)
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True,
            retention_period=Duration.days(14))
        # EventBridge sends to the encrypted queue with its own principal: the key policy must let it.
        key.grant(iam.ServicePrincipal("events.amazonaws.com"), "kms:GenerateDataKey", "kms:Decrypt")
        env = {
            c.ENV_LAKE: f"s3://{bucket.bucket_name}",
            c.ENV_BILLING_EXPORT_NAME: export_name,
            c.ENV_BILLING_INCLUDE_TAX: "true" if include_tax else "false",
            c.ENV_BUSINESS_UNIT: unit_name,
            # finance.reconcile.scope_from_environment: the endpoints whose instance hours are in scope
            c.ENV_SAGEMAKER_ENDPOINTS: json.dumps({m: {"endpoint_name": n} for m, n in
                                                   sorted((sagemaker_endpoints or {}).items())}, separators=(",", ":")),
        }
        self.function = python_function(
            self, "Function", handler="finance.lambda_handler.handler", service=SERVICE,
            description=f"modelmeter billing import of unit {unit_name} (CUR 2.0 export {export_name})",
            memory_mb=memory_mb, timeout=Duration.minutes(timeout_minutes), environment=env, vpc=vpc,
            subnets=subnets, security_group=security_group, layers=layers, retry_attempts=2,
            dead_letter_queue=self.dead_letter_queue, package=package)
        self._grant_lake(bucket, key)
        self.rule, self.failure_alarm = scheduled(
            self, function=self.function, dead_letter_queue=self.dead_letter_queue, schedule=schedule,
            description=f"modelmeter billing import of unit {unit_name}: this and last billing period",
            alarm_description=f"modelmeter {unit_name}: the scheduled billing import failed")

    def _allow_delivery(self, bucket: s3.IBucket, key: kms.IKey, payer_account: str) -> None:
        principals = [iam.ServicePrincipal(p) for p in DATA_EXPORTS_PRINCIPALS]
        conditions = source_conditions(payer_account)
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DataExportsDeliverUnderTheExportPrefix", principals=principals, actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(f"{self.export_prefix}/*")], conditions=conditions))
        # Data Exports reads the bucket policy to check, before each delivery, that it still may deliver.
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DataExportsCheckTheBucketPolicy", principals=principals, actions=["s3:GetBucketPolicy"],
            resources=[bucket.bucket_arn], conditions=conditions))
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="DataExportsEncryptTheirDeliveries", principals=principals,
            actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=["*"], conditions=conditions))

    def _grant_lake(self, bucket: s3.IBucket, key: kms.IKey) -> None:
        role = role_of(self.function)
        for prefix in (*READ_PREFIXES, *WRITE_PREFIXES):
            bucket.grant_read(self.function, f"{prefix}/*")
            acknowledge(role, f"AwsSolutions-IAM5[Resource::{nag_ref(bucket)}/{prefix}/*]",
                        "The billing import reads this prefix by period: exports, snapshots, usage, prices.")
        for prefix in WRITE_PREFIXES:
            bucket.grant_put(self.function, f"{prefix}/*")
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[bucket.arn_for_objects(m) for m in directory_markers(WRITE_PREFIXES)]))
        for action in ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:Abort*"):
            acknowledge(role, f"AwsSolutions-IAM5[Action::{action}]", _S3_GRANT_REASON)
        key.grant_encrypt_decrypt(self.function)
        acknowledge_kms_grant(role)


_S3_GRANT_REASON = ("CDK's S3 grant actions (GetObject*, List*, Abort*…), scoped to the billing import's prefixes "
                    "of the lake bucket.")
