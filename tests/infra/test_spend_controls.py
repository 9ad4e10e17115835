"""The spend controls' AWS resources: the counters table, the budget-alert topic and event, their alarms, and what
the gateway (and the transform's correction) may do with them."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from aws_cdk.assertions import Match
from moto import mock_aws

from common import constants as c
from infra.config import ConfigError, load_config, parse_config
from infra.constructs.gateway_api import seed_item
from infra.constructs.spend_controls import CORRECTION_COUNTER_ACTIONS, DEFAULT_EVENT_BUS, GATEWAY_COUNTER_ACTIONS
from ingest.dynamo import DynamoTenantRegistry
from tests.aws.conftest import create_table
from tests.infra.conftest import Assembly, sample_data

FULL, OTHER = "modelmeter-research", "modelmeter-finance"
GATEWAY_HANDLER = "ingest.lambda_handler.handler"


def _actions(statement: dict[str, Any]) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def _statements(assembly: Assembly, stack: str) -> list[dict[str, Any]]:
    return [s for p in assembly.resources(stack, "AWS::IAM::Policy")
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _logical_id(assembly: Assembly, stack: str, cfn_type: str, **props: Any) -> str:
    (found,) = [k for k, r in assembly.templates[stack]["Resources"].items() if r["Type"] == cfn_type
                and all(r["Properties"].get(p) == v for p, v in props.items())]
    return found


def test_the_counters_are_a_table_of_their_own_on_demand_encrypted_with_ttl_and_pitr(bare: Assembly) -> None:
    (table,) = bare.resources("bare-spend", "AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": c.DYNAMO_PARTITION_KEY, "KeyType": "HASH"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": c.DYNAMO_TTL_ATTRIBUTE, "Enabled": True}
    assert props["SSESpecification"]["SSEType"] == "KMS" and "KMSMasterKeyId" in props["SSESpecification"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"


def test_the_alert_topic_is_encrypted_tls_only_and_subscribed_to_as_configured(bare: Assembly) -> None:
    template = bare.template("bare-spend")
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value(),
                                                         "DisplayName": "modelmeter bare budget alerts"})
    template.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
    subscriptions = {(s["Properties"]["Protocol"], s["Properties"]["Endpoint"])
                     for s in bare.resources("bare-spend", "AWS::SNS::Subscription")}
    assert subscriptions == {("email", "finops@example.com"), ("https", "https://hooks.example.com/budget")}


def test_the_gateway_may_count_alert_and_publish_and_nothing_more(bare: Assembly) -> None:
    table_id = _logical_id(bare, "bare-spend", "AWS::DynamoDB::Table")
    topic_id = _logical_id(bare, "bare-spend", "AWS::SNS::Topic")
    statements = _statements(bare, "bare-spend")
    (counters,) = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert sorted(_actions(counters)) == sorted(GATEWAY_COUNTER_ACTIONS)  # no Scan, no DeleteItem, no batch write
    assert counters["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]} or counters["Resource"] == [
        {"Fn::GetAtt": [table_id, "Arn"]}]
    (publish,) = [s for s in statements if "sns:Publish" in _actions(s)]
    assert _actions(publish) == ["sns:Publish"] and publish["Resource"] == {"Ref": topic_id}
    (put_events,) = [s for s in statements if "events:PutEvents" in _actions(s)]
    assert put_events["Condition"] == {"StringEquals": {"events:source": c.ALERT_EVENT_SOURCE}}
    assert json.dumps(put_events["Resource"]).endswith(f':event-bus/{DEFAULT_EVENT_BUS}"]]}}')
    # publishing to the encrypted topic needs the key
    assert [s for s in statements if "kms:GenerateDataKey*" in _actions(s)]
    bare.template("bare-spend").has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": {
        c.ENV_SPEND_TABLE: {"Ref": table_id}, c.ENV_ALERT_TOPIC_ARN: {"Ref": topic_id},
        c.ENV_ALERT_EVENT_BUS: DEFAULT_EVENT_BUS}}})


def test_the_transforms_correction_may_also_list_the_periods_teams_and_only_on_the_counters(
        deployment: Assembly) -> None:
    functions = {f["Properties"].get("Handler"): f["Properties"]["Environment"]["Variables"]
                 for f in deployment.resources(FULL, "AWS::Lambda::Function") if "Environment" in f["Properties"]}
    table = {"Fn::GetAtt": [functions[GATEWAY_HANDLER][c.ENV_SPEND_TABLE]["Ref"], "Arn"]}
    on_counters = [s for s in _statements(deployment, FULL)
                   if table in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    assert sorted(sorted(_actions(s)) for s in on_counters) == sorted(
        [sorted(GATEWAY_COUNTER_ACTIONS), sorted(CORRECTION_COUNTER_ACTIONS)])


def test_store_errors_and_alert_delivery_failures_alarm(bare: Assembly) -> None:
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in bare.resources("bare-spend",
                                                                                    "AWS::CloudWatch::Alarm")}
    assert set(alarms) == {c.METRIC_SPEND_STORE_ERRORS, c.METRIC_ALERT_DELIVERY_FAILURES}
    for alarm in alarms.values():
        assert alarm["Namespace"] == c.METRICS_NAMESPACE and alarm["Statistic"] == "Sum"
        assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert sorted(alarm["Dimensions"], key=lambda d: d["Name"]) == [
            {"Name": "business_unit", "Value": "bare"}, {"Name": "service", "Value": c.SERVICE_GATEWAY}]
        assert alarm["TreatMissingData"] == "notBreaching"


def test_a_unit_gives_its_gateway_the_counters_topic_and_bus_and_alarms_into_its_on_call_topic(
        deployment: Assembly) -> None:
    for stack, unit in ((FULL, "research"), (OTHER, "finance")):
        functions = {f["Properties"].get("Handler") or json.dumps(f["Properties"].get("ImageConfig")):
                     f["Properties"]["Environment"]["Variables"]
                     for f in deployment.resources(stack, "AWS::Lambda::Function") if "Environment" in f["Properties"]}
        (gateway,) = [v for k, v in functions.items() if GATEWAY_HANDLER in k]
        (transform,) = [v for k, v in functions.items() if "transforms.lambda_handler.handler" in k]
        table_id = gateway[c.ENV_SPEND_TABLE]["Ref"]  # the unit's tables look alike: find it by the variable
        assert deployment.templates[stack]["Resources"][table_id]["Type"] == "AWS::DynamoDB::Table"
        assert table_id != gateway[c.ENV_TENANT_TABLE]["Ref"]  # never the tenant table a deploy seeds
        assert transform[c.ENV_SPEND_TABLE] == {"Ref": table_id}  # the correction after each transform run
        assert transform[c.ENV_ALERT_TOPIC_ARN] == gateway[c.ENV_ALERT_TOPIC_ARN]
        # budget periods and days in the calendar the views (and the transform) count in
        assert gateway[c.ENV_REPORTING_TZ] == transform[c.ENV_REPORTING_TZ] == deployment.config.unit(
            unit).reporting_timezone
        assert gateway[c.ENV_FISCAL_MONTH_START] == transform[c.ENV_FISCAL_MONTH_START]
        topic_id = gateway[c.ENV_ALERT_TOPIC_ARN]["Ref"]
        alerts_topic = deployment.templates[stack]["Resources"][topic_id]["Properties"]
        assert alerts_topic["DisplayName"] == f"modelmeter {unit} budget alerts"
        on_call = _logical_id(deployment, stack, "AWS::SNS::Topic", DisplayName=f"modelmeter {unit} alarms")
        for metric in (c.METRIC_SPEND_STORE_ERRORS, c.METRIC_ALERT_DELIVERY_FAILURES):
            deployment.template(stack).has_resource_properties("AWS::CloudWatch::Alarm", {
                "MetricName": metric, "AlarmActions": [{"Ref": on_call}],
                "Dimensions": Match.array_with([{"Name": "business_unit", "Value": unit}])})
        outputs = {o.get("Description"): o["Value"] for o in deployment.templates[stack]["Outputs"].values()}
        assert outputs["SNS topic of the budget alerts"] == {"Ref": topic_id}
    # the sample subscribes nobody (left to the platform engineer); the finance unit lists an address and a hook
    assert not deployment.resources(FULL, "AWS::SNS::Subscription")
    assert {s["Properties"]["Protocol"] for s in deployment.resources(OTHER, "AWS::SNS::Subscription")} == {
        "email", "https"}


def test_a_seeded_teams_budget_mode_and_thresholds_are_what_the_gateway_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the sample's data-science team (alert mode, 50/80/100) and the same team in block mode at 25/90 %
    unit = load_config().unit("research")
    (team,) = [t for t in unit.teams if t.team_id == "data-science"]
    blocking = team.model_copy(update={"budget_mode": "block", "alert_at": [25, 90]})
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("dynamodb")
        create_table(client, "tenants")
        registry = DynamoTenantRegistry(table_name="tenants", client=client)
        for seeded, expected in ((team, ("alert", (50, 80, 100))), (blocking, ("block", (25, 90)))):
            # WHEN the deploy's seed item is put THEN the gateway reads the mode and thresholds the config set
            client.put_item(TableName="tenants", Item=seed_item(seeded, "research"))
            read = registry.get_team("data-science")
            assert read is not None and (read.budget_mode, read.alert_at) == expected
    # AND a team without them is seeded without them (the gateway's defaults)
    (search,) = [t for t in unit.teams if t.team_id == "search"]
    assert "budget_mode" not in seed_item(search, "research") and "alert_at" not in seed_item(search, "research")


@pytest.mark.parametrize(("team", "expected"), [
    ({"budget_mode": "hard"}, "units[0].teams[0].budget_mode: 'hard' is not a budget mode: use alert or block"),
    ({"alert_at": [50, 1200]}, "units[0].teams[0].alert_at: alert threshold 1200 is not a whole percentage from 1 "
                               "to 1000"),
    ({"alert_at": []}, "units[0].teams[0].alert_at: List should have at least 1 item"),
])
def test_a_bad_budget_mode_or_threshold_is_refused_naming_its_key(team: dict[str, Any], expected: str) -> None:
    data = sample_data()
    data["units"][0]["teams"][0].update(team)
    with pytest.raises(ConfigError) as raised:
        parse_config(data, source="units.yaml")
    assert expected in str(raised.value)


@pytest.mark.parametrize(("budget_alerts", "expected"), [
    ({"email": ["finops"]}, "units[0].budget_alerts.email: 'finops' is not an e-mail address"),
    ({"https": ["http://hooks.example.com/x"]}, "units[0].budget_alerts.https: "
                                                "'http://hooks.example.com/x' is not an https:// URL"),
    ({"sms": ["+15555550100"]}, "units[0].budget_alerts.sms: unknown key"),
])
def test_a_bad_budget_alerts_block_is_refused_naming_its_key(budget_alerts: dict[str, Any], expected: str) -> None:
    data = sample_data()
    data["units"][0]["budget_alerts"] = budget_alerts
    with pytest.raises(ConfigError) as raised:
        parse_config(data, source="units.yaml")
    assert expected in str(raised.value)
