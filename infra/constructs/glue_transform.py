"""``transform.engine: glue``: the transform as an AWS Glue 5.0 (Spark 3.5.4) job running ``transforms/glue_job.py``.

- the script and the project's runtime packages (one zip, ``--extra-py-files``) are S3 assets; the third-party
  packages the engine imports beyond Glue's own are pinned from ``requirements.lock`` (``--additional-python-modules``);
- a security configuration encrypts what the job writes to S3, its CloudWatch logs and its (disabled) bookmarks
  with the lake's KMS key (cdk-nag AwsSolutions-GL1, GL3); continuous logging, metrics, no job bookmarks (each run
  chooses its days itself and replaces their partitions);
- a least-privilege role: read the lake, write and delete only under the prefixes the transform replaces, the lake
  key, the job's own log groups and metrics;
- EventBridge Scheduler starts the job on the unit's transform schedule (the same expression as the Lambda's);
- every run that ends FAILED, TIMEOUT or ERROR (Glue Job State Change) is put in an encrypted queue, and an alarm
  fires on it (the unit's Observability sends it to the alarm topic).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from common import constants as c
from infra.nag import acknowledge, acknowledge_arn_wildcard, nag_ref, scoped_arn
from infra.runtime_code import EXCLUDE, REPO_ROOT

#: Glue 5.0 runs Spark 3.5.4 on Python 3.11, the engine's (transforms/spark_session.py SPARK_VERSION).
GLUE_VERSION = "5.0"
SCRIPT = REPO_ROOT / "transforms" / "glue_job.py"
#: Packages the engine imports that Glue 5.0 does not ship (or ships older): installed by Glue with pip at start,
#: pinned to requirements.lock's versions.
ADDITIONAL_MODULES = ("duckdb", "pyarrow", "sqlglot", "pydantic", "PyYAML", "orjson")
#: Prefixes the job rewrites (a day's partitions are replaced, so it also deletes); runs/transform holds its
#: manifests, locks and scratch.
WRITE_PREFIXES = (c.CURATED_USAGE_COST, c.CURATED_TEAM_MODEL_DAILY, c.QUARANTINE_EVENTS, c.RUN_MANIFESTS)
#: Run states that are a failure (https://docs.aws.amazon.com/glue/latest/dg/automating-awsglue-with-cloudwatch-events.html).
FAILED_STATES = ("FAILED", "TIMEOUT", "ERROR")


def pinned(names: tuple[str, ...], lock: Path = REPO_ROOT / "requirements.lock") -> str:
    """``name==version,…`` of ``names`` as ``lock`` pins them (case and ``-``/``_`` insensitive)."""
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = {norm(n): (n, v) for n, _, v in (line.strip().partition("==") for line in lock.read_text().splitlines())
            if v and not n.startswith("#")}
    missing = [n for n in names if norm(n) not in pins]
    if missing:
        raise ValueError(f"{lock.name} pins no {', '.join(missing)}: the Glue job installs them")
    return ",".join(f"{pins[norm(n)][0]}=={pins[norm(n)][1]}" for n in names)


class GlueTransform(Construct):
    """The transform's Glue job, its schedule and its failure alarm.

    Attributes:
        job: the ``AWS::Glue::Job``; job_name its name.
        role: the job's role.
        schedule: the EventBridge Scheduler schedule that starts it.
        failed_runs: the queue of failed runs' state-change events; failure_alarm alarms on it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, schedule: str, bucket: s3.IBucket,
                 key: kms.IKey, worker_type: str = "G.1X", workers: int = 2, timeout_minutes: int = 120) -> None:
        super().__init__(scope, construct_id)
        self.job_name = f"modelmeter-{unit_name}-transform"
        script = s3_assets.Asset(self, "Script", path=str(SCRIPT))
        packages = s3_assets.Asset(self, "Packages", path=str(REPO_ROOT), exclude=EXCLUDE)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
                             description=f"modelmeter {unit_name}: the Glue transform job")
        # the two asset objects only (an asset's own grant_read would open the whole bootstrap bucket)
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[
            asset.bucket.arn_for_objects(asset.s3_object_key) for asset in (script, packages)]))
        security = self._security_configuration(unit_name, key)
        self.job = glue.CfnJob(
            self, "Job", name=self.job_name, role=self.role.role_arn, glue_version=GLUE_VERSION,
            description=f"modelmeter transform of unit {unit_name} (Spark engine)",
            command=glue.CfnJob.JobCommandProperty(name="glueetl", python_version="3",
                                                   script_location=script.s3_object_url),
            worker_type=worker_type, number_of_workers=workers, timeout=timeout_minutes, max_retries=1,
            execution_property=glue.CfnJob.ExecutionPropertyProperty(max_concurrent_runs=1),
            security_configuration=security.ref,
            default_arguments={
                "--lake": f"s3://{bucket.bucket_name}",
                # Spark reads and writes S3 itself: files staged on the driver's disk are not on the executors'
                "--stage-locally": "false",
                "--extra-py-files": packages.s3_object_url,
                "--additional-python-modules": pinned(ADDITIONAL_MODULES),
                "--job-bookmark-option": "job-bookmark-disable",
                "--enable-continuous-cloudwatch-log": "true",
                "--enable-metrics": "true",
                "--enable-observability-metrics": "true",
            })
        self._grant(bucket, key)
        self.schedule = self._schedule(unit_name, schedule)
        self.failed_runs, self.failure_alarm = self._failures(unit_name, key)

    def _security_configuration(self, unit_name: str, key: kms.IKey) -> glue.CfnSecurityConfiguration:
        # Glue's CloudWatch log encryption needs the logs service to use the key (its key policy)
        region = Stack.of(self).region
        key.grant(iam.ServicePrincipal(f"logs.{region}.amazonaws.com"), "kms:Encrypt*", "kms:Decrypt*",
                  "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*")
        return glue.CfnSecurityConfiguration(
            self, "Security", name=f"modelmeter-{unit_name}-transform",
            encryption_configuration=glue.CfnSecurityConfiguration.EncryptionConfigurationProperty(
                s3_encryptions=[glue.CfnSecurityConfiguration.S3EncryptionProperty(
                    s3_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn)],
                cloud_watch_encryption=glue.CfnSecurityConfiguration.CloudWatchEncryptionProperty(
                    cloud_watch_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn),
                job_bookmarks_encryption=glue.CfnSecurityConfiguration.JobBookmarksEncryptionProperty(
                    job_bookmarks_encryption_mode="CSE-KMS", kms_key_arn=key.key_arn)))

    def _grant(self, bucket: s3.IBucket, key: kms.IKey) -> None:
        bucket.grant_read(self.role)
        acknowledge(self.role, f"AwsSolutions-IAM5[Resource::{nag_ref(bucket)}/*]",
                    "The transform reads the lake (raw events, prices, curated partitions) by partition.")
        for prefix in WRITE_PREFIXES:
            bucket.grant_put(self.role, f"{prefix}/*")
            bucket.grant_delete(self.role, f"{prefix}/*")
            acknowledge(self.role, f"AwsSolutions-IAM5[Resource::{nag_ref(bucket)}/{prefix}/*]",
                        "Day partitions are replaced: write and delete only under this prefix.")
        for action in ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"):
            acknowledge(self.role, f"AwsSolutions-IAM5[Action::{action}]", _S3_GRANT_REASON)
        key.grant_encrypt_decrypt(self.role)
        for action in ("kms:ReEncrypt*", "kms:GenerateDataKey*"):
            acknowledge(self.role, f"AwsSolutions-IAM5[Action::{action}]",
                        "CDK's KMS grant actions for encrypting and decrypting with the lake key only.")
        logs = "arn:{partition}:logs:{region}:{account}:log-group:/aws-glue/*"
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
            resources=[scoped_arn(self, logs)]))
        acknowledge_arn_wildcard(self.role, logs, "Glue names the job's log groups and streams under /aws-glue/ "
                                 "(with the security configuration's name) at run time.")
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": "Glue"}}))
        acknowledge(self.role, "AwsSolutions-IAM5[Resource::*]",
                    "PutMetricData has no resource ARN; the condition limits it to Glue's namespace.")

    def _schedule(self, unit_name: str, expression: str) -> scheduler.CfnSchedule:
        job_arn = scoped_arn(self, "arn:{partition}:glue:{region}:{account}:job/") + self.job_name
        role = iam.Role(self, "SchedulerRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
                        description=f"modelmeter {unit_name}: starts the Glue transform job")
        role.add_to_policy(iam.PolicyStatement(actions=["glue:StartJobRun"], resources=[job_arn]))
        return scheduler.CfnSchedule(
            self, "Schedule", schedule_expression=expression, state="ENABLED",
            description=f"modelmeter transform of unit {unit_name} (Glue): yesterday, today and the late days",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn="arn:aws:scheduler:::aws-sdk:glue:startJobRun", role_arn=role.role_arn,
                input=json.dumps({"JobName": self.job_name}),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=3)))

    def _failures(self, unit_name: str, key: kms.IKey) -> tuple[sqs.Queue, cloudwatch.Alarm]:
        queue = sqs.Queue(self, "FailedRuns", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                          enforce_ssl=True, retention_period=Duration.days(14))
        acknowledge(queue, "AwsSolutions-SQS3", "This queue is itself the record of failed Glue runs (a dead-letter "
                    "queue); nothing consumes it to fail again.")
        key.grant(iam.ServicePrincipal("events.amazonaws.com"), "kms:GenerateDataKey", "kms:Decrypt")
        events.Rule(self, "RunFailed", description=f"modelmeter {unit_name}: a Glue transform run failed",
                    event_pattern=events.EventPattern(
                        source=["aws.glue"], detail_type=["Glue Job State Change"],
                        detail={"jobName": [self.job_name], "state": list(FAILED_STATES)}),
                    targets=[targets.SqsQueue(queue)])
        alarm = cloudwatch.Alarm(
            self, "Failures", alarm_description=f"modelmeter {unit_name}: a Glue transform run failed",
            metric=queue.metric_approximate_number_of_messages_visible(statistic="Maximum",
                                                                       period=Duration.minutes(5)),
            threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        return queue, alarm


_S3_GRANT_REASON = "CDK's S3 grant actions (GetObject*, List*, DeleteObject*…), scoped to the lake bucket's prefixes."
