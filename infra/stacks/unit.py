"""One stack per business unit: a full unit composes every construct; an api_keys_only unit adds usage plans."""

from __future__ import annotations

from typing import Any, Protocol

from aws_cdk import CfnOutput, Environment, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from common import constants as c
from infra.catalog_schema import lake_tables
from infra.config import ApiKeysOnlyUnit, DeploymentConfig, FullUnit
from infra.constructs.analytics import Analytics
from infra.constructs.billing_import import BillingImport
from infra.constructs.dashboards import Dashboards
from infra.constructs.gateway_api import GatewayApi, TeamRecords, TeamUsagePlans
from infra.constructs.gateway_container import GatewayContainer
from infra.constructs.glue_transform import GlueTransform
from infra.constructs.lake_catalog import LakeCatalog
from infra.constructs.network import Network
from infra.constructs.observability import Observability
from infra.constructs.spend_controls import SpendControls
from infra.constructs.transform_job import TransformJob
from infra.constructs.usage_handoff import UsageHandoff
from infra.constructs.usage_stream import UsageStream
from infra.nag import acknowledge_custom_resource_provider


def stack_name(unit_name: str) -> str:
    return f"modelmeter-{unit_name}"


def _env(account: str | None, region: str | None) -> Environment | None:
    return Environment(account=account, region=region) if account or region else None


class UnitContent(Protocol):
    """What a unit deploys that the domain packages define: the Athena views and the QuickSight assets.

    Infra imports only the ground floor; the CDK app (``app.py``) passes ``modelmeter.deploy.CONTENT``, which renders
    them from ``sql/`` and ``dashboards/``.
    """

    def athena_views(self, *, timezone: str, fiscal_month_start_day: int) -> dict[str, str]:
        """View name → Athena ``CREATE OR REPLACE VIEW`` statement."""
        ...

    def quicksight_definitions(self, *, aws_account_id: str, region: str, athena_workgroup: str, glue_database: str,
                               principals: list[str], rls_principals: dict[str, list[str]]) -> dict[str, Any]:
        """API-shaped QuickSight definitions (see ``infra.constructs.dashboards.Dashboards``)."""
        ...


