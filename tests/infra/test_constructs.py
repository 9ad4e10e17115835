"""Each construct synthesized in a bare stack: its resources and their properties (never logical ids)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from aws_cdk.assertions import Match

from common import constants as c
from common import contracts as event_schema
from common.lake import Lake
from infra.catalog_schema import arrow_columns
from infra.constructs.network import INTERFACE_ENDPOINTS
from infra.constructs.usage_stream import BUFFER_MB, ERROR_PREFIX, PARTITION_QUERY, RAW_PREFIX
from ingest.sink import LocalParquetSink
from tests.infra.bare_stacks import research
from tests.infra.conftest import LAYER_ARN, Assembly


def _columns(table: dict) -> list[dict]:
    return table["Properties"]["TableInput"]["StorageDescriptor"]["Columns"]


def _glue_table(bare: Assembly, name: str) -> dict:
    (table,) = [t for t in bare.resources("bare-lake", "AWS::Glue::Table")
                if t["Properties"]["TableInput"]["Name"] == name]
    return table


# --- gateway API ----------------------------------------------------------------------------------------------

def test_one_usage_plan_per_team_with_its_throttle_and_quota_and_a_key_per_key_name(bare: Assembly) -> None:
    teams = research().teams
    template = bare.template("bare-gateway")
    template.resource_count_is("AWS::ApiGateway::UsagePlan", len(teams))
    template.resource_count_is("AWS::ApiGateway::ApiKey", sum(len(t.keys) for t in teams))
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", sum(len(t.keys) for t in teams))
    for team in teams:
        template.has_resource_properties("AWS::ApiGateway::UsagePlan", {
            "UsagePlanName": f"bare-{team.team_id}",
            "Throttle": {"RateLimit": team.throttle.rate, "BurstLimit": team.throttle.burst},
            "Quota": {"Limit": team.quota.limit, "Period": team.quota.period},
            "ApiStages": [Match.object_like({"ApiId": Match.any_value(), "Stage": Match.any_value()})],
        })
        for key in team.keys:
            template.has_resource_properties("AWS::ApiGateway::ApiKey", {"Name": f"bare-{team.team_id}-{key}",
                                                                         "Enabled": True})


def test_every_api_method_requires_a_key_and_the_stage_is_throttled_and_logged(bare: Assembly) -> None:
    template = bare.template("bare-gateway")
    methods = bare.resources("bare-gateway", "AWS::ApiGateway::Method")
    assert methods and all(m["Properties"]["ApiKeyRequired"] for m in methods)
    unit = research()
    template.has_resource_properties("AWS::ApiGateway::Stage", {
        "StageName": "prod", "TracingEnabled": True,
        "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
        "MethodSettings": Match.array_with([Match.object_like({
            "ThrottlingRateLimit": unit.api.throttle.rate, "ThrottlingBurstLimit": unit.api.throttle.burst})]),
    })
    template.has_resource_properties("AWS::ApiGateway::RestApi", {
        "EndpointConfiguration": {"Types": ["REGIONAL"]}, "ApiKeySourceType": "HEADER"})


def test_gateway_lambda_runs_the_ingest_handler_with_its_tables_and_powertools(bare: Assembly) -> None:
    bare.template("bare-gateway").has_resource_properties("AWS::Lambda::Function", {
        "Handler": "ingest.lambda_handler.handler", "Runtime": "python3.11", "Architectures": ["arm64"],
        "Layers": [LAYER_ARN],
        "VpcConfig": Match.object_like({"SubnetIds": Match.any_value()}),
        "Environment": {"Variables": Match.object_like({
            c.ENV_TENANT_TABLE: Match.any_value(), c.ENV_LONGPOLL_TABLE: Match.any_value(),
            c.ENV_BUSINESS_UNIT: "bare", "POWERTOOLS_SERVICE_NAME": "modelmeter-gateway",
            "POWERTOOLS_METRICS_NAMESPACE": c.METRICS_NAMESPACE,
            c.ENV_SAGEMAKER_ENDPOINTS: Match.string_like_regexp("llama-3-8b-instruct"),
        })},
    })


def test_gateway_reads_the_lakes_pricing_prefix_only_and_is_told_where_the_lake_is(bare: Assembly) -> None:
    # cost_usd (ingest/pricing.py): the gateway lists and reads the catalog's versions, and nothing else of the lake
    statements = [s for p in bare.resources("bare-gateway", "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    s3 = [s for s in statements if any(a.startswith("s3:") for a in
                                       (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
    (read,) = s3
    assert set(read["Action"]) == {"s3:GetObject*", "s3:GetBucket*", "s3:List*"}
    objects = [r["Fn::Join"][1][1] for r in read["Resource"] if "Fn::Join" in r]
    assert objects == [f"/{c.PRICING_CATALOG.split('/')[0]}/*"]
    bare.template("bare-gateway").has_resource_properties("AWS::Lambda::Function", {
        "Handler": "ingest.lambda_handler.handler",
        "Environment": {"Variables": Match.object_like({
            c.ENV_LAKE: Match.object_like({"Fn::Join": Match.any_value()})})},
    })


def test_tenant_and_longpoll_tables_are_on_demand_encrypted_with_ttl_and_pitr(bare: Assembly) -> None:
    tables = bare.resources("bare-gateway", "AWS::DynamoDB::Table")
    assert len(tables) == 2
    for table in tables:
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["KeySchema"] == [{"AttributeName": c.DYNAMO_PARTITION_KEY, "KeyType": "HASH"}]
        assert props["TimeToLiveSpecification"] == {"AttributeName": c.DYNAMO_TTL_ATTRIBUTE, "Enabled": True}
        assert props["SSESpecification"]["SSEEnabled"] is True and props["SSESpecification"]["SSEType"] == "KMS"
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_each_team_is_seeded_into_the_tenant_table_once_and_never_overwritten_or_deleted(bare: Assembly) -> None:
    records = bare.resources("bare-gateway", "Custom::ModelmeterTeam")
    teams = research().teams
    assert len(records) == len(teams)
    for team in teams:
        (record,) = [r for r in records if f"team#{team.team_id}" in json.dumps(r["Properties"]["Create"])]
        create, update = (json.dumps(record["Properties"][k]).replace("\\", "") for k in ("Create", "Update"))
        # a conditional put on create and on update alike, whose "the item exists" failure is ignored
        assert create == update
        assert '"action":"putItem"' in create
        assert f'"ConditionExpression":"attribute_not_exists({c.DYNAMO_PARTITION_KEY})"' in create
        assert '"ignoreErrorCodesMatching":"^ConditionalCheckFailedException$"' in create
        # and no delete: a team that leaves the config keeps its item (history and keys are finance records)
        assert "Delete" not in record["Properties"]
        for pattern in team.allowed_models:
            assert f'{{"S":"{pattern}"}}' in create
        # the seed is a team that never moved: its cost centre, no history (since always), no revision yet
        assert f'"cost_center":{{"S":"{team.cost_center}"}}' in create
        assert "cost_center_history" not in create and '"revision"' not in create
        if team.monthly_budget_usd is not None:
            assert f'"monthly_budget_usd":{{"N":"{team.monthly_budget_usd}"}}' in create
        # and its policy (the one the resource depends on) may put items, never delete them
        resources = bare.templates["bare-gateway"]["Resources"]
        (policy,) = [resources[d] for d in record["DependsOn"] if resources[d]["Type"] == "AWS::IAM::Policy"]
        actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"]
                   for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        assert "dynamodb:PutItem" in actions and not {"dynamodb:DeleteItem", "dynamodb:UpdateItem"} & actions


def test_sagemaker_endpoints_reach_the_gateway_in_the_shape_its_provider_reads(bare: Assembly) -> None:
    from ingest.providers.sagemaker import SageMakerProvider

    (gateway,) = [f for f in bare.resources("bare-gateway", "AWS::Lambda::Function")
                  if f["Properties"].get("Handler") == "ingest.lambda_handler.handler"]
    endpoints = json.loads(gateway["Properties"]["Environment"]["Variables"][c.ENV_SAGEMAKER_ENDPOINTS])
    assert endpoints == {"llama-3-8b": {"endpoint_name": "llama-3-8b-instruct",
                                        "inference_component": "llama-3-8b-ic", "api": "messages"}}
    SageMakerProvider(endpoints=endpoints, region="eu-west-1")  # the gateway's own validation accepts it


def test_sagemaker_invocation_is_limited_to_the_configured_endpoints(bare: Assembly) -> None:
    statements = [s for p in bare.resources("bare-gateway", "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (sagemaker,) = [s for s in statements if "sagemaker:InvokeEndpoint" in s["Action"]]
    resources = sagemaker["Resource"] if isinstance(sagemaker["Resource"], list) else [sagemaker["Resource"]]
    assert len(resources) == len(research().sagemaker_endpoints)
    assert all("endpoint/llama-3-8b-instruct" in str(r) for r in resources)


# --- usage stream -----------------------------------------------------------------------------------------------

def test_firehose_converts_to_parquet_from_the_glue_table_and_partitions_by_dt_and_hour(bare: Assembly) -> None:
    bare.template("bare-stream").has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
        "DeliveryStreamType": "DirectPut",
        "DeliveryStreamEncryptionConfigurationInput": {"KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": Match.any_value()},
        "ExtendedS3DestinationConfiguration": Match.object_like({
            "Prefix": "raw/usage_events/dt=!{partitionKeyFromQuery:dt}/hour=!{partitionKeyFromQuery:hour}/",
            "ErrorOutputPrefix": Match.string_like_regexp(r"^errors/.*!\{firehose:error-output-type\}"),
            "CompressionFormat": "UNCOMPRESSED",
            "BufferingHints": {"SizeInMBs": BUFFER_MB, "IntervalInSeconds": 900},
            "EncryptionConfiguration": {"KMSEncryptionConfig": {"AWSKMSKeyARN": Match.any_value()}},
            "CloudWatchLoggingOptions": Match.object_like({"Enabled": True}),
            "DataFormatConversionConfiguration": {
                "Enabled": True,
                "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": Match.any_value()}},
                "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}},
                "SchemaConfiguration": Match.object_like({
                    "DatabaseName": "modelmeter_bare", "TableName": c.TABLE_RAW, "VersionId": "LATEST"}),
            },
            "DynamicPartitioningConfiguration": Match.object_like({"Enabled": True}),
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{
                "Type": "MetadataExtraction",
                "Parameters": Match.array_with([
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": PARTITION_QUERY},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]),
            }]},
        }),
    })
    assert BUFFER_MB >= 64  # Firehose's floor when record-format conversion is on
    # OpenX parses yyyy-MM-dd'T'HH:mm:ss[.S]'Z' (up to 9 fraction digits): the form every event_time is written in
    written = event_schema.format_time(datetime(2026, 11, 25, 13, 45, 1, 123456, tzinfo=UTC))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z", written), written
    assert RAW_PREFIX.startswith(c.RAW_EVENTS + "/") and "error-output-type" in ERROR_PREFIX


def _jq_slice(text: str, start: int, end: int) -> str:
    """jq's ``.[start:end]`` on a string: code-point substring (what the metadata-extraction query does)."""
    return text[start:end]


