"""The gateway as containers (``gateway.runtime: container``): ECS Fargate tasks running ``python -m ingest.container``
behind an Application Load Balancer, with the same DynamoDB tables and the same grants as the gateway Lambda.

Why a second runtime: API Gateway's REST integration buffers a Lambda's response and cuts every call at 29 s, so
``/v1`` streams arrive whole at the end. Behind an ALB, uvicorn's chunks reach the client as they are written and a
call may last until the ALB's idle timeout (``idle_timeout_seconds``: the longest *silence*, not the longest call).

* **No API Gateway on this path**: no usage plans, no API Gateway keys, no stage throttle. The app checks every key
  against the tenant registry itself (as it does behind API Gateway), keys are made with ``modelmeter keys create
  --tenants dynamodb://TABLE``, and the registry's per-team limits (``requests_per_second``, ``daily_tokens``) and
  budgets are what throttles. The config's ``throttle``/``quota``/``keys`` of a team apply to the Lambda runtime only.
* **The spool** lives on the task's ephemeral storage (a bind-mount volume at :data:`SPOOL_PATH`): it survives a
  restart of the container inside the task (the restart policy below), not the task. A stopping task drains it within
  ``stopTimeout`` (120 s, Fargate's maximum) after the ALB has deregistered it (``deregistration_delay_seconds``).
* **Tables**: made by :func:`infra.constructs.gateway_api.gateway_table` under a construct with id ``Gateway``, as the
  Lambda runtime's are, so a unit that switches runtime keeps its tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from common import constants as c
from infra.config import ContainerGateway, SageMakerEndpoint, Team
from infra.constructs.gateway_api import BEDROCK_MODEL_ARNS, PRICES_PREFIX, TeamRecords, gateway_table
from infra.constructs.spend_controls import DEFAULT_EVENT_BUS, GATEWAY_COUNTER_ACTIONS, SpendControls
from infra.constructs.usage_handoff import UsageHandoff
from infra.nag import acknowledge, acknowledge_arn_wildcard, acknowledge_kms_grant, nag_ref, scoped_arn
from infra.runtime_code import REPO_ROOT

CONTAINER_DOCKERFILE = "infra/docker/container.Dockerfile"
#: What the image holds of the repo: the gateway's packages (ingest and what it may import), nothing else.
CONTAINER_PACKAGES = ("common", "ingest", "pricing_catalog")
# The build context (gitignore-like rules, as infra/runtime_code.py's): everything out, then the packages, the lock
# file and this Dockerfile back in, then their caches and tests out again. The venv, .git, the lake, cdk.out and any
# dotfile (.env, credentials) never enter it.
CONTAINER_EXCLUDE = [
    "*", ".*",
    *(rule for pkg in CONTAINER_PACKAGES for rule in (f"!{pkg}", f"!{pkg}/**")),
    "!requirements.lock", "!infra", "infra/*", "!infra/docker", "infra/docker/*", f"!{CONTAINER_DOCKERFILE}",
    "**/__pycache__", "**/*.pyc", "**/tests",
]
#: The spool's volume inside the task (the image's VOLUME, owned by its user, so the non-root process may write).
SPOOL_PATH = "/var/spool/modelmeter"
#: Seconds between SIGTERM and SIGKILL: Fargate's maximum. In-flight calls get GRACEFUL, the spool DRAIN of it.
STOP_TIMEOUT_SECONDS = 120
GRACEFUL_SECONDS = 30
DRAIN_SECONDS = 40
#: Events waiting in a task's spool for 15 minutes: Firehose is not taking them (a healthy spool empties each second).
SPOOLED_ALARM_EVENTS = 1000
_5MIN = Duration.minutes(5)


def container_image(root: str = str(REPO_ROOT)) -> ecs.ContainerImage:
    """The gateway's image (``container.Dockerfile``), built and pushed by ``cdk deploy``; synthesis only stages the
    context, so it needs no Docker."""
    return ecs.ContainerImage.from_asset(root, file=CONTAINER_DOCKERFILE, exclude=CONTAINER_EXCLUDE,
                                         platform=ecr_assets.Platform.LINUX_ARM64)


@jsii.implements(iam.IGrantable)
class GatewayContainer(Construct):
    """ALB → ECS Fargate service (``ingest.container``) + the gateway's DynamoDB tables and team seeds.

    Attributes:
        tenant_table, longpoll_table: the gateway's tables (as :class:`~infra.constructs.gateway_api.GatewayApi`'s).
        task_role: what the gateway may do in AWS (``grant_principal``).
        service, target_group, load_balancer: the ECS service and its ALB.
        url: the gateway's base URL (``https://`` with a certificate, else ``http://``; the ALB's DNS name).
        alarms: ``gateway_5xx``, ``unhealthy_tasks``, ``response_time``, ``usage_spooled``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, key: kms.IKey, teams: Sequence[Team],
                 sagemaker_endpoints: Mapping[str, SageMakerEndpoint], settings: ContainerGateway,
                 internet_facing: bool, vpc: ec2.IVpc, task_subnets: ec2.SubnetSelection, access_logs: s3.IBucket,
                 image_endpoints: bool, environment: Mapping[str, str] | None = None) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self.tenant_table = gateway_table(self, "Tenants", key, pitr=True)
        self.longpoll_table = gateway_table(self, "LongPoll", key, pitr=True)
        self.team_records = TeamRecords(self, "TeamRecords", unit_name=unit_name, table=self.tenant_table, key=key,
                                        teams=teams)
        self.task_role = iam.Role(self, "TaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                                  description=f"modelmeter gateway tasks of unit {unit_name}")
        self.tenant_table.grant_read_write_data(self.task_role)
        self.longpoll_table.grant_read_write_data(self.task_role)
        acknowledge_kms_grant(self.task_role)
        self._grant_models(sagemaker_endpoints)
        if image_endpoints:
            self._image_endpoints(vpc, task_subnets)
        # The task keeps idle connections open longer than the ALB does (else the ALB may reuse one just closed).
        self.container = self._task(unit_name, settings, {
            c.ENV_KEEPALIVE_SECONDS: str(settings.idle_timeout_seconds + 5),
            c.ENV_TENANT_TABLE: self.tenant_table.table_name, c.ENV_LONGPOLL_TABLE: self.longpoll_table.table_name,
            c.ENV_BUSINESS_UNIT: unit_name, **_sagemaker_env(sagemaker_endpoints), **(environment or {})})
        self.service = self._service(vpc, task_subnets, settings)
        self.load_balancer, self.target_group, self.url = self._load_balancer(
            unit_name, settings, internet_facing=internet_facing, vpc=vpc, task_subnets=task_subnets,
            access_logs=access_logs)
        self._autoscale(settings)
        self.alarms = self._alarms(unit_name)

    # --- IGrantable and the wiring the stack does -----------------------------------------------------------

    @property
    def grant_principal(self) -> iam.IPrincipal:
        return self.task_role

    def add_to_role_policy(self, statement: iam.PolicyStatement) -> None:
        self.task_role.add_to_policy(statement)

    def add_environment(self, name: str, value: str) -> None:
        self.container.add_environment(name, value)

    def read_prices(self, bucket: s3.IBucket) -> None:
        """``cost_usd`` from the lake's published catalog: read access to its ``pricing/`` prefix only."""
        self.add_environment(c.ENV_LAKE, f"s3://{bucket.bucket_name}")
        bucket.grant_read(self.task_role, f"{PRICES_PREFIX}/*")
        acknowledge(self.task_role, f"AwsSolutions-IAM5[Resource::{nag_ref(bucket)}/{PRICES_PREFIX}/*]",
                    "The gateway reads the price catalog's versions (any version id) under the lake's pricing/ prefix.")
        for action in ("s3:GetObject*", "s3:GetBucket*", "s3:List*"):
            acknowledge(self.task_role, f"AwsSolutions-IAM5[Action::{action}]",
                        "CDK's S3 read grant actions, scoped to the lake bucket's pricing/ prefix.")

    def attach_spend(self, spend: SpendControls) -> None:
        """The fleet-wide counters, the budget-alert topic and event: what ``SpendControls.attach_gateway`` grants
        the Lambda, granted to the task role."""
        spend.table.grant(self.task_role, *GATEWAY_COUNTER_ACTIONS)
        self._key.grant_encrypt_decrypt(self.task_role)
        spend.topic.grant_publish(self.task_role)
        self.add_to_role_policy(iam.PolicyStatement(
            actions=["events:PutEvents"], resources=[spend.event_bus_arn],
            conditions={"StringEquals": {"events:source": c.ALERT_EVENT_SOURCE}}))
        self.add_environment(c.ENV_SPEND_TABLE, spend.table.table_name)
        self.add_environment(c.ENV_ALERT_TOPIC_ARN, spend.topic.topic_arn)
        self.add_environment(c.ENV_ALERT_EVENT_BUS, DEFAULT_EVENT_BUS)

    def attach_handoff(self, handoff: UsageHandoff) -> None:
        """The Lambda's hand-off queue, for what Firehose has not taken when a task stops (its storage goes with it):
        what ``UsageHandoff.attach_gateway`` grants the Lambda (``sqs:SendMessage`` on the queue, its key)."""
        self.add_to_role_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[handoff.queue.queue_arn]))
        self._key.grant(self.task_role, "kms:GenerateDataKey", "kms:Decrypt")
        self.add_environment(c.ENV_HANDOFF_QUEUE_URL, handoff.queue.queue_url)

    def add_widgets(self, dashboard: cloudwatch.Dashboard) -> None:
        """The gateway's row of the unit's dashboard: requests and errors, response time."""
        lb, tg = self.load_balancer.metrics, self.target_group.metrics
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Gateway requests and errors (ALB)", width=12, left=[
                lb.request_count(period=_5MIN), tg.http_code_target(elbv2.HttpCodeTarget.TARGET_4XX_COUNT,
                                                                    period=_5MIN),
                tg.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=_5MIN)]),
            cloudwatch.GraphWidget(title="Gateway response time (p90) and healthy tasks", width=12,
                                   left=[tg.target_response_time(period=_5MIN, statistic="p90")],
                                   right=[tg.healthy_host_count(period=_5MIN)]))

    # --- the parts ------------------------------------------------------------------------------------------

    def _grant_models(self, sagemaker_endpoints: Mapping[str, SageMakerEndpoint]) -> None:
        # The gateway Lambda's model grants (GatewayApi._grant_models), for the task role: models are chosen per
        # request and checked against the team's allowed_models, so the model part of each ARN is a wildcard.
        for template in BEDROCK_MODEL_ARNS:
            acknowledge_arn_wildcard(self.task_role, template,
                                     "Models are chosen per request and checked against the team's allowed_models.")
        self.add_to_role_policy(iam.PolicyStatement(
            actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
            resources=[scoped_arn(self, t) for t in BEDROCK_MODEL_ARNS]))
        self.add_to_role_policy(iam.PolicyStatement(actions=["bedrock:ListFoundationModels"], resources=["*"]))
        acknowledge(self.task_role, "AwsSolutions-IAM5[Resource::*]",
                    "bedrock:ListFoundationModels supports no resource-level permission.")
        if sagemaker_endpoints:
            self.add_to_role_policy(iam.PolicyStatement(
                actions=["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"],
                resources=[scoped_arn(self, "arn:{partition}:sagemaker:{region}:{account}:endpoint/")
                           + e.endpoint_name.lower() for e in sagemaker_endpoints.values()]))

    def _image_endpoints(self, vpc: ec2.IVpc, subnets: ec2.SubnetSelection) -> None:
        # Without NAT the tasks pull their image through ECR's endpoints (layers come from S3: the VPC's gateway
        # endpoint). The Network's other interface endpoints (logs, Firehose, Bedrock …) serve the tasks as they
        # serve the Lambdas.
        sg = ec2.SecurityGroup(self, "EcrEndpointSg", vpc=vpc, allow_all_outbound=False,
                               description="modelmeter ECR endpoints: HTTPS from inside the VPC")
        sg.add_ingress_rule(ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(443), "HTTPS from VPC")
        acknowledge(sg, "AwsSolutions-EC23", "Ingress is the VPC's own CIDR (443), not 0.0.0.0/0.")
        for name, service in (("EcrApi", ec2.InterfaceVpcEndpointAwsService.ECR),
                              ("EcrDocker", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER)):
            ec2.InterfaceVpcEndpoint(self, name, vpc=vpc, service=service, private_dns_enabled=True,
                                     subnets=subnets, security_groups=[sg])

    def _task(self, unit_name: str, settings: ContainerGateway, env: Mapping[str, str]) -> ecs.ContainerDefinition:
        task = ecs.FargateTaskDefinition(
            self, "Task", cpu=settings.cpu, memory_limit_mib=settings.memory_mb, task_role=self.task_role,
            ephemeral_storage_gib=settings.ephemeral_storage_gib, family=f"modelmeter-{unit_name}-gateway",
            runtime_platform=ecs.RuntimePlatform(cpu_architecture=ecs.CpuArchitecture.ARM64,
                                                 operating_system_family=ecs.OperatingSystemFamily.LINUX))
        task.add_volume(name="spool")  # a bind mount on the task's ephemeral storage
        task.add_volume(name="tmp")    # the root file system is read-only; libraries may still want /tmp
        logs_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.THREE_MONTHS,
                                   removal_policy=RemovalPolicy.DESTROY)
        port = c.DEFAULT_CONTAINER_PORT
        container = task.add_container(
            "Gateway", image=container_image(), essential=True, readonly_root_filesystem=True,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="gateway", log_group=logs_group),
            port_mappings=[ecs.PortMapping(container_port=port, name="http")],
            stop_timeout=Duration.seconds(STOP_TIMEOUT_SECONDS),
            # A crashed process restarts in the same task, on the same spool volume: it re-sends what is left there.
            enable_restart_policy=True, restart_ignored_exit_codes=[0], restart_attempt_period=Duration.seconds(60),
            health_check=ecs.HealthCheck(command=["CMD", "python", "-c", (
                f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=4)")],
                interval=Duration.seconds(15), timeout=Duration.seconds(5), retries=3,
                start_period=Duration.seconds(30)),
            environment={
                "POWERTOOLS_SERVICE_NAME": c.SERVICE_GATEWAY, "POWERTOOLS_METRICS_NAMESPACE": c.METRICS_NAMESPACE,
                c.ENV_PORT: str(port), c.ENV_SPOOL_DIR: SPOOL_PATH, c.ENV_GRACEFUL_SECONDS: str(GRACEFUL_SECONDS),
                c.ENV_DRAIN_SECONDS: str(DRAIN_SECONDS), **env})
        container.add_mount_points(ecs.MountPoint(container_path=SPOOL_PATH, source_volume="spool", read_only=False),
                                   ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))  # noqa: S108
        acknowledge(task, "AwsSolutions-ECS2", "The environment holds resource names and tuning (tables, stream, "
                                               "topic, port), no secret: API keys are hashed in the tenant table.")
        if task.execution_role is not None:
            acknowledge(task.execution_role, "AwsSolutions-IAM5[Resource::*]",
                        "CDK's execution-role grant of ecr:GetAuthorizationToken, which has no resource-level "
                        "permission.")
        return container

    def _service(self, vpc: ec2.IVpc, subnets: ec2.SubnetSelection,
                 settings: ContainerGateway) -> ecs.FargateService:
        cluster = ecs.Cluster(self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
        sg = ec2.SecurityGroup(self, "TaskSg", vpc=vpc, allow_all_outbound=False,
                               description="modelmeter gateway tasks: from the ALB in, HTTPS out")
        # HTTPS out to the VPC endpoints (and NAT when configured), as the Lambdas' group allows.
        sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS out")
        return ecs.FargateService(
            self, "Service", cluster=cluster, task_definition=self.container.task_definition,
            desired_count=settings.desired_tasks, min_healthy_percent=100, max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True), vpc_subnets=subnets,
            security_groups=[sg], assign_public_ip=False, health_check_grace_period=Duration.seconds(60))

    def _load_balancer(self, unit_name: str, settings: ContainerGateway, *, internet_facing: bool, vpc: ec2.IVpc,
                       task_subnets: ec2.SubnetSelection, access_logs: s3.IBucket
                       ) -> tuple[elbv2.ApplicationLoadBalancer, elbv2.ApplicationTargetGroup, str]:
        https = settings.certificate_arn is not None
        port = 443 if https else 80
        sg = ec2.SecurityGroup(self, "AlbSg", vpc=vpc, allow_all_outbound=False,
                               description=f"modelmeter {unit_name} gateway load balancer")
        peer = ec2.Peer.any_ipv4() if internet_facing else ec2.Peer.ipv4(vpc.vpc_cidr_block)
        sg.add_ingress_rule(peer, ec2.Port.tcp(port), "gateway clients")
        acknowledge(sg, "AwsSolutions-EC23",
                    "The gateway's clients: anywhere, over HTTPS, for an internet-facing unit (each call carries an "
                    "API key the app checks); the VPC's own CIDR for an internal one.")
        alb = elbv2.ApplicationLoadBalancer(
            self, "Alb", vpc=vpc, internet_facing=internet_facing, security_group=sg,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC) if internet_facing else task_subnets,
            idle_timeout=Duration.seconds(settings.idle_timeout_seconds), drop_invalid_header_fields=True,
            http2_enabled=True)
        _log_access(alb, access_logs, prefix=f"alb/{unit_name}")
        if https:
            listener = alb.add_listener("Https", port=443, protocol=elbv2.ApplicationProtocol.HTTPS,
                                        ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS, open=False,
                                        certificates=[elbv2.ListenerCertificate.from_arn(
                                            settings.certificate_arn or "")])
        else:
            # Only an internal load balancer may listen on HTTP (the config refuses a public one without a
            # certificate): traffic stays in the VPC.
            listener = alb.add_listener("Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP, open=False)
        target_group = listener.add_targets(
            "Tasks", port=c.DEFAULT_CONTAINER_PORT, protocol=elbv2.ApplicationProtocol.HTTP, targets=[self.service],
            deregistration_delay=Duration.seconds(settings.deregistration_delay_seconds),
            health_check=elbv2.HealthCheck(path="/healthz", healthy_http_codes="200", interval=Duration.seconds(15),
                                           timeout=Duration.seconds(5), healthy_threshold_count=2,
                                           unhealthy_threshold_count=3))
        url = f"{'https' if https else 'http'}://{alb.load_balancer_dns_name}"
        return alb, target_group, url

    def _autoscale(self, settings: ContainerGateway) -> None:
        scaling = self.service.auto_scale_task_count(min_capacity=settings.min_tasks,
                                                     max_capacity=settings.max_tasks)
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=settings.target_cpu_percent)
        scaling.scale_on_request_count("Requests", requests_per_target=settings.requests_per_task,
                                       target_group=self.target_group)

    def _alarms(self, unit_name: str) -> dict[str, cloudwatch.Alarm]:
        lb, tg = self.load_balancer.metrics, self.target_group.metrics
        errors = cloudwatch.MathExpression(
            expression="FILL(elb, 0) + FILL(target, 0)", label="5xx responses", period=_5MIN, using_metrics={
                "elb": lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=_5MIN, statistic="Sum"),
                "target": tg.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=_5MIN,
                                              statistic="Sum")})
        spooled = cloudwatch.Metric(namespace=c.METRICS_NAMESPACE, metric_name=c.METRIC_USAGE_EVENTS_SPOOLED,
                                    statistic="Maximum", period=_5MIN,
                                    dimensions_map={"service": c.SERVICE_GATEWAY, "business_unit": unit_name})
        return {
            "gateway_5xx": self._alarm("Gateway5xx", errors, 5, 1,
                                       f"modelmeter {unit_name}: gateway 5xx responses (load balancer or tasks)"),
            "unhealthy_tasks": self._alarm("UnhealthyTasks", tg.unhealthy_host_count(period=_5MIN,
                                                                                   statistic="Maximum"), 1, 2,
                                           f"modelmeter {unit_name}: gateway tasks failing their health check"),
            "response_time": self._alarm("ResponseTime", tg.target_response_time(period=_5MIN, statistic="p90"),
                                         60, 3, f"modelmeter {unit_name}: gateway p90 time to first byte over 60 s"),
            "usage_spooled": self._alarm("UsageSpooled", spooled, SPOOLED_ALARM_EVENTS, 3,
                                         f"modelmeter {unit_name}: usage events waiting in a gateway task's spool "
                                         "for 15 minutes (Firehose is not taking them)"),
        }

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, threshold: float, periods: int,
               description: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self, construct_id, metric=metric, threshold=threshold, evaluation_periods=periods,
            alarm_description=description, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD)