class FullUnitStack(Stack):
    """Network, gateway API, usage stream, lake and catalog, transform, Athena, QuickSight, the billing import (when
    enabled) and observability."""

    def __init__(self, scope: Construct, construct_id: str, *, unit: FullUnit, content: UnitContent) -> None:
        self.unit_env = _env(unit.account, unit.region)
        super().__init__(scope, construct_id, env=self.unit_env,
                         description=f"modelmeter business unit {unit.name} (full)")
        Tags.of(self).add("modelmeter:business-unit", unit.name)
        layers = [lambda_.LayerVersion.from_layer_version_arn(self, f"Layer{i}", arn)
                  for i, arn in enumerate(unit.dependency_layer_arns)]
        self.network = Network(self, "Network", cidr=unit.vpc_cidr, nat_gateways=unit.nat_gateways)
        self.lake = LakeCatalog(self, "Lake", unit_name=unit.name, tables=lake_tables(),
                                raw_retention_days=unit.lake.raw_retention_days,
                                infrequent_access_after_days=unit.lake.infrequent_access_after_days)
        self.usage_stream = UsageStream(self, "UsageStream", unit_name=unit.name, bucket=self.lake.bucket,
                                        key=self.lake.key, database_name=self.lake.database_name,
                                        table_name=c.TABLE_RAW)
        self.usage_stream.stream.node.add_dependency(self.lake.tables[c.TABLE_RAW])
        self.analytics = Analytics(self, "Analytics", unit_name=unit.name, database_name=self.lake.database_name,
                                   results_bucket=self.lake.results_bucket, key=self.lake.key,
                                   bytes_scanned_cutoff_mb=unit.lake.athena_bytes_scanned_cutoff_mb,
                                   views=content.athena_views(timezone=unit.reporting_timezone,
                                                              fiscal_month_start_day=unit.fiscal_month_start_day))
        self.spend = SpendControls(self, "Spend", unit_name=unit.name, key=self.lake.key,
                                   email=unit.budget_alerts.email, https=unit.budget_alerts.https)
        self.handoff: UsageHandoff | None = None  # the usage hand-off queue and its drain (either runtime)
        self.gateway: GatewayApi | GatewayContainer = (self._container_gateway(unit, layers)
                                                       if unit.gateway.runtime == "container"
                                                       else self._lambda_gateway(unit, layers))
        self.transform = TransformJob(
            self, "Transform", unit_name=unit.name, schedule=unit.transform.schedule, engine=unit.transform.engine,
            memory_mb=unit.transform.memory_mb, timeout_minutes=unit.transform.timeout_minutes,
            package=unit.lambda_package, tenant_table=self.gateway.tenant_table,
            bucket=self.lake.bucket, key=self.lake.key, database_name=self.lake.database_name,
            reporting_timezone=unit.reporting_timezone, athena_workgroup=self.analytics.workgroup_name,
            layers=layers,
            environment={c.ENV_FISCAL_MONTH_START: str(unit.fiscal_month_start_day)}, vpc=self.network.vpc,
            subnets=self.network.lambda_subnets, security_group=self.network.lambda_security_group)
        # engine glue: Spark on AWS Glue transforms on the same schedule (the Lambda refreshes and corrects only)
        self.glue_transform: GlueTransform | None = None
        if unit.transform.engine == "glue":
            glue = unit.transform.glue
            self.glue_transform = GlueTransform(
                self, "GlueTransform", unit_name=unit.name, schedule=unit.transform.schedule, bucket=self.lake.bucket,
                key=self.lake.key, worker_type=glue.worker_type, workers=glue.workers,
                timeout_minutes=glue.timeout_minutes)
        # The month-to-date correction after each run (set_spend from the curated tables) writes the counters.
        self.spend.attach_corrections(self.transform.function)
        if unit.quicksight.enabled:
            self.dashboards = Dashboards(self, "QuickSight", definitions=content.quicksight_definitions(
                aws_account_id=self.account, region=self.region, athena_workgroup=self.analytics.workgroup_name,
                glue_database=self.lake.database_name, principals=list(unit.quicksight.principals),
                rls_principals={k: list(v) for k, v in unit.quicksight.rls_principals.items()}))
            self.dashboards.node.add_dependency(self.analytics.workgroup)
        self.billing: BillingImport | None = None
        if unit.billing.enabled:
            self.billing = self._billing_import(unit, layers)
        lambda_gateway = self.gateway if isinstance(self.gateway, GatewayApi) else None
        gateway_url = self.gateway.api.url if isinstance(self.gateway, GatewayApi) else self.gateway.url
        self.observability = Observability(
            self, "Observability", unit_name=unit.name, key=self.lake.key,
            api=lambda_gateway.api if lambda_gateway else None,
            gateway_function=lambda_gateway.function if lambda_gateway else None,
            stream_name=self.usage_stream.stream_name,
            transform_function=self.transform.function, transform_service=c.SERVICE_TRANSFORM,
            transform_alarm=self.transform.failure_alarm,
            extra_alarms=[*self.spend.alarms.values(), *([self.billing.failure_alarm] if self.billing else []),
                          *([self.glue_transform.failure_alarm] if self.glue_transform else []),
                          *(self.gateway.alarms.values() if isinstance(self.gateway, GatewayContainer) else []),
                          *([lambda_gateway.worker_alarm] if lambda_gateway else []),
                          *(self.handoff.alarms.values() if self.handoff else [])])
        if isinstance(self.gateway, GatewayContainer):
            self.gateway.add_widgets(self.observability.dashboard)
        for name, value, what in (
            ("ApiUrl", gateway_url,
             "Gateway base URL (seed-compatible API)" if lambda_gateway else
             "Gateway base URL (seed-compatible API; the load balancer of the container runtime)"),
            ("LakeUri", f"s3://{self.lake.bucket.bucket_name}", "The lake (MODELMETER_LAKE)"),
            ("GlueDatabaseName", self.lake.database_name, "Glue database of the lake tables"),
            ("AthenaWorkGroupName", self.analytics.workgroup_name, "Athena workgroup"),
            ("UsageStreamName", self.usage_stream.stream_name, "Firehose stream of usage events"),
            ("TenantTableName", self.gateway.tenant_table.table_name, "DynamoDB tenant registry"),
            ("AlarmTopicArn", self.observability.topic.topic_arn, "SNS topic of the alarms"),
            ("BudgetAlertTopicArn", self.spend.topic.topic_arn, "SNS topic of the budget alerts"),
            ("SpendTableName", self.spend.table.table_name, "DynamoDB table of the gateway's spend counters"),
        ):
            CfnOutput(self, name, value=value, description=what)
        if self.billing:
            CfnOutput(self, "BillingExportDestination", value=self.lake.location(self.billing.export_prefix),
                      description="Where the payer account's CUR 2.0 Data Export delivers (docs/deploy.md)")
        acknowledge_custom_resource_provider(self)

    def _lambda_gateway(self, unit: FullUnit, layers: list[lambda_.ILayerVersion]) -> GatewayApi:
        gateway = GatewayApi(
            self, "Gateway", unit_name=unit.name, key=self.lake.key, endpoint=unit.api.endpoint,
            throttle=unit.api.throttle, teams=unit.teams, sagemaker_endpoints=unit.sagemaker_endpoints,
            execute_api_endpoint=self.network.endpoints["execute-api"], layers=layers, package=unit.lambda_package,
            timeout_seconds=unit.api.lambda_timeout_seconds,
            environment={c.ENV_FIREHOSE_STREAM: self.usage_stream.stream_name}, vpc=self.network.vpc,
            subnets=self.network.lambda_subnets, security_group=self.network.lambda_security_group)
        gateway.function.add_to_role_policy(self._put_usage())
        gateway.read_prices(self.lake.bucket)  # cost_usd: the lake's price catalog, pricing/ only
        self.spend.attach_gateway(gateway.function)
        self.handoff = self._usage_handoff(unit, layers)
        self.handoff.attach_gateway(gateway.function)
        # Budget periods and daily-token days are the reporting calendar's, as the budget views count them.
        gateway.function.add_environment(c.ENV_REPORTING_TZ, unit.reporting_timezone)
        gateway.function.add_environment(c.ENV_FISCAL_MONTH_START, str(unit.fiscal_month_start_day))
        return gateway

    def _usage_handoff(self, unit: FullUnit, layers: list[lambda_.ILayerVersion]) -> UsageHandoff:
        return UsageHandoff(
            self, "UsageHandoff", unit_name=unit.name, key=self.lake.key, stream_arn=self.usage_stream.stream.attr_arn,
            stream_name=self.usage_stream.stream_name, vpc=self.network.vpc, subnets=self.network.lambda_subnets,
            security_group=self.network.lambda_security_group, layers=layers, package=unit.lambda_package)

    def _container_gateway(self, unit: FullUnit, layers: list[lambda_.ILayerVersion]) -> GatewayContainer:
        """The same gateway as ECS Fargate tasks behind an ALB (internal for a private API), granted and configured
        as the Lambda is."""
        gateway = GatewayContainer(
            self, "Gateway", unit_name=unit.name, key=self.lake.key, teams=unit.teams,
            sagemaker_endpoints=unit.sagemaker_endpoints, settings=unit.gateway.container,
            internet_facing=unit.api.endpoint == "regional", vpc=self.network.vpc,
            task_subnets=self.network.lambda_subnets, access_logs=self.lake.access_logs,
            image_endpoints=not unit.nat_gateways, environment={
                c.ENV_FIREHOSE_STREAM: self.usage_stream.stream_name, c.ENV_REPORTING_TZ: unit.reporting_timezone,
                c.ENV_FISCAL_MONTH_START: str(unit.fiscal_month_start_day)})
        gateway.add_to_role_policy(self._put_usage())
        gateway.read_prices(self.lake.bucket)
        gateway.attach_spend(self.spend)
        # A task's spool dies with the task: what Firehose has not taken at SIGTERM goes to the hand-off queue.
        self.handoff = self._usage_handoff(unit, layers)
        gateway.attach_handoff(self.handoff)
        return gateway

    def _put_usage(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                                   resources=[self.usage_stream.stream.attr_arn])

    def _billing_import(self, unit: FullUnit, layers: list[lambda_.ILayerVersion]) -> BillingImport:
        billing = unit.billing
        assert billing.payer_account is not None  # the config model refuses an enabled block without one
        return BillingImport(
            self, "Billing", unit_name=unit.name, payer_account=billing.payer_account,
            export_name=billing.export_name, schedule=billing.schedule, include_tax=billing.include_tax,
            memory_mb=billing.memory_mb, timeout_minutes=billing.timeout_minutes, bucket=self.lake.bucket,
            key=self.lake.key, sagemaker_endpoints={m: e.endpoint_name for m, e in unit.sagemaker_endpoints.items()},
            package=unit.lambda_package, layers=layers, vpc=self.network.vpc, subnets=self.network.lambda_subnets,
            security_group=self.network.lambda_security_group)