def test_the_partition_query_lands_events_where_the_local_sink_does(tmp_path) -> None:
    # GIVEN events at awkward instants (midnight, last ms of a day, a leap day), written by the local sink
    base = datetime(2028, 2, 28, 23, 59, 59, 999000, tzinfo=UTC)
    times = [base, base + timedelta(milliseconds=1), base + timedelta(hours=25), datetime(2026, 1, 1, tzinfo=UTC)]
    events = [{"schema_version": 1, "event_id": f"e{i}", "request_id": f"r{i}", "team_id": "t", "model_id": "m",
               "event_time": event_schema.format_time(t), "provider": "simulator", "operation": "chat",
               "status": "ok"} for i, t in enumerate(times)]
    rows = [event_schema.parse_event(e) for e in events]
    written = LocalParquetSink(Lake.open(tmp_path)).write_rows(rows)
    sink_dirs = sorted("/".join(p.split("/")[-3:-1]) for p in written)
    # WHEN Firehose's query (.event_time[0:10], .event_time[11:13]) reads the same events as JSON
    assert PARTITION_QUERY == "{dt: .event_time[0:10], hour: .event_time[11:13]}"
    firehose_dirs = sorted(f"dt={_jq_slice(e['event_time'], 0, 10)}/hour={_jq_slice(e['event_time'], 11, 13)}"
                           for e in events)
    # THEN both put every event in the same dt/hour partition
    assert firehose_dirs == sink_dirs
    assert "dt=2028-02-29/hour=00" in firehose_dirs and "dt=2028-02-28/hour=23" in firehose_dirs


