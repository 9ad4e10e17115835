"""The whole app (sample config + a unit taking the other branches): cdk-nag, cfn-lint, cross-unit wiring,
encryption and least privilege over every synthesized template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from common import constants as c
from infra.runtime_code import RUNTIME_PACKAGES
from tests.infra.conftest import REGION, Assembly

FULL, KEYS_ONLY, OTHER = "modelmeter-research", "modelmeter-marketing", "modelmeter-finance"
GATEWAY_HANDLER = "ingest.lambda_handler.handler"


def _statements(deployment: Assembly, stack: str) -> list[dict[str, Any]]:
    return [s for p in deployment.resources(stack, "AWS::IAM::Policy")
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_every_unit_has_a_stack(deployment: Assembly) -> None:
    assert set(deployment.templates) == {FULL, KEYS_ONLY, OTHER}


def test_cdk_nag_reports_no_unacknowledged_finding_errors_or_warnings(deployment: Assembly) -> None:
    # The synth in the fixture would have raised on an error; warnings do not stop it, so read the report too.
    report_path = deployment.outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {"pluginReports": []}
    violations = [(v["ruleName"], [x["constructPath"] for x in v["violatingConstructs"]])
                  for plugin in report["pluginReports"] for v in plugin.get("violations", [])]
    assert violations == []


def test_every_acknowledgment_carries_a_written_reason(deployment: Assembly) -> None:
    # Acknowledgments are recorded in the cloud assembly as "aws:cdk:acknowledged-rules": {rule id: reason}.
    acknowledged: dict[str, str] = {}
    for stack in deployment.templates:
        metadata = json.loads((deployment.outdir / f"{stack}.metadata.json").read_text())
        for path, entries in metadata.items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    acknowledged |= {f"{path} {rule}": reason for rule, reason in entry["data"].items()}
    assert acknowledged, "the app acknowledges findings (e.g. Bedrock model wildcards): they must be recorded"
    short = {rule: reason for rule, reason in acknowledged.items() if len(reason.strip()) < 20}
    assert short == {}


@pytest.mark.slow  # cfn-lint loads its rule set: ~8 s on two cores
def test_every_acknowledgment_excuses_a_finding_cdk_nag_really_reports(tmp_path: Path) -> None:
    # GIVEN the same app synthesized with acknowledgments only recorded, not applied
    from tests.infra.conftest import FINANCE_UNIT, excuses, nag_findings_and_acknowledgments, sample_data

    data = sample_data()
    data["units"].append(FINANCE_UNIT)
    # WHEN cdk-nag runs THEN it fails, and its findings are exactly what the acknowledgments name
    findings, acknowledged = nag_findings_and_acknowledgments(data, tmp_path)
    assert [a for a in sorted(acknowledged) if not any(excuses(a, f) for f in findings)] == [], "stale"
    assert [f for f in sorted(findings) if not any(excuses(a, f) for a in acknowledged)] == [], "unexcused"


@pytest.mark.slow  # cfn-lint loads its rule set: ~8 s on two cores
def test_cfn_lint_finds_no_error_in_any_template(deployment: Assembly) -> None:
    from cfnlint.api import ManualArgs, lint_file

    problems = []
    for stack in deployment.templates:
        matches = lint_file(Path(deployment.outdir / f"{stack}.template.json"),
                            ManualArgs(regions=[REGION if stack == OTHER else "us-east-1"]))
        problems += [f"{stack}: {m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")]
    assert problems == []


def test_api_keys_only_unit_attaches_its_usage_plans_to_the_parents_api_and_stage(deployment: Assembly) -> None:
    parent, child = deployment.templates[FULL], deployment.template(KEYS_ONLY)
    # GIVEN the parent's exports of its RestApi and its prod stage
    (api_id,) = [k for k, r in parent["Resources"].items() if r["Type"] == "AWS::ApiGateway::RestApi"]
    (stage_id,) = [k for k, r in parent["Resources"].items() if r["Type"] == "AWS::ApiGateway::Stage"]
    exports = {o["Export"]["Name"]: o["Value"] for o in parent["Outputs"].values() if "Export" in o}
    api_export = next(name for name, value in exports.items() if value == {"Ref": api_id})
    stage_export = next(name for name, value in exports.items() if value == {"Ref": stage_id})
    # THEN the child has no API of its own; its plan names the parent's API and stage, with its team's limits
    child.resource_count_is("AWS::ApiGateway::RestApi", 0)
    assert not [f for f in deployment.resources(KEYS_ONLY, "AWS::Lambda::Function")
                if f["Properties"].get("Handler") == GATEWAY_HANDLER]
    team = deployment.config.unit("marketing").teams[0]
    child.has_resource_properties("AWS::ApiGateway::UsagePlan", {
        "UsagePlanName": f"marketing-{team.team_id}",
        "ApiStages": [Match.object_like({"ApiId": {"Fn::ImportValue": api_export},
                                         "Stage": {"Fn::ImportValue": stage_export}})],
        "Throttle": {"RateLimit": team.throttle.rate, "BurstLimit": team.throttle.burst},
        "Quota": {"Limit": team.quota.limit, "Period": team.quota.period}})
    child.resource_count_is("AWS::ApiGateway::ApiKey", len(team.keys))
    # and its team is written into the parent's tenant table (the table the parent's gateway reads), as marketing's
    (record,) = deployment.resources(KEYS_ONLY, "Custom::ModelmeterTeam")
    parts = record["Properties"]["Create"]["Fn::Join"][1]
    (imported,) = [p["Fn::ImportValue"] for p in parts if isinstance(p, dict)]
    gateway_env = [r["Properties"]["Environment"]["Variables"] for r in parent["Resources"].values()
                   if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == GATEWAY_HANDLER]
    assert exports[imported] == gateway_env[0][c.ENV_TENANT_TABLE]
    text = "".join(p for p in parts if isinstance(p, str))
    assert '"pk":{"S":"team#campaigns"}' in text and '"business_unit":{"S":"marketing"}' in text
    manifest = json.loads((deployment.outdir / "manifest.json").read_text())
    assert FULL in manifest["artifacts"][KEYS_ONLY]["dependencies"]


def test_encryption_everywhere(deployment: Assembly) -> None:
    for stack in (FULL, OTHER):
        for bucket in deployment.resources(stack, "AWS::S3::Bucket"):
            assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        for table in deployment.resources(stack, "AWS::DynamoDB::Table"):
            assert table["Properties"]["SSESpecification"] == {
                "KMSMasterKeyId": table["Properties"]["SSESpecification"]["KMSMasterKeyId"], "SSEEnabled": True,
                "SSEType": "KMS"}
        for queue in deployment.resources(stack, "AWS::SQS::Queue"):
            assert "KmsMasterKeyId" in queue["Properties"]
        for topic in deployment.resources(stack, "AWS::SNS::Topic"):
            assert "KmsMasterKeyId" in topic["Properties"]
        for stream in deployment.resources(stack, "AWS::KinesisFirehose::DeliveryStream"):
            assert stream["Properties"]["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == \
                "CUSTOMER_MANAGED_CMK"
        for workgroup in deployment.resources(stack, "AWS::Athena::WorkGroup"):
            config = workgroup["Properties"]["WorkGroupConfiguration"]
            assert config["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
        for key in deployment.resources(stack, "AWS::KMS::Key"):
            assert key["Properties"]["EnableKeyRotation"] is True


def test_no_wildcard_resource_except_where_aws_allows_none(deployment: Assembly) -> None:
    # bedrock:ListFoundationModels and cloudwatch:PutMetricData (the Glue job's metrics, conditioned on Glue's
    # namespace) have no resource-level permission; VPC Lambdas' ENI actions come from the AWS-managed policy (not in
    # these documents).
    allowed = {"bedrock:ListFoundationModels", "cloudwatch:PutMetricData"}
    for stack in deployment.templates:
        for statement in _statements(deployment, stack):
            if statement["Resource"] == "*" or statement["Resource"] == ["*"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert set(actions) <= allowed, (stack, actions)


def test_gateway_may_put_only_into_its_own_usage_stream(deployment: Assembly) -> None:
    puts = [s for s in _statements(deployment, FULL) if "firehose:PutRecordBatch" in s["Action"]]
    (stream_id,) = [k for k, r in deployment.templates[FULL]["Resources"].items()
                    if r["Type"] == "AWS::KinesisFirehose::DeliveryStream"]
    assert len(puts) == 2  # the gateway's and the usage hand-off drain's (infra/constructs/usage_handoff.py)
    assert all(put["Resource"] == {"Fn::GetAtt": [stream_id, "Arn"]} for put in puts)
    deployment.template(FULL).has_resource_properties("AWS::Lambda::Function", {
        "Handler": "ingest.lambda_handler.handler",
        "Environment": {"Variables": Match.object_like({c.ENV_FIREHOSE_STREAM: "modelmeter-research-usage",
                                                        c.ENV_BUSINESS_UNIT: "research"})}})


def test_gateway_environment_passes_the_gateways_own_settings_validation(deployment: Assembly) -> None:
    from ingest.lambda_handler import GatewaySettings

    (env,) = [f["Properties"]["Environment"]["Variables"] for f in deployment.resources(FULL, "AWS::Lambda::Function")
              if f["Properties"].get("Handler") == GATEWAY_HANDLER]
    # CloudFormation fills the Refs at deploy time; stand in a name for each so the shape can be checked now
    resolved = {k: v if isinstance(v, str) else f"resolved-{k.lower()}" for k, v in env.items()}
    settings = GatewaySettings.from_env({**resolved, "AWS_REGION": "eu-west-1"})
    assert settings.business_unit == "research" and settings.firehose_stream == "modelmeter-research-usage"
    assert settings.sagemaker_endpoints["llama-3-8b"]["endpoint_name"] == "llama-3-8b-instruct"


def test_gateway_prices_from_the_lake_the_transform_publishes_prices_into(deployment: Assembly) -> None:
    functions = {f["Properties"].get("Handler"): f["Properties"]["Environment"]["Variables"]
                 for f in deployment.resources(FULL, "AWS::Lambda::Function") if "Environment" in f["Properties"]}
    assert functions[GATEWAY_HANDLER][c.ENV_LAKE] == functions["transforms.lambda_handler.handler"][c.ENV_LAKE]


def test_transform_reads_the_tenant_table_the_gateway_writes(deployment: Assembly) -> None:
    functions = {f["Properties"].get("Handler"): f["Properties"]["Environment"]["Variables"]
                 for f in deployment.resources(FULL, "AWS::Lambda::Function") if "Environment" in f["Properties"]}
    tenants = functions[GATEWAY_HANDLER][c.ENV_TENANT_TABLE]
    assert functions["transforms.lambda_handler.handler"][c.ENV_TENANT_TABLE] == tenants
    (scan,) = [s for s in _statements(deployment, FULL) if "dynamodb:Scan" in s["Action"]
               and "dynamodb:PutItem" not in s["Action"]]
    assert {"Fn::GetAtt": [tenants["Ref"], "Arn"]} in (scan["Resource"] if isinstance(scan["Resource"], list)
                                                       else [scan["Resource"]])


def test_glue_engine_unit_runs_its_transform_on_glue_and_the_private_api_only_admits_its_endpoint(
        deployment: Assembly) -> None:
    other = deployment.template(OTHER)
    # engine glue: the Glue 5.0 job, sized by the config, on the unit's schedule (EventBridge Scheduler)
    other.has_resource_properties("AWS::Glue::Job", {
        "Name": "modelmeter-finance-transform", "GlueVersion": "5.0", "WorkerType": "G.2X", "NumberOfWorkers": 4,
        "Timeout": 90, "SecurityConfiguration": Match.any_value(), "Command": Match.object_like({"Name": "glueetl"})})
    other.has_resource_properties("AWS::Scheduler::Schedule", {"ScheduleExpression": "rate(2 hours)"})
    assert deployment.resources(FULL, "AWS::Glue::Job") == []  # the duckdb unit has none
    # this unit's Lambdas are container images (lambda_package: image): each names its handler as the command
    other.has_resource_properties("AWS::Lambda::Function", {
        "PackageType": "Image", "ImageConfig": {"Command": [GATEWAY_HANDLER]}, "Handler": Match.absent()})
    other.has_resource_properties("AWS::Lambda::Function", {
        "PackageType": "Image", "Code": {"ImageUri": Match.any_value()}, "Layers": Match.absent(),
        "ImageConfig": {"Command": ["transforms.lambda_handler.handler"]}, "Architectures": ["arm64"],
        "Environment": {"Variables": Match.object_like({
            c.ENV_TRANSFORM_ENGINE: "glue", c.ENV_REPORTING_TZ: "America/New_York", c.ENV_FISCAL_MONTH_START: "5"})}})
    # the Lambda keeps the schedule: with engine glue it refreshes reference/teams and corrects spend only
    other.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "rate(2 hours)"})
    assert not [s for s in _statements(deployment, OTHER) if "athena:StartQueryExecution" in s["Action"]]
    other.has_resource_properties("AWS::ApiGateway::RestApi", {
        "EndpointConfiguration": {"Types": ["PRIVATE"], "VpcEndpointIds": [Match.any_value()]},
        "Policy": Match.object_like({"Statement": [Match.object_like({
            "Condition": {"StringEquals": {"aws:SourceVpce": Match.any_value()}}})]})})
    other.resource_count_is("AWS::EC2::NatGateway", 1)


def test_quicksight_is_deployed_only_where_enabled(deployment: Assembly) -> None:
    assert deployment.resources(FULL, "Custom::QuickSightDashboard") == []
    (dashboard,) = deployment.resources(OTHER, "Custom::QuickSightDashboard")
    assert "modelmeter-finance" in json.dumps(deployment.templates[OTHER]) and dashboard["Properties"]["Create"]


def test_lambda_code_asset_holds_the_runtime_packages_only(deployment: Assembly) -> None:
    assets = json.loads((deployment.outdir / f"{FULL}.assets.json").read_text())["files"]
    dirs = [deployment.outdir / a["source"]["path"] for a in assets.values() if a["source"].get("packaging") == "zip"]
    code_dirs = [d for d in dirs if (d / "ingest").is_dir()]
    assert len(code_dirs) == 1, "one shared code asset for every modelmeter Lambda"
    top = sorted(p.name for p in code_dirs[0].iterdir())
    assert top == sorted(RUNTIME_PACKAGES)
    files = [p for p in code_dirs[0].rglob("*") if p.is_file()]
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix == ".pyc" or "tests" in p.parts]
    assert (code_dirs[0] / "transforms" / "lambda_handler.py").is_file()
    assert (code_dirs[0] / "common" / "contracts.py").is_file()


def test_one_lambda_image_whose_context_holds_the_dockerfile_lock_file_and_runtime_packages(
        deployment: Assembly) -> None:
    from infra.runtime_code import LAMBDA_DOCKERFILE

    images = json.loads((deployment.outdir / f"{OTHER}.assets.json").read_text())["dockerImages"]
    (image,) = images.values()  # both functions share one image
    assert image["source"]["dockerFile"] == LAMBDA_DOCKERFILE and image["source"]["platform"] == "linux/arm64"
    context = deployment.outdir / image["source"]["directory"]
    top = sorted(p.name for p in context.iterdir())
    assert top == sorted([*RUNTIME_PACKAGES, "infra", "requirements.lock"])
    assert sorted(p.name for p in (context / "infra").rglob("*") if p.is_file()) == ["lambda.Dockerfile"]
    dockerfile = (context / LAMBDA_DOCKERFILE).read_text()
    # every package the Dockerfile copies is in the context, and its CMD is the transform handler
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert all((context / name).exists() for name in copied)
    assert "FROM public.ecr.aws/lambda/python:3.11" in dockerfile


def test_the_billing_import_is_deployed_only_where_enabled_and_alarms_into_the_units_topic(
        deployment: Assembly) -> None:
    billing = deployment.config.unit("finance").billing
    other = deployment.template(OTHER)
    # GIVEN the finance unit's billing block THEN its export may deliver, and the import runs as the image's command
    other.has_resource_properties("AWS::Lambda::Function", {
        "PackageType": "Image", "ImageConfig": {"Command": ["finance.lambda_handler.handler"]},
        "Environment": {"Variables": Match.object_like({
            c.ENV_BILLING_EXPORT_NAME: billing.export_name, c.ENV_BILLING_INCLUDE_TAX: "true",
            c.ENV_BUSINESS_UNIT: "finance"})}})
    other.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": billing.schedule})
    other.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Action": "s3:PutObject", "Condition": {"StringLike": Match.object_like(
            {"aws:SourceAccount": billing.payer_account})}})])}})
    (topic_id,) = [k for k, r in deployment.templates[OTHER]["Resources"].items() if r["Type"] == "AWS::SNS::Topic"
                   and r["Properties"].get("DisplayName") == "modelmeter finance alarms"]
    other.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmDescription": "modelmeter finance: the scheduled billing import failed",
        "AlarmActions": [{"Ref": topic_id}]})
    outputs = deployment.templates[OTHER]["Outputs"]
    (destination,) = [o for o in outputs.values()
                      if o.get("Description", "").startswith("Where the payer account's CUR 2.0 Data Export delivers")]
    assert json.dumps(destination["Value"]).endswith(f'"/{c.BILLING_EXPORTS}/"]]}}')
    # and the sample unit, without a billing block, has none of it
    assert not [f for f in deployment.resources(FULL, "AWS::Lambda::Function")
                if f["Properties"].get("Handler") == "finance.lambda_handler.handler"]
    assert "bcm-data-exports.amazonaws.com" not in json.dumps(deployment.templates[FULL])