class ApiKeysOnlyStack(Stack):
    """The teams of an ``api_keys_only`` unit: API keys and usage plans on the parent unit's API and stage."""

    def __init__(self, scope: Construct, construct_id: str, *, unit: ApiKeysOnlyUnit, parent: FullUnitStack) -> None:
        super().__init__(scope, construct_id, env=parent.unit_env,
                         description=f"modelmeter business unit {unit.name} (API keys on {parent.stack_name})")
        Tags.of(self).add("modelmeter:business-unit", unit.name)
        # Usage plans exist on API Gateway only; behind the container runtime's ALB the app's own checks throttle.
        self.team_plans = None
        if isinstance(parent.gateway, GatewayApi):
            api = parent.gateway.api
            self.team_plans = TeamUsagePlans(self, "Teams", unit_name=unit.name, api=api,
                                             stage=api.deployment_stage, teams=unit.teams)
        self.team_records = TeamRecords(self, "TeamRecords", unit_name=unit.name, table=parent.gateway.tenant_table,
                                        key=parent.lake.key, teams=unit.teams)
        acknowledge_custom_resource_provider(self)
        self.node.add_dependency(parent)


def build_units(scope: Construct, config: DeploymentConfig, *, content: UnitContent) -> dict[str, Stack]:
    """One stack per unit, parents first; an ``api_keys_only`` unit attaches to its parent's API."""
    stacks: dict[str, Stack] = {}
    for unit in config.units:
        if isinstance(unit, FullUnit):
            stacks[unit.name] = FullUnitStack(scope, stack_name(unit.name), unit=unit, content=content)
    for unit in config.units:
        if isinstance(unit, ApiKeysOnlyUnit):
            parent = stacks[unit.parent]
            assert isinstance(parent, FullUnitStack)  # the config model checked the reference
            stacks[unit.name] = ApiKeysOnlyStack(scope, stack_name(unit.name), unit=unit, parent=parent)
    return stacks