def test_firehose_role_writes_only_raw_and_error_prefixes(bare: Assembly) -> None:
    statements = [s for p in bare.resources("bare-stream", "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (put,) = [s for s in statements if "s3:PutObject" in s["Action"]]
    rendered = str(put["Resource"])
    assert "/raw/usage_events/*" in rendered and "/errors/*" in rendered
    glue = [s for s in statements if "glue:GetTable" in s["Action"]]
    assert glue and f"table/modelmeter_bare/{c.TABLE_RAW}" in str(glue[0]["Resource"])


# --- lake and catalog -------------------------------------------------------------------------------------------

def test_raw_glue_columns_are_the_event_schema(bare: Assembly) -> None:
    columns = _columns(_glue_table(bare, c.TABLE_RAW))
    assert [{"name": col["Name"], "type": col["Type"], "comment": col.get("Comment", "")} for col in columns] == \
        event_schema.glue_columns()
    # and they are what the raw Parquet files hold (the local sink writes arrow_schema())
    assert [(col["Name"], col["Type"]) for col in columns] == \
        [(col["name"], col["type"]) for col in arrow_columns(event_schema.arrow_schema())]


@pytest.mark.parametrize("table", [c.TABLE_USAGE_COST, c.TABLE_TEAM_MODEL_DAILY])
def test_curated_glue_columns_are_the_transform_schemas(bare: Assembly, table: str) -> None:
    columns = _columns(_glue_table(bare, table))
    assert [(col["Name"], col["Type"]) for col in columns] == \
        [(col["name"], col["type"]) for col in arrow_columns(event_schema.curated_arrow_schema(table))]
    money = [col for col in columns if col["Name"].endswith("_cost")]
    assert money and all(col["Type"] == f"decimal({c.MONEY_PRECISION},{c.MONEY_SCALE})" for col in money)


def test_quarantine_and_teams_tables_follow_their_schemas(bare: Assembly) -> None:
    for name, schema in ((c.TABLE_QUARANTINE, event_schema.quarantine_arrow_schema()),
                         (c.TABLE_TEAMS, event_schema.teams_schema())):
        got = [(col["Name"], col["Type"]) for col in _columns(_glue_table(bare, name))]
        assert got == [(col["name"], col["type"]) for col in arrow_columns(schema)]
        assert isinstance(schema, pa.Schema)


def test_partition_projection_dt_dates_and_hour_integers(bare: Assembly) -> None:
    raw = _glue_table(bare, c.TABLE_RAW)["Properties"]["TableInput"]
    assert [k["Name"] for k in raw["PartitionKeys"]] == ["dt", "hour"]
    params = raw["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.dt.type"] == "date" and params["projection.dt.format"] == "yyyy-MM-dd"
    assert params["projection.dt.range"].endswith(",NOW")
    assert params["projection.hour.type"] == "integer" and params["projection.hour.range"] == "0,23"
    assert params["projection.hour.digits"] == "2"
    assert str(params["storage.location.template"]).count("dt=${dt}/hour=${hour}/") == 1
    for name in (c.TABLE_USAGE_COST, c.TABLE_TEAM_MODEL_DAILY, c.TABLE_QUARANTINE):
        table = _glue_table(bare, name)["Properties"]["TableInput"]
        assert [k["Name"] for k in table["PartitionKeys"]] == ["dt"]
        assert table["Parameters"]["projection.dt.type"] == "date"
        assert "projection.hour.type" not in table["Parameters"]
    teams = _glue_table(bare, c.TABLE_TEAMS)["Properties"]["TableInput"]
    assert "PartitionKeys" not in teams and "projection.enabled" not in teams["Parameters"]


def test_lake_buckets_are_kms_encrypted_private_tls_only_logged_with_lifecycle(bare: Assembly) -> None:
    buckets = bare.resources("bare-lake", "AWS::S3::Bucket")
    assert len(buckets) == 3  # lake, Athena results, access logs
    kms_buckets = [b for b in buckets if b["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
                   ["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"]
    assert len(kms_buckets) == 2
    for bucket in buckets:
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}
        assert props["LifecycleConfiguration"]["Rules"]
    assert all("LoggingConfiguration" in b["Properties"] for b in kms_buckets)
    policies = bare.resources("bare-lake", "AWS::S3::BucketPolicy")
    assert len(policies) == 3 and all(
        any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" and s["Effect"] == "Deny"
            for s in p["Properties"]["PolicyDocument"]["Statement"]) for p in policies)
    bare.template("bare-lake").has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    (lake,) = [b for b in kms_buckets if any(r.get("Prefix") == "raw/" for r in
                                               b["Properties"]["LifecycleConfiguration"]["Rules"])]
    raw_rule = next(r for r in lake["Properties"]["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == "raw/")
    assert raw_rule["ExpirationInDays"] == 90


# --- network ----------------------------------------------------------------------------------------------------

def test_vpc_has_private_subnets_gateway_and_interface_endpoints_and_flow_logs(bare: Assembly) -> None:
    template = bare.template("bare-network")
    subnets = bare.resources("bare-network", "AWS::EC2::Subnet")
    assert subnets and not any(s["Properties"].get("MapPublicIpOnLaunch") for s in subnets)
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::FlowLog", 1)
    endpoints = bare.resources("bare-network", "AWS::EC2::VPCEndpoint")
    by_type: dict[str, set[str]] = {}
    for endpoint in endpoints:
        join = endpoint["Properties"]["ServiceName"]["Fn::Join"][1]  # ["com.amazonaws.", {Ref: Region}, ".svc"]
        by_type.setdefault(endpoint["Properties"]["VpcEndpointType"], set()).add(join[-1].removeprefix("."))
    assert by_type["Gateway"] == {"s3", "dynamodb"}
    assert by_type["Interface"] >= {"bedrock-runtime", "bedrock", "sagemaker.runtime", "kinesis-firehose",
                                    "execute-api", "logs"}
    assert len(by_type["Interface"]) == len(INTERFACE_ENDPOINTS)
    assert all(e["Properties"]["PrivateDnsEnabled"] for e in endpoints
               if e["Properties"].get("VpcEndpointType") == "Interface")


# --- transform job ----------------------------------------------------------------------------------------------

def test_transform_runs_on_the_configured_schedule_with_retries_and_a_dead_letter_queue(bare: Assembly) -> None:
    template = bare.template("bare-transform")
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": research().transform.schedule, "State": "ENABLED",
        "Targets": [Match.object_like({
            "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 7200},
            "DeadLetterConfig": {"Arn": Match.any_value()},
            "Input": '{"source":"schedule"}'})],
    })
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "transforms.lambda_handler.handler", "Timeout": 900, "MemorySize": 2048,
        "DeadLetterConfig": {"TargetArn": Match.any_value()},
        "Environment": {"Variables": Match.object_like({
            c.ENV_LAKE: Match.any_value(), c.ENV_TRANSFORM_ENGINE: "duckdb", c.ENV_REPORTING_TZ: "UTC",
            c.ENV_GLUE_DATABASE: "modelmeter_bare", "POWERTOOLS_SERVICE_NAME": "modelmeter-transform"})},
    })
    template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {"MaximumRetryAttempts": 2})
    template.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": Match.any_value(),
                                                         "MessageRetentionPeriod": 14 * 24 * 3600})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Metrics": Match.array_with([Match.object_like({"Expression": "FILL(errors, 0) + FILL(dead, 0)"})])})


