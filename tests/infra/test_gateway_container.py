"""The container runtime of the gateway (``gateway.runtime: container``): what a unit synthesizes with it (ECS
Fargate behind an ALB, cdk-nag clean, the Lambda's grants on the task role, alarms, scaling), what it no longer
synthesizes (API Gateway, the gateway Lambda, usage plans), and the image's build context as ``cdk deploy`` would
hand it to ``docker build`` (no Docker here: the context is checked file by file, and its entry point imported)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk.assertions import Match
from packaging.requirements import Requirement

from common import constants as c
from infra.config import DEFAULT_CONFIG, ConfigError, parse_config
from infra.constructs.gateway_container import (
    CONTAINER_DOCKERFILE,
    CONTAINER_PACKAGES,
    SPOOL_PATH,
    STOP_TIMEOUT_SECONDS,
)
from infra.nag import new_app
from infra.stacks.unit import build_units
from ingest.container import APP_SHUTDOWN_SECONDS, ContainerSettings
from ingest.lambda_handler import GatewaySettings
from modelmeter.deploy import CONTENT
from tests.infra.conftest import Assembly, _read_templates, excuses, nag_findings_and_acknowledgments, sample_data

EDGE, INSIDE, KEYS = "modelmeter-edge", "modelmeter-inside", "modelmeter-edge-keys"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0f6a1b2c-3d4e-5f60-7182-93a4b5c6d7e8"


def container_config_data() -> dict[str, Any]:
    """Two container units, the sample's research unit with the container runtime: ``edge`` internet-facing (NAT,
    an ACM certificate, a longer idle timeout) with an api_keys_only child, ``inside`` internal (private API, no
    NAT, so HTTP inside the VPC and ECR endpoints)."""
    research = sample_data()["units"][0]
    edge = copy.deepcopy(research) | {"name": "edge", "vpc_cidr": "10.60.0.0/16", "nat_gateways": 1, "gateway": {
        "runtime": "container", "container": {"certificate_arn": CERTIFICATE, "idle_timeout_seconds": 1200,
                                              "min_tasks": 2, "desired_tasks": 3, "max_tasks": 8}}}
    inside = copy.deepcopy(research) | {"name": "inside", "vpc_cidr": "10.61.0.0/16",
                                        "gateway": {"runtime": "container"}}
    inside["api"] = {**inside["api"], "endpoint": "private"}
    keys = {"name": "edge-keys", "kind": "api_keys_only", "parent": "edge",
            "teams": [{"team_id": "ads", "throttle": {"rate": 1, "burst": 2}}]}
    return {"units": [edge, inside, keys]}


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory) -> Assembly:
    config = parse_config(container_config_data(), source="container config")
    outdir = tmp_path_factory.mktemp("containers.out")
    app = new_app(outdir=str(outdir), cloudformation_validation=False)
    build_units(app, config, content=CONTENT)
    app.synth()  # raises on an unacknowledged cdk-nag finding
    return Assembly(outdir=outdir, config=config, templates=_read_templates(outdir))


def _statements(assembly: Assembly, stack: str) -> list[dict[str, Any]]:
    return [s for p in assembly.resources(stack, "AWS::IAM::Policy")
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def _attributes(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {a["Key"]: a["Value"] for a in resource["Properties"][key]}


def test_cdk_nag_reports_nothing_and_every_acknowledgment_excuses_a_real_finding(containers: Assembly,
                                                                                  tmp_path: Path) -> None:
    report = json.loads((containers.outdir / "validation-report.json").read_text())
    assert [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])] == []
    # GIVEN the same units with acknowledgments only recorded WHEN cdk-nag runs THEN it reports exactly those
    findings, acknowledged = nag_findings_and_acknowledgments(container_config_data(), tmp_path)

    mine = {a for a in acknowledged if "/Gateway/" in a[0]}
    assert mine and [a for a in sorted(mine) if not any(excuses(a, f) for f in findings)] == [], "stale"
    assert [f for f in sorted(findings) if not any(excuses(a, f) for a in acknowledged)] == [], "unexcused"


def test_a_container_unit_has_no_api_gateway_no_gateway_lambda_and_no_usage_plans(containers: Assembly) -> None:
    for stack in (EDGE, INSIDE, KEYS):
        for cfn_type in ("AWS::ApiGateway::RestApi", "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey"):
            assert containers.resources(stack, cfn_type) == [], (stack, cfn_type)
    handlers = {f["Properties"].get("Handler") for f in containers.resources(EDGE, "AWS::Lambda::Function")}
    assert "ingest.lambda_handler.handler" not in handlers and "transforms.lambda_handler.handler" in handlers
    # the child unit's teams are still seeded into the parent's registry (keys come from `modelmeter keys create`)
    (seed,) = containers.resources(KEYS, "Custom::ModelmeterTeam")
    assert "team#ads" in json.dumps(seed["Properties"])


def test_the_default_runtime_is_still_lambda_behind_api_gateway_and_deploys_no_ecs(deployment: Assembly) -> None:
    for stack in deployment.templates:
        assert deployment.resources(stack, "AWS::ECS::Service") == []
        assert deployment.resources(stack, "AWS::ElasticLoadBalancingV2::LoadBalancer") == []
    research = "modelmeter-research"
    assert len(deployment.resources(research, "AWS::ApiGateway::RestApi")) == 1
    assert {f["Properties"].get("Handler") for f in deployment.resources(research, "AWS::Lambda::Function")} >= {
        "ingest.lambda_handler.handler"}
    assert deployment.config.unit("research").gateway.runtime == "lambda"


def test_switching_runtime_keeps_the_gateways_tables(containers: Assembly, deployment: Assembly) -> None:
    # The same construct path (Gateway/Tenants, Gateway/LongPoll) in both runtimes: the same tables after a switch.
    def tables(assembly: Assembly, stack: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in assembly.templates[stack]["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}

    lambda_tables, container_tables = tables(deployment, "modelmeter-research"), tables(containers, EDGE)
    assert set(lambda_tables) == set(container_tables) and len(container_tables) == 3
    for logical_id, table in container_tables.items():
        assert table["DeletionPolicy"] == "Retain"
        assert table["Properties"]["KeySchema"] == lambda_tables[logical_id]["Properties"]["KeySchema"]


def test_tasks_are_arm64_fargate_with_a_spool_volume_a_restart_policy_and_120_s_to_drain(
        containers: Assembly) -> None:
    (task,) = containers.resources(EDGE, "AWS::ECS::TaskDefinition")
    props = task["Properties"]
    assert (props["Cpu"], props["Memory"], props["EphemeralStorage"]) == ("1024", "2048", {"SizeInGiB": 21})
    assert props["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert props["RequiresCompatibilities"] == ["FARGATE"] and props["NetworkMode"] == "awsvpc"
    (container,) = props["ContainerDefinitions"]
    assert container["StopTimeout"] == STOP_TIMEOUT_SECONDS and container["ReadonlyRootFilesystem"] is True
    assert container["RestartPolicy"] == {"Enabled": True, "IgnoredExitCodes": [0], "RestartAttemptPeriod": 60}
    assert {"ContainerPath": SPOOL_PATH, "ReadOnly": False, "SourceVolume": "spool"} in container["MountPoints"]
    assert {v["Name"] for v in props["Volumes"]} == {"spool", "tmp"}
    assert "/healthz" in " ".join(container["HealthCheck"]["Command"])
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    (cluster,) = containers.resources(EDGE, "AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"]["ClusterSettings"]
    (service,) = containers.resources(EDGE, "AWS::ECS::Service")
    assert service["Properties"]["DesiredCount"] == 3
    assert service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert service["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True, "Rollback": True}


def test_the_task_environment_passes_the_containers_own_settings_validation(containers: Assembly) -> None:
    (task,) = containers.resources(EDGE, "AWS::ECS::TaskDefinition")
    (container,) = task["Properties"]["ContainerDefinitions"]
    # CloudFormation fills the Refs at deploy time; stand in a name for each so the shape can be checked now
    env = {e["Name"]: e["Value"] if isinstance(e["Value"], str) else f"resolved-{e['Name'].lower()}"
           for e in container["Environment"]}
    gateway = GatewaySettings.from_env({**env, "AWS_REGION": "eu-west-1"})
    settings = ContainerSettings.from_env(env)
    assert (gateway.business_unit, gateway.firehose_stream, gateway.spool_dir) == (
        "edge", "modelmeter-edge-usage", SPOOL_PATH)
    assert gateway.spend_table and gateway.alert_topic_arn and gateway.lake and gateway.alert_event_bus == "default"
    assert gateway.sagemaker_endpoints["llama-3-8b"]["endpoint_name"] == "llama-3-8b-instruct"
    assert settings.port == c.DEFAULT_CONTAINER_PORT
    assert settings.keep_alive_seconds > 1200  # edge's ALB idle timeout: the task never closes a connection first
    # in-flight calls, the app's shutdown, then the drain: all inside ECS's stopTimeout
    assert settings.graceful_seconds + APP_SHUTDOWN_SECONDS + settings.drain_seconds < STOP_TIMEOUT_SECONDS
    assert env[c.ENV_REPORTING_TZ] == "Europe/Berlin" and env["POWERTOOLS_SERVICE_NAME"] == c.SERVICE_GATEWAY


def test_an_internet_facing_alb_listens_on_https_only_with_its_certificate_and_logs_access(
        containers: Assembly) -> None:
    (alb,) = containers.resources(EDGE, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = _attributes(alb, "LoadBalancerAttributes")
    assert alb["Properties"]["Scheme"] == "internet-facing"
    assert attributes["idle_timeout.timeout_seconds"] == "1200"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true" and attributes["access_logs.s3.prefix"] == "alb/edge"
    (listener,) = containers.resources(EDGE, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Properties"]["Port"], listener["Properties"]["Protocol"]) == (443, "HTTPS")
    assert listener["Properties"]["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    assert listener["Properties"]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    # the access-log bucket admits ELB's log delivery for this account's prefix only
    containers.template(EDGE).has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {
        "Statement": Match.array_with([Match.object_like({
            "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}, "Action": "s3:PutObject",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}})])}})
    ingress = [r["Properties"] for r in containers.resources(EDGE, "AWS::EC2::SecurityGroup")
               if "load balancer" in r["Properties"]["GroupDescription"]][0]["SecurityGroupIngress"]
    assert [(i["CidrIp"], i["FromPort"]) for i in ingress] == [("0.0.0.0/0", 443)]


def test_an_internal_alb_stays_in_the_vpc_on_http_and_tasks_pull_their_image_through_ecr_endpoints(
        containers: Assembly) -> None:
    (alb,) = containers.resources(INSIDE, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert alb["Properties"]["Scheme"] == "internal"
    assert _attributes(alb, "LoadBalancerAttributes")["idle_timeout.timeout_seconds"] == "900"
    (listener,) = containers.resources(INSIDE, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Properties"]["Port"], listener["Properties"]["Protocol"]) == (80, "HTTP")
    ingress = [r["Properties"] for r in containers.resources(INSIDE, "AWS::EC2::SecurityGroup")
               if "load balancer" in r["Properties"]["GroupDescription"]][0]["SecurityGroupIngress"]
    assert [i["FromPort"] for i in ingress] == [80] and "CidrIp" in ingress[0]
    assert ingress[0]["CidrIp"] != "0.0.0.0/0"

    def ecr_endpoints(stack: str) -> list[str]:
        names = [json.dumps(r["Properties"]["ServiceName"])
                 for r in containers.resources(stack, "AWS::EC2::VPCEndpoint")]
        return sorted(n for n in names if ".ecr." in n)

    assert len(ecr_endpoints(INSIDE)) == 2 and ecr_endpoints(EDGE) == []  # edge pulls through its NAT


def test_target_group_checks_healthz_and_drains_streams_before_a_task_stops(containers: Assembly) -> None:
    (group,) = containers.resources(EDGE, "AWS::ElasticLoadBalancingV2::TargetGroup")
    props = group["Properties"]
    assert (props["Port"], props["Protocol"], props["TargetType"]) == (c.DEFAULT_CONTAINER_PORT, "HTTP", "ip")
    assert (props["HealthCheckPath"], props["Matcher"]) == ("/healthz", {"HttpCode": "200"})
    assert _attributes(group, "TargetGroupAttributes")["deregistration_delay.timeout_seconds"] == "300"


def _role_actions(assembly: Assembly, stack: str, role_id: str) -> set[str]:
    return {a for p in assembly.resources(stack, "AWS::IAM::Policy") if {"Ref": role_id} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"] for a in _actions(s)}


def _task_role_and_env(assembly: Assembly, stack: str) -> tuple[str, dict[str, Any]]:
    (task,) = assembly.resources(stack, "AWS::ECS::TaskDefinition")
    (container,) = task["Properties"]["ContainerDefinitions"]
    return task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0], {e["Name"]: e["Value"]
                                                                  for e in container["Environment"]}


def test_the_task_role_has_exactly_the_gateway_lambdas_grants(containers: Assembly, deployment: Assembly) -> None:
    role_id, env = _task_role_and_env(containers, EDGE)
    statements = [s for p in containers.resources(EDGE, "AWS::IAM::Policy") if {"Ref": role_id} in p["Properties"][
        "Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]
    # GIVEN the gateway Lambda's role in the Lambda runtime THEN the task role may do the same actions, no other,
    # except what only a Lambda needs: handing seed async calls to a worker invocation and its failures to a queue
    # (the on-failure destination's grant; a task runs them in-process)
    (gateway,) = [f for f in deployment.resources("modelmeter-research", "AWS::Lambda::Function")
                  if f["Properties"].get("Handler") == "ingest.lambda_handler.handler"]
    lambda_actions = _role_actions(deployment, "modelmeter-research", gateway["Properties"]["Role"]["Fn::GetAtt"][0])
    task_actions = _role_actions(containers, EDGE, role_id)
    assert task_actions <= lambda_actions and {"bedrock:InvokeModelWithResponseStream", "sns:Publish"} <= task_actions
    assert lambda_actions - task_actions <= {"lambda:InvokeFunction", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    # AND the hand-off queue, for what Firehose has not taken when the task stops (its storage goes with it)
    (send,) = [s for s in statements if _actions(s) == ["sqs:SendMessage"]]
    assert env[c.ENV_HANDOFF_QUEUE_URL] == {"Ref": send["Resource"]["Fn::GetAtt"][0]}
    # AND on the same resources: its own usage stream, the alert event only with modelmeter's source
    (put,) = [s for s in statements if "firehose:PutRecordBatch" in _actions(s)]
    (stream_id,) = [k for k, r in containers.templates[EDGE]["Resources"].items()
                    if r["Type"] == "AWS::KinesisFirehose::DeliveryStream"]
    assert put["Resource"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    (events,) = [s for s in statements if "events:PutEvents" in _actions(s)]
    assert events["Condition"] == {"StringEquals": {"events:source": c.ALERT_EVENT_SOURCE}}
    # AND on the spend counters only reads and atomic updates: never a delete or a scan
    counters = {"Fn::GetAtt": [env[c.ENV_SPEND_TABLE]["Ref"], "Arn"]}
    on_counters = {a for s in statements if counters in (s["Resource"] if isinstance(s["Resource"], list)
                                                          else [s["Resource"]]) for a in _actions(s)}
    assert on_counters == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}


def test_alarms_on_5xx_unhealthy_tasks_response_time_and_the_spool_notify_the_units_topic(
        containers: Assembly) -> None:
    alarms = {a["Properties"]["AlarmDescription"]: a["Properties"]
              for a in containers.resources(EDGE, "AWS::CloudWatch::Alarm")}
    (topic_id,) = [k for k, r in containers.templates[EDGE]["Resources"].items() if r["Type"] == "AWS::SNS::Topic"
                   and r["Properties"].get("DisplayName") == "modelmeter edge alarms"]
    wanted = ["gateway 5xx responses (load balancer or tasks)", "gateway tasks failing their health check",
              "gateway p90 time to first byte over 60 s", "usage events waiting in a gateway task's spool"]
    for text in wanted:
        (alarm,) = [a for d, a in alarms.items() if text in d]
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], text
    (spool,) = [a for d, a in alarms.items() if "spool" in d]
    assert spool["MetricName"] == c.METRIC_USAGE_EVENTS_SPOOLED and spool["Namespace"] == c.METRICS_NAMESPACE
    assert {d["Name"]: d["Value"] for d in spool["Dimensions"]} == {"service": c.SERVICE_GATEWAY,
                                                                     "business_unit": "edge"}
    # the spend alarms select on the same service dimension the container's gauges carry
    assert any("spend counters" in d for d in alarms)


def test_autoscaling_follows_cpu_and_requests_per_task_within_the_configured_bounds(containers: Assembly) -> None:
    (target,) = containers.resources(EDGE, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (2, 8)
    metrics = sorted(p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
        "PredefinedMetricType"] for p in containers.resources(EDGE, "AWS::ApplicationAutoScaling::ScalingPolicy"))
    assert metrics == ["ALBRequestCountPerTarget", "ECSServiceAverageCPUUtilization"]


def test_the_stack_outputs_the_load_balancers_url_as_the_gateway_url(containers: Assembly) -> None:
    (alb_id,) = [k for k, r in containers.templates[EDGE]["Resources"].items()
                 if r["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"]
    assert containers.templates[EDGE]["Outputs"]["ApiUrl"]["Value"] == {
        "Fn::Join": ["", ["https://", {"Fn::GetAtt": [alb_id, "DNSName"]}]]}
    assert json.dumps(containers.templates[INSIDE]["Outputs"]["ApiUrl"]["Value"]).startswith('{"Fn::Join": ["", ["http://"')


@pytest.mark.parametrize(("change", "message"), [
    ({"nat_gateways": 0}, "public subnets"),
    ({"gateway": {"runtime": "container", "container": {}}}, "certificate_arn"),
    ({"gateway": {"runtime": "container", "container": {"certificate_arn": CERTIFICATE, "cpu": 256,
                                                        "memory_mb": 4096}}}, "not a Fargate size for cpu 256"),
    ({"gateway": {"runtime": "container", "container": {"certificate_arn": CERTIFICATE, "min_tasks": 3,
                                                        "desired_tasks": 2}}}, "min_tasks <= desired_tasks"),
    ({"gateway": {"runtime": "ecs"}}, "gateway.runtime"),
])
def test_container_settings_are_validated_with_the_key_that_holds_the_problem(change: dict[str, Any],
                                                                              message: str) -> None:
    data = container_config_data()
    data["units"][0] |= change
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(data, source="units.yaml")


def test_the_commented_gateway_example_of_units_yaml_is_a_valid_container_unit() -> None:
    # GIVEN the sample file's commented `gateway:` block, uncommented into the research unit (with NAT: public subnets)
    text = DEFAULT_CONFIG.read_text()
    block = re.search(r"^    # gateway:\n(?:^    #   .*\n)+", text, re.MULTILINE)
    assert block, "units.yaml documents the gateway block"
    example = yaml.safe_load("\n".join(line.replace("    # ", "", 1) for line in block.group(0).splitlines()))
    data = sample_data()
    data["units"][0] |= {"nat_gateways": 1, **example}
    # THEN it validates as a container unit
    unit = parse_config(data, source="units.yaml").unit("research")
    assert unit.gateway.runtime == "container" and unit.gateway.container.certificate_arn


# --- the image's build context ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def context(containers: Assembly) -> Path:
    images = json.loads((containers.outdir / f"{EDGE}.assets.json").read_text())["dockerImages"]
    (image,) = [i for i in images.values() if i["source"]["dockerFile"] == CONTAINER_DOCKERFILE]
    assert image["source"]["platform"] == "linux/arm64"
    return containers.outdir / image["source"]["directory"]


def test_the_build_context_holds_the_gateways_packages_the_lock_file_and_the_dockerfile_only(context: Path) -> None:
    assert sorted(p.name for p in context.iterdir()) == sorted([*CONTAINER_PACKAGES, "infra", "requirements.lock"])
    assert [str(p.relative_to(context)) for p in (context / "infra").rglob("*") if p.is_file()] == [
        CONTAINER_DOCKERFILE]
    files = [p.relative_to(context) for p in context.rglob("*") if p.is_file()]
    leaks = [f for f in files if any(part.startswith(".") or part in ("__pycache__", "tests") for part in f.parts)
             or f.suffix == ".pyc"]
    assert leaks == []  # no .venv, .git, .env, caches or tests


def _dockerfile(context: Path) -> list[str]:
    text = (context / CONTAINER_DOCKERFILE).read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_dockerfile_copies_what_exists_runs_as_a_user_checks_health_and_stops_on_sigterm(context: Path) -> None:
    lines = _dockerfile(context)
    copied = [line.split()[1] for line in lines if line.startswith("COPY ")]
    assert copied and all((context / source).exists() for source in copied)
    assert lines[0] == "FROM python:3.11-slim"
    (user,) = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK ") and "/healthz" in line for line in lines)
    assert "STOPSIGNAL SIGTERM" in lines
    assert lines[-1] == 'CMD ["python", "-m", "ingest.container"]'
    (volume,) = [line for line in lines if line.startswith("VOLUME ")]
    assert json.loads(volume.removeprefix("VOLUME ")) == [SPOOL_PATH]


def _installed(lines: list[str]) -> set[str]:
    (pip,) = [line for line in lines if line.startswith("RUN pip install")]
    words = pip.split("&&")[0].split()[3:]
    return {_norm(w) for w in words if not w.startswith("-") and "/" not in w}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _closure(names: set[str]) -> set[str]:
    """Distributions ``pip install names`` brings, as this environment's metadata says (extras left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_the_image_installs_every_distribution_the_entry_point_imports_pinned_by_the_lock_file(
        context: Path) -> None:
    lines = _dockerfile(context)
    installed = _installed(lines)
    locked = {_norm(line.split("==")[0]) for line in (context / "requirements.lock").read_text().splitlines()
              if "==" in line}
    assert installed <= locked, installed - locked
    # WHEN the CMD's module is imported from the context alone (not the repo) THEN it imports
    # (what the interpreter loads before any import of ours, a venv's .pth hooks, is not the image's business)
    probe = ("import json, sys; before = {m.split('.')[0] for m in sys.modules}; import ingest.container; "
             "print(ingest.container.__file__); "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - before)))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=context, env={"PYTHONPATH": str(context),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    top_level = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "ingest" in top_level and done.stdout.startswith(str(context))
    # AND every third-party distribution it loaded is one the image's pip install brings
    owners = metadata.packages_distributions()
    loaded = {_norm(dist) for module in top_level - set(CONTAINER_PACKAGES) for dist in owners.get(module, [])}
    assert loaded - _closure(installed) == set()
