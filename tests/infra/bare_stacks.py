"""Each construct of ``infra.constructs`` in a bare stack of its own, with the least it needs around it."""

from __future__ import annotations

from aws_cdk import App, Environment, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3

from common.constants import TABLE_RAW
from infra.catalog_schema import lake_tables
from infra.config import FullUnit, load_config
from infra.constructs.analytics import Analytics
from infra.constructs.billing_import import BillingImport
from infra.constructs.dashboards import Dashboards
from infra.constructs.gateway_api import GatewayApi
from infra.constructs.lake_catalog import LakeCatalog
from infra.constructs.network import Network
from infra.constructs.observability import Observability
from infra.constructs.spend_controls import SpendControls
from infra.constructs.transform_job import TransformJob
from infra.constructs.usage_stream import UsageStream
from tests.infra.conftest import ACCOUNT, LAYER_ARN, REGION

BARE = ("network", "lake", "stream", "gateway", "transform", "billing", "analytics", "observability", "spend")
#: The payer account of the bare billing import (another account than the unit's, as in AWS Organizations).
PAYER_ACCOUNT = "210987654321"


def research() -> FullUnit:
    unit = load_config().unit("research")
    assert isinstance(unit, FullUnit)
    return unit


def _vpc(stack: Stack) -> tuple[ec2.Vpc, ec2.SubnetSelection, ec2.SecurityGroup]:
    vpc = ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    return vpc, ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED), ec2.SecurityGroup(
        stack, "Sg", vpc=vpc)


def build_bare_stacks(app: App) -> dict[str, Stack]:
    unit = research()
    stacks = {name: Stack(app, f"bare-{name}") for name in BARE}
    Network(stacks["network"], "Network", cidr=unit.vpc_cidr)
    LakeCatalog(stacks["lake"], "Lake", unit_name="bare", tables=lake_tables(), raw_retention_days=90,
                infrequent_access_after_days=30)

    st = stacks["stream"]
    UsageStream(st, "Stream", unit_name="bare", bucket=s3.Bucket(st, "B"), key=kms.Key(st, "K"),
                database_name="modelmeter_bare", table_name=TABLE_RAW)

    st = stacks["gateway"]
    vpc, subnets, sg = _vpc(st)
    gateway = GatewayApi(st, "Gateway", unit_name="bare", key=kms.Key(st, "K"), endpoint="regional",
                         throttle=unit.api.throttle, teams=unit.teams, sagemaker_endpoints=unit.sagemaker_endpoints,
                         vpc=vpc, subnets=subnets, security_group=sg,
                         layers=[lambda_.LayerVersion.from_layer_version_arn(st, "Deps", LAYER_ARN)])
    gateway.read_prices(s3.Bucket(st, "Lake"))

    st = stacks["transform"]
    vpc, subnets, sg = _vpc(st)
    TransformJob(st, "Transform", unit_name="bare", schedule=unit.transform.schedule, engine="duckdb",
                 memory_mb=2048, timeout_minutes=15, bucket=s3.Bucket(st, "B"), key=kms.Key(st, "K"),
                 database_name="modelmeter_bare", reporting_timezone="UTC", vpc=vpc, subnets=subnets,
                 security_group=sg)

    st = stacks["billing"]
    vpc, subnets, sg = _vpc(st)
    BillingImport(st, "Billing", unit_name="bare", payer_account=PAYER_ACCOUNT, export_name="modelmeter-cur2",
                  schedule="rate(6 hours)", bucket=s3.Bucket(st, "B"), key=kms.Key(st, "K"), vpc=vpc, subnets=subnets,
                  security_group=sg, sagemaker_endpoints={"llama-3-8b": "llama-3-8b-instruct"})

    from sql.render import render_views

    st = stacks["analytics"]
    Analytics(st, "Analytics", unit_name="bare", database_name="modelmeter_bare", results_bucket=s3.Bucket(st, "B"),
              key=kms.Key(st, "K"), bytes_scanned_cutoff_mb=1024, views=render_views(dialect="athena"))

    from dashboards.quicksight import build_definitions

    # QuickSight ARNs name the account: this one bare stack has an explicit environment.
    st = stacks["dashboards"] = Stack(app, "bare-dashboards", env=Environment(account=ACCOUNT, region=REGION))
    Dashboards(st, "QuickSight", definitions=build_definitions(
        aws_account_id=ACCOUNT, region=REGION, athena_workgroup="modelmeter-bare", glue_database="modelmeter_bare",
        principals=[f"arn:aws:quicksight:{REGION}:{ACCOUNT}:group/default/admins"]))

    st = stacks["observability"]
    api = apigw.RestApi(st, "Api")
    api.root.add_method("GET")
    fn = lambda_.Function(st, "Fn", runtime=lambda_.Runtime.PYTHON_3_11, handler="index.handler",
                          code=lambda_.Code.from_inline("def handler(e, c): return e"))
    alarm = cloudwatch.Alarm(st, "TransformAlarm", metric=fn.metric_errors(), threshold=1, evaluation_periods=1)
    Observability(st, "Observability", unit_name="bare", key=kms.Key(st, "K"), api=api, gateway_function=fn,
                  stream_name="modelmeter-bare-usage", transform_function=fn, transform_service="modelmeter-transform",
                  transform_alarm=alarm)

    st = stacks["spend"]
    fn = lambda_.Function(st, "Gateway", runtime=lambda_.Runtime.PYTHON_3_11, handler="index.handler",
                          code=lambda_.Code.from_inline("def handler(e, c): return e"))
    spend = SpendControls(st, "Spend", unit_name="bare", key=kms.Key(st, "K"), email=["finops@example.com"],
                          https=["https://hooks.example.com/budget"])
    spend.attach_gateway(fn)
    return stacks