def test_transform_writes_only_its_own_prefixes(bare: Assembly) -> None:
    statements = [s for p in bare.resources("bare-transform", "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    writes = [s for s in statements if "s3:PutObject" in s["Action"] or s["Action"] == "s3:DeleteObject*"]
    prefixes = sorted({str(s["Resource"]).split("/", 1)[1].split("'")[0].split('"')[0] for s in writes})
    assert prefixes == sorted(f"{p}/*" for p in (c.CURATED_USAGE_COST, c.CURATED_TEAM_MODEL_DAILY,
                                                 c.QUARANTINE_EVENTS, c.RUN_MANIFESTS, c.REFERENCE_TEAMS))
    assert not [s for s in statements if "athena:StartQueryExecution" in s["Action"]]  # duckdb engine: no Athena


# --- analytics ----------------------------------------------------------------------------------------------------

def test_athena_workgroup_is_enforced_encrypted_and_limited_and_views_are_named_queries(bare: Assembly) -> None:
    from sql.render import render_views

    template = bare.template("bare-analytics")
    template.has_resource_properties("AWS::Athena::WorkGroup", {"WorkGroupConfiguration": Match.object_like({
        "EnforceWorkGroupConfiguration": True, "BytesScannedCutoffPerQuery": 1024 * 1024 * 1024,
        "ResultConfiguration": {"OutputLocation": Match.any_value(), "EncryptionConfiguration": {
            "EncryptionOption": "SSE_KMS", "KmsKey": Match.any_value()}}})})
    views = render_views(dialect="athena")
    template.resource_count_is("AWS::Athena::NamedQuery", len(views))
    for name, statement in views.items():
        template.has_resource_properties("AWS::Athena::NamedQuery", {
            "Name": f"modelmeter view {name}", "QueryString": statement, "Database": "modelmeter_bare"})


# --- QuickSight ---------------------------------------------------------------------------------------------------

def test_quicksight_resources_create_update_delete_in_order_with_named_permissions(bare: Assembly) -> None:
    from dashboards.quicksight import DASHBOARD_ID, DATA_SOURCE_ID, RLS_DATA_SET_ID

    customs = bare.resources("bare-dashboards", "Custom::QuickSightDataSource") + \
        bare.resources("bare-dashboards", "Custom::QuickSightDataSet") + \
        bare.resources("bare-dashboards", "Custom::QuickSightDashboard")
    creates = {str(r["Properties"]["Create"]) for r in customs}
    for resource_id in (DATA_SOURCE_ID, RLS_DATA_SET_ID, DASHBOARD_ID):
        assert any(resource_id in c for c in creates), resource_id
    for resource in customs:
        props = resource["Properties"]
        for phase, verb in (("Create", "create"), ("Update", "update"), ("Delete", "delete")):
            assert f'"action":"{verb}' in str(props[phase]).replace(" ", ""), (phase, props[phase])
    # updates carry only what the Update* call accepts (botocore's model): never Permissions or Tags
    for resource in customs:
        update = json.loads(resource["Properties"]["Update"]) if isinstance(resource["Properties"]["Update"], str) \
            else json.loads("".join(p for p in resource["Properties"]["Update"]["Fn::Join"][1] if isinstance(p, str)))
        assert "Permissions" not in update["parameters"] and "Tags" not in update["parameters"]
    dashboard = bare.resources("bare-dashboards", "Custom::QuickSightDashboard")[0]
    assert dashboard.get("DependsOn"), "the dashboard must wait for its datasets"
    statements = [s for p in bare.resources("bare-dashboards", "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert statements and all("*" not in str(s["Resource"]) for s in statements)


# --- observability --------------------------------------------------------------------------------------------------

def test_alarms_cover_gateway_5xx_firehose_delivery_quarantine_rate_and_transform(bare: Assembly) -> None:
    template = bare.template("bare-observability")
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "5XXError",
                                                                "Namespace": "AWS/ApiGateway"})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "DeliveryToS3.Success", "Namespace": "AWS/Firehose", "ComparisonOperator": "LessThanThreshold",
        "Dimensions": [{"Name": "DeliveryStreamName", "Value": "modelmeter-bare-usage"}]})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"Metrics": Match.array_with([
        Match.object_like({"MetricStat": Match.object_like({"Metric": Match.object_like({
            "MetricName": c.METRIC_QUARANTINED_EVENTS, "Namespace": c.METRICS_NAMESPACE,
            "Dimensions": Match.array_with([{"Name": "business_unit", "Value": "bare"}])})})})])})
    alarms = bare.resources("bare-observability", "AWS::CloudWatch::Alarm")
    assert len(alarms) == 4 and all(a["Properties"].get("AlarmActions") for a in alarms)
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})