def _sagemaker_env(sagemaker_endpoints: Mapping[str, SageMakerEndpoint]) -> dict[str, str]:
    # As the Lambda gets it (GatewayApi): {model id: {endpoint_name, inference_component?, api}}.
    return {c.ENV_SAGEMAKER_ENDPOINTS: json.dumps({m: e.model_dump(exclude_none=True)
                                                   for m, e in sorted(sagemaker_endpoints.items())},
                                                  separators=(",", ":"))}


def _log_access(alb: elbv2.ApplicationLoadBalancer, bucket: s3.IBucket, *, prefix: str) -> None:
    """ALB access logs into ``bucket`` under ``prefix``, in an environment-agnostic stack too.

    CDK's ``log_access_logs`` needs a concrete region to pick the legacy per-region ELB account
    (aws/aws-cdk#27432); the log delivery service principal, which Elastic Load Balancing documents for every
    region, needs none. So the attributes and the bucket policy are set here, limited to this account's ALBs.
    """
    alb.set_attribute("access_logs.s3.enabled", "true")
    alb.set_attribute("access_logs.s3.bucket", bucket.bucket_name)
    alb.set_attribute("access_logs.s3.prefix", prefix)
    account = Stack.of(alb).account
    bucket.add_to_resource_policy(iam.PolicyStatement(
        principals=[iam.ServicePrincipal("logdelivery.elasticloadbalancing.amazonaws.com")],
        actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{prefix}/AWSLogs/{account}/*")],
        conditions={"StringEquals": {"aws:SourceAccount": account}}))
    if bucket.policy is not None:
        alb.node.add_dependency(bucket.policy)  # ELB checks that it may write when the attribute is set
