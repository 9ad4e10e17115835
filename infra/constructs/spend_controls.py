"""Spend controls in AWS: the gateway's fleet-wide counters, the budget-alert topic and event, and their alarms.

* **Counters** (``ingest.spend_dynamo.DynamoSpendStore``): a DynamoDB table of their own, not the tenant table, so a
  deploy (which seeds team items) never touches them and the registry's scans never read them. One string partition
  key ``pk``, on demand, KMS, point-in-time recovery, TTL on ``expires_at`` (a period's items expire long after it
  ends). The gateway may only ``GetItem``, ``PutItem`` and ``UpdateItem`` there: atomic ``ADD``s, the conditional put
  that makes an alert fire once fleet-wide, and reads; never a delete or a scan.
* **Alerts** (``ingest.alerts_aws.AwsAlerts``): an SNS topic (KMS, TLS only) the gateway publishes each
  threshold crossing to, subscribed to by whatever the unit's config lists (``budget_alerts.email``/``https``, none
  by default), and an event on the account's default EventBridge bus (source ``modelmeter``, detail-type
  ``BudgetThresholdCrossed``) for a platform's own rules. ``events:PutEvents`` is allowed only with that source.
* **Alarms** on the gateway's ``SpendStoreErrors`` (the store could not be reached: block-mode teams are being
  refused) and ``BudgetAlertDeliveryFailures`` (an alert could not be sent after its retries); the unit's
  observability wires them to its on-call topic.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from common import constants as c
from infra.constructs.gateway_api import gateway_table
from infra.nag import scoped_arn

#: The bus budget alerts go to: the account's default bus (a platform routes them on with its own rules).
DEFAULT_EVENT_BUS = "default"
#: What the gateway may do on its counters table (no Scan, no DeleteItem, no batch writes).
GATEWAY_COUNTER_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
#: The transform's correction after each run also lists the period's teams (a Scan of this small table).
CORRECTION_COUNTER_ACTIONS = (*GATEWAY_COUNTER_ACTIONS, "dynamodb:Scan")


def gateway_metric(name: str, *, unit_name: str) -> cloudwatch.Metric:
    """A metric the gateway Lambda emits (EMF, namespace ``modelmeter``), summed over 5 minutes."""
    return cloudwatch.Metric(namespace=c.METRICS_NAMESPACE, metric_name=name, statistic="Sum",
                             period=Duration.minutes(5),
                             dimensions_map={"service": c.SERVICE_GATEWAY, "business_unit": unit_name})


class SpendControls(Construct):
    """The counters table, the budget-alert topic and the two alarms of one unit.

    Attributes:
        table: the counters table (``MODELMETER_SPEND_TABLE``).
        topic: the budget-alert topic (``MODELMETER_ALERT_TOPIC_ARN``).
        event_bus_arn: the EventBridge bus alerts go to (the default bus).
        alarms: ``spend_store`` and ``alert_delivery``, for the unit's observability to notify on-call.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, key: kms.IKey,
                 email: Sequence[str] = (), https: Sequence[str] = ()) -> None:
        super().__init__(scope, construct_id)
        self.table = gateway_table(self, "Counters", key, pitr=True)  # the gateway's tables' shape
        self._key = key
        self.topic = sns.Topic(self, "Alerts", display_name=f"modelmeter {unit_name} budget alerts", master_key=key,
                               enforce_ssl=True)
        for address in email:
            self.topic.add_subscription(subscriptions.EmailSubscription(address))
        for url in https:
            self.topic.add_subscription(subscriptions.UrlSubscription(url, protocol=sns.SubscriptionProtocol.HTTPS))
        self.event_bus_arn = scoped_arn(self, "arn:{partition}:events:{region}:{account}:event-bus/"
                                        + DEFAULT_EVENT_BUS)
        self.alarms: dict[str, cloudwatch.Alarm] = {
            "spend_store": self._alarm(
                "SpendStoreErrors", c.METRIC_SPEND_STORE_ERRORS, unit_name,
                f"modelmeter {unit_name}: the gateway could not reach its spend counters (block-mode teams are "
                "refused, alert-mode teams served unmetered)"),
            "alert_delivery": self._alarm(
                "AlertDeliveryFailures", c.METRIC_ALERT_DELIVERY_FAILURES, unit_name,
                f"modelmeter {unit_name}: a budget alert could not be sent to SNS or EventBridge after its retries"),
        }

    def _alarm(self, construct_id: str, metric_name: str, unit_name: str, description: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self, construct_id, metric=gateway_metric(metric_name, unit_name=unit_name), threshold=1,
            evaluation_periods=1, alarm_description=description,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)

    def attach_gateway(self, function: lambda_.Function) -> None:
        """Let the gateway Lambda count, alert and publish, and tell it where (its environment)."""
        self._attach(function, GATEWAY_COUNTER_ACTIONS)

    def attach_corrections(self, function: lambda_.Function) -> None:
        """Let a job correct month-to-date spend from the curated tables (``transforms.spend_correction``: it lists
        the period's teams, so Scan too) and send the alerts a corrected figure crosses."""
        self._attach(function, CORRECTION_COUNTER_ACTIONS)

    def _attach(self, function: lambda_.Function, actions: Sequence[str]) -> None:
        self.table.grant(function, *actions)
        # Table.grant leaves the key to the caller (the Lambdas use the unit's key for their other data already).
        self._key.grant_encrypt_decrypt(function)
        self.topic.grant_publish(function)
        function.add_to_role_policy(iam.PolicyStatement(
            actions=["events:PutEvents"], resources=[self.event_bus_arn],
            conditions={"StringEquals": {"events:source": c.ALERT_EVENT_SOURCE}}))
        function.add_environment(c.ENV_SPEND_TABLE, self.table.table_name)
        function.add_environment(c.ENV_ALERT_TOPIC_ARN, self.topic.topic_arn)
        function.add_environment(c.ENV_ALERT_EVENT_BUS, DEFAULT_EVENT_BUS)