# --- billing import -------------------------------------------------------------------------------------------------

def _bucket_arn(path: str = "") -> dict:
    arn = {"Fn::GetAtt": [Match.any_value(), "Arn"]}
    return {"Fn::Join": ["", [arn, path]]} if path else arn


def test_the_payers_data_export_may_write_only_under_the_export_prefix_as_aws_documents(bare: Assembly) -> None:
    from infra.constructs.billing_import import DATA_EXPORTS_PRINCIPALS
    from tests.infra.bare_stacks import PAYER_ACCOUNT

    # AWS's policy (https://docs.aws.amazon.com/cur/latest/userguide/dataexports-s3-bucket.html), with PutObject
    # narrowed to the export's prefix
    conditions = {"StringLike": {
        "aws:SourceAccount": PAYER_ACCOUNT,
        "aws:SourceArn": [f"arn:aws:cur:us-east-1:{PAYER_ACCOUNT}:definition/*",
                          f"arn:aws:bcm-data-exports:us-east-1:{PAYER_ACCOUNT}:export/*"]}}
    principal = {"Service": ["bcm-data-exports.amazonaws.com", "billingreports.amazonaws.com"]}
    assert sorted(DATA_EXPORTS_PRINCIPALS) == principal["Service"]
    template = bare.template("bare-billing")
    template.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Allow", "Principal": principal, "Action": "s3:PutObject",
                           "Resource": _bucket_arn(f"/{c.BILLING_EXPORTS}/*"), "Condition": conditions}),
        Match.object_like({"Effect": "Allow", "Principal": principal, "Action": "s3:GetBucketPolicy",
                           "Resource": _bucket_arn(), "Condition": conditions}),
    ])}})
    # nothing else of the bucket is open to them
    statements = [s for p in bare.resources("bare-billing", "AWS::S3::BucketPolicy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"] if s.get("Principal") == principal]
    assert len(statements) == 2
    # and the bucket's KMS key lets them encrypt what they deliver, under the same conditions
    template.has_resource_properties("AWS::KMS::Key", {"KeyPolicy": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Allow", "Principal": principal, "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                           "Condition": conditions})])}})


