"""CloudWatch dashboard and alarms: gateway 5xx, Firehose delivery failures, transform failures, quarantine rate.

Alarms notify one encrypted SNS topic (subscribe on-call to it). The quarantine rate divides the transform's
``QuarantinedEvents`` by ``QuarantinedEvents + CuratedEvents`` (namespace ``modelmeter``, emitted by
``transforms.lambda_handler`` with dimensions ``service`` and ``business_unit``).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from common import constants as c

_HOUR = Duration.hours(1)
_5MIN = Duration.minutes(5)


def transform_metric(name: str, *, unit_name: str, service: str) -> cloudwatch.Metric:
    """A metric the transform emits through Powertools (EMF): namespace ``modelmeter``, summed per hour."""
    return cloudwatch.Metric(namespace=c.METRICS_NAMESPACE, metric_name=name, statistic="Sum", period=_HOUR,
                             dimensions_map={"service": service, "business_unit": unit_name})


class Observability(Construct):
    """Dashboard, alarms and the alarm topic of one unit.

    Attributes:
        topic: SNS topic every alarm notifies.
        alarms: alarms by purpose (``gateway_5xx``, ``firehose_delivery``, ``quarantine_rate``, ``transform``).
        dashboard: the CloudWatch dashboard.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, key: kms.IKey,
                 api: apigw.RestApi | None, gateway_function: lambda_.IFunction | None, stream_name: str,
                 transform_function: lambda_.IFunction,
                 transform_service: str, transform_alarm: cloudwatch.Alarm, quarantine_rate_threshold: float = 0.05,
                 extra_alarms: Sequence[cloudwatch.Alarm] = ()) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name=f"modelmeter {unit_name} alarms", master_key=key,
                               enforce_ssl=True)
        # CloudWatch publishes alarm notifications to the encrypted topic with its own service principal.
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:GenerateDataKey", "kms:Decrypt")
        # No API (the container runtime): the gateway's construct brings its own alarms and dashboard row.
        api_5xx = api.metric_server_error(period=_5MIN, statistic="Sum") if api is not None else None
        firehose_success = cloudwatch.Metric(
            namespace="AWS/Firehose", metric_name="DeliveryToS3.Success", statistic="Average", period=_5MIN,
            dimensions_map={"DeliveryStreamName": stream_name})
        firehose_freshness = cloudwatch.Metric(
            namespace="AWS/Firehose", metric_name="DeliveryToS3.DataFreshness", statistic="Maximum", period=_5MIN,
            dimensions_map={"DeliveryStreamName": stream_name})
        quarantined = transform_metric(c.METRIC_QUARANTINED_EVENTS, unit_name=unit_name, service=transform_service)
        curated = transform_metric(c.METRIC_CURATED_EVENTS, unit_name=unit_name, service=transform_service)
        quarantine_rate = cloudwatch.MathExpression(
            expression="IF(q + cur > 0, q / (q + cur), 0)", label="quarantine rate", period=_HOUR,
            using_metrics={"q": quarantined, "cur": curated})
        self.alarms: dict[str, cloudwatch.IAlarm] = {
            **({"gateway_5xx": self._alarm("Gateway5xx", api_5xx, 5, f"modelmeter {unit_name}: gateway 5xx responses")}
               if api_5xx is not None else {}),
            # Success is the fraction of delivery attempts that succeeded; below 1 means records went to errors/.
            "firehose_delivery": self._alarm(
                "FirehoseDelivery", firehose_success, 1, f"modelmeter {unit_name}: Firehose failed to deliver to S3",
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD),
            "quarantine_rate": self._alarm(
                "QuarantineRate", quarantine_rate, quarantine_rate_threshold,
                f"modelmeter {unit_name}: more than {quarantine_rate_threshold:.0%} of events quarantined"),
            "transform": transform_alarm,
        }
        transform_alarm.add_alarm_action(actions.SnsAction(self.topic))
        for alarm in extra_alarms:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.dashboard = self._dashboard(unit_name, api, gateway_function, transform_function, api_5xx,
                                         firehose_success, firehose_freshness, quarantined, curated, quarantine_rate)

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str, *,
               comparison: cloudwatch.ComparisonOperator = (
                   cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD)) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(self, construct_id, metric=metric, threshold=threshold, evaluation_periods=1,
                                 comparison_operator=comparison, alarm_description=description,
                                 treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        return alarm

    def _dashboard(self, unit_name: str, api: apigw.RestApi | None, gateway: lambda_.IFunction | None,
                   transform: lambda_.IFunction, api_5xx: cloudwatch.IMetric | None,
                   firehose_success: cloudwatch.IMetric,
                   firehose_freshness: cloudwatch.IMetric, quarantined: cloudwatch.IMetric,
                   curated: cloudwatch.IMetric, quarantine_rate: cloudwatch.IMetric) -> cloudwatch.Dashboard:
        graph = cloudwatch.GraphWidget
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"modelmeter-{unit_name}")
        if api is not None and gateway is not None and api_5xx is not None:
            dashboard.add_widgets(
                graph(title="Gateway requests and errors", width=12, left=[
                    api.metric_count(period=_5MIN), api.metric_client_error(period=_5MIN), api_5xx]),
                graph(title="Gateway latency (p90)", width=12, left=[
                    api.metric_latency(period=_5MIN, statistic="p90"), gateway.metric_duration(statistic="p90")]),
            )
        dashboard.add_widgets(
            graph(title="Firehose delivery to S3", width=12, left=[firehose_success], right=[firehose_freshness]),
            graph(title="Transform runs", width=12, left=[transform.metric_invocations(), transform.metric_errors()],
                  right=[transform.metric_duration(statistic="Maximum")]),
        )
        dashboard.add_widgets(
            graph(title="Events curated and quarantined", width=12, left=[curated, quarantined]),
            graph(title="Quarantine rate", width=12, left=[quarantine_rate]),
        )
        return dashboard
