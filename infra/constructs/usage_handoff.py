"""The usage hand-off: where the gateway Lambda puts the usage events Firehose did not take before an invocation ends
(``ingest/handoff.py``), and the drain Lambda that puts them into Firehose (``ingest/handoff_drain.py``).

* **Queue** (SQS standard, KMS with the unit's key, TLS only, 14 days' retention): JSON Lines messages of events.
  Its visibility timeout is six times the drain's timeout (AWS's advice for a Lambda event source), and a message
  the drain fails :data:`MAX_RECEIVE_COUNT` times (about two hours at that timeout) moves to the dead-letter queue.
* **Dead-letter queue** (the same encryption, 14 days): messages the drain could not deliver, and the lines that
  were not usage events, each with its ``reason`` attribute. Redrive them once Firehose is healthy (SQS's
  ``StartMessageMoveTask``); ``event_id`` keeps a redriven event from being counted twice.
* **Drain**: an SQS event source mapping with ``ReportBatchItemFailures`` (only the failed messages come back).
* **IAM, least privilege**: the gateway may only ``sqs:SendMessage`` (which also authorizes ``SendMessageBatch``)
  to the queue, with ``kms:GenerateDataKey`` and ``kms:Decrypt`` on the key; the drain receives and deletes (the
  event source's grant), ``firehose:PutRecordBatch`` on the stream, and ``sqs:SendMessage`` to its own queue (a
  re-queued remainder) and to the dead-letter queue (lines kept aside).
* **Alarms**: a message in the dead-letter queue; the queue's oldest message older than :data:`MAX_AGE_SECONDS`
  (the drain is not keeping up, or Firehose is down); a gateway call answered 503 because its usage could not be
  recorded (``UsageNotRecorded``).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from common import constants as c
from infra.constructs.functions import python_function
from infra.constructs.spend_controls import gateway_metric

DRAIN_TIMEOUT_SECONDS = 60
#: Receives before a message is dead-lettered: at six drain timeouts each, about two hours of Firehose trouble.
MAX_RECEIVE_COUNT = 20
#: The oldest queued message may be this old before the age alarm fires (the drain normally takes seconds).
MAX_AGE_SECONDS = 900
#: Messages per drain invocation (each is at most one PutRecordBatch of 500 events).
BATCH_SIZE = 10


class UsageHandoff(Construct):
    """The hand-off queue, its dead-letter queue, the drain Lambda and the alarms of one unit.

    Attributes:
        queue: the hand-off queue (``MODELMETER_HANDOFF_QUEUE_URL``).
        dead_letter_queue: where undeliverable messages and lines that are not usage wait.
        function: the drain Lambda.
        alarms: ``dead_letters``, ``oldest_message`` and ``usage_not_recorded``, for the unit's on-call topic.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, key: kms.IKey, stream_arn: str,
                 stream_name: str, vpc: ec2.IVpc, subnets: ec2.SubnetSelection, security_group: ec2.ISecurityGroup,
                 layers: Sequence[lambda_.ILayerVersion] = (), package: str = "zip") -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True,
            retention_period=Duration.days(14))
        self.queue = sqs.Queue(
            self, "Queue", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True,
            retention_period=Duration.days(14), visibility_timeout=Duration.seconds(6 * DRAIN_TIMEOUT_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue))
        self.function = python_function(
            self, "Drain", handler="ingest.handoff_drain.handler", service=c.SERVICE_USAGE_DRAIN,
            description=f"modelmeter usage hand-off drain of unit {unit_name} (SQS to Firehose)", memory_mb=512,
            timeout=Duration.seconds(DRAIN_TIMEOUT_SECONDS), vpc=vpc, subnets=subnets, security_group=security_group,
            layers=layers, package=package, environment={
                c.ENV_FIREHOSE_STREAM: stream_name, c.ENV_HANDOFF_QUEUE_URL: self.queue.queue_url,
                c.ENV_HANDOFF_DLQ_URL: self.dead_letter_queue.queue_url, c.ENV_BUSINESS_UNIT: unit_name})
        self.function.add_event_source(sources.SqsEventSource(
            self.queue, batch_size=BATCH_SIZE, report_batch_item_failures=True))
        self.function.add_to_role_policy(iam.PolicyStatement(actions=["firehose:PutRecordBatch"],
                                                             resources=[stream_arn]))
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["sqs:SendMessage"], resources=[self.queue.queue_arn, self.dead_letter_queue.queue_arn]))
        key.grant(self.function, "kms:GenerateDataKey", "kms:Decrypt")
        self.alarms: dict[str, cloudwatch.Alarm] = {
            "dead_letters": self._alarm(
                "DeadLettersAlarm", self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=Duration.minutes(5)), 1,
                f"modelmeter {unit_name}: usage events wait in the hand-off dead-letter queue (redrive them)"),
            "oldest_message": self._alarm(
                "OldestMessageAlarm", self.queue.metric_approximate_age_of_oldest_message(
                    statistic="Maximum", period=Duration.minutes(5)), MAX_AGE_SECONDS,
                f"modelmeter {unit_name}: hand-off queue not drained for {MAX_AGE_SECONDS} s (Firehose or the "
                "drain failing)"),
            "usage_not_recorded": self._alarm(
                "UsageNotRecordedAlarm", gateway_metric(c.METRIC_USAGE_NOT_RECORDED, unit_name=unit_name), 1,
                f"modelmeter {unit_name}: calls answered 503 because neither Firehose nor the hand-off queue took "
                "their usage"),
        }

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, threshold: float,
               description: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self, construct_id, metric=metric, threshold=threshold, evaluation_periods=1,
            alarm_description=description, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD)

    def attach_gateway(self, function: lambda_.Function) -> None:
        """Let the gateway Lambda hand events off (``sqs:SendMessage`` only) and tell it where."""
        function.add_to_role_policy(iam.PolicyStatement(actions=["sqs:SendMessage"],
                                                        resources=[self.queue.queue_arn]))
        self._key.grant(function, "kms:GenerateDataKey", "kms:Decrypt")
        function.add_environment(c.ENV_HANDOFF_QUEUE_URL, self.queue.queue_url)