def test_billing_import_runs_the_finance_handler_on_its_schedule_with_retries_and_a_dead_letter_queue(
        bare: Assembly) -> None:
    template = bare.template("bare-billing")
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "rate(6 hours)", "State": "ENABLED",
        "Targets": [Match.object_like({
            "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 7200},
            "DeadLetterConfig": {"Arn": Match.any_value()}, "Input": '{"source":"schedule"}'})]})
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "finance.lambda_handler.handler", "Runtime": "python3.11", "Timeout": 900, "MemorySize": 2048,
        "DeadLetterConfig": {"TargetArn": Match.any_value()},
        "VpcConfig": Match.object_like({"SubnetIds": Match.any_value()}),
        "Environment": {"Variables": Match.object_like({
            c.ENV_LAKE: Match.any_value(), c.ENV_BILLING_EXPORT_NAME: "modelmeter-cur2",
            c.ENV_BILLING_INCLUDE_TAX: "false", c.ENV_BUSINESS_UNIT: "bare",
            c.ENV_SAGEMAKER_ENDPOINTS: '{"llama-3-8b":{"endpoint_name":"llama-3-8b-instruct"}}',
            "POWERTOOLS_SERVICE_NAME": c.SERVICE_BILLING})}})
    template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {"MaximumRetryAttempts": 2})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "Threshold": 1, "Metrics": Match.array_with([Match.object_like(
            {"Expression": "FILL(errors, 0) + FILL(dead, 0)"})])})


def test_billing_import_reads_and_writes_only_its_prefixes_and_deletes_nothing(bare: Assembly) -> None:
    statements = [s for p in bare.resources("bare-billing", "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]

    def prefixes(action: str) -> set[str]:
        out = set()
        for s in statements:
            if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]):
                for r in s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]:
                    if "Fn::Join" in r:
                        out.add(r["Fn::Join"][1][1])
        return out

    assert prefixes("s3:GetObject*") == {f"/{p}/*" for p in (c.BILLING_EXPORTS, c.BILLING_CUR, c.CURATED_RECONCILIATION,
                                                              c.CURATED_USAGE_COST, "pricing")}
    # snapshots and reconciliations, and the empty folder objects pyarrow puts for their parents
    assert prefixes("s3:PutObject") == {f"/{c.BILLING_CUR}/*", f"/{c.CURATED_RECONCILIATION}/*", "/billing/",
                                        "/curated/"}
    assert not [s for s in statements if any(a.startswith("s3:Delete") for a in
                                             (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
    (kms_use,) = [s for s in statements if "kms:Decrypt" in s["Action"]]
    assert set(kms_use["Action"]) == {"kms:Decrypt", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"}
    assert "Fn::GetAtt" in kms_use["Resource"]  # the one key, not "*"


def test_pyarrow_puts_the_folder_objects_the_billing_import_is_granted(s3_lake_uri: str) -> None:
    # The grant of /billing/ and /curated/ exists because pyarrow's create_dir writes one empty object per parent
    import boto3

    from infra.constructs.billing_import import WRITE_PREFIXES, directory_markers

    lake = Lake.open(s3_lake_uri)
    for prefix in WRITE_PREFIXES:
        lake.write_bytes(b"{}", prefix, "billing_period=2026-11", "x.json")
    bucket, _, root = s3_lake_uri.removeprefix("s3://").partition("/")
    keys = [o["Key"].removeprefix(f"{root}/") for o in boto3.client("s3").list_objects_v2(
        Bucket=bucket, Prefix=f"{root}/")["Contents"]]
    outside = sorted(k for k in keys if k and not any(k.startswith(f"{p}/") for p in WRITE_PREFIXES))
    assert outside == directory_markers(WRITE_PREFIXES) == ["billing/", "curated/"]


def test_the_month_end_close_tables_are_projected_by_billing_period(bare: Assembly) -> None:
    # reconciliation and chargeback: billing_period=YYYY-MM (and version=N) folders, projected, not crawled
    tables = ((c.TABLE_RECONCILIATION, ["billing_period"]), (c.TABLE_CHARGEBACK, ["billing_period", "version"]))
    for name, keys in tables:
        table = _glue_table(bare, name)["Properties"]["TableInput"]
        assert [k["Name"] for k in table["PartitionKeys"]] == keys
        params = table["Parameters"]
        assert params["projection.billing_period.format"] == "yyyy-MM"
        assert params["projection.billing_period.interval.unit"] == "MONTHS"
        assert not set(keys) & {col["Name"] for col in _columns(_glue_table(bare, name))}
    money = {col["Name"]: col["Type"] for col in _columns(_glue_table(bare, c.TABLE_CHARGEBACK))}
    assert money["chargeback_cost"] == f"decimal({c.MONEY_PRECISION},{c.MONEY_SCALE})"
