"""The deployment config (``infra/config/units.yaml``): business units, their teams, keys and schedules.

Only ``app.py`` reads it; constructs receive the typed pieces they need as keyword arguments. Every problem is
reported with the path of the key that holds it (``units[1].teams[0].quota.limit: …``) and the file name, so a
platform engineer can fix the file without reading this code.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.contracts import BUDGET_MODES, alert_at_problem, team_id_problem

DEFAULT_CONFIG = Path(__file__).parent / "config" / "units.yaml"

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
# EventBridge schedule expressions: rate(5 minutes) or a six-field cron(…).
_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\((\S+ ){5}\S+\))$")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name: use 2-32 lower-case letters, digits and dashes, "
                         "starting with a letter")
    return value


#: Unit and key names: they become parts of stack, usage-plan and key names.
Name = Annotated[str, AfterValidator(_check_name)]


def _check_team_id(value: str) -> str:
    problem = team_id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


#: Team ids follow the one rule of the contract (common.contracts.team_id_problem).
TeamId = Annotated[str, AfterValidator(_check_team_id)]


class ConfigError(ValueError):
    """The deployment config is not valid; the message lists every problem, one per line, with its key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Throttle(_Strict):
    """API Gateway throttling: steady-state requests per second and burst size."""

    rate: float = Field(gt=0, description="Steady-state requests per second.")
    burst: int = Field(gt=0, description="Largest burst of concurrent requests.")


class Quota(_Strict):
    """Usage-plan quota: at most ``limit`` requests per ``period``."""

    limit: int = Field(gt=0, description="Requests allowed per period.")
    period: Literal["DAY", "WEEK", "MONTH"] = Field(default="MONTH", description="Quota period.")


class Team(_Strict):
    """A tenant of the gateway: its API keys, usage plan and allowed models."""

    team_id: TeamId = Field(description="Team id, as it appears in usage events.")
    cost_center: str | None = Field(default=None, description="Cost centre that receives the team's charges.")
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, description="Monthly budget, USD (budget views).")
    budget_mode: str | None = Field(
        default=None, description="What the budget does at the gateway: alert only, or also refuse calls once reached.")
    alert_at: list[int] | None = Field(default=None, min_length=1,
                                       description="Alert thresholds, percent of the monthly budget (1-1000).")
    keys: list[Name] = Field(
        default_factory=lambda: ["default"], min_length=1, description="Names of the team's API keys.")
    throttle: Throttle = Field(description="Usage-plan throttle of the team.")
    quota: Quota | None = Field(default=None, description="Usage-plan quota of the team; none = unlimited.")
    allowed_models: list[str] = Field(default_factory=lambda: ["*"], min_length=1,
                                      description="Model-id glob patterns the team may invoke.")

    @field_validator("budget_mode")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        if value is not None and value not in BUDGET_MODES:
            raise ValueError(f"{value!r} is not a budget mode: use {' or '.join(BUDGET_MODES)}")
        return value

    @field_validator("alert_at")
    @classmethod
    def _thresholds(cls, values: list[int] | None) -> list[int] | None:
        problem = alert_at_problem(tuple(values)) if values is not None else None
        if problem:
            raise ValueError(problem)
        return sorted(set(values)) if values is not None else None

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, keys: list[str]) -> list[str]:
        dupes = sorted(k for k, n in Counter(keys).items() if n > 1)
        if dupes:
            raise ValueError(f"key names must be unique within a team: {', '.join(dupes)} repeated")
        return keys


class SageMakerEndpoint(_Strict):
    """A SageMaker endpoint the gateway may invoke for a model id."""

    endpoint_name: str = Field(min_length=1, max_length=63, description="SageMaker endpoint name.")
    inference_component: str | None = Field(default=None, description="Inference component on that endpoint, if any.")
    api: Literal["messages", "jumpstart"] = Field(
        default="messages", description="Payload the endpoint speaks: messages (OpenAI-style chat) or jumpstart.")


class Api(_Strict):
    """The unit's REST API."""

    endpoint: Literal["regional", "private"] = Field(default="regional", description="API Gateway endpoint type.")
    throttle: Throttle = Field(description="Stage-wide throttle (all teams together).")
    lambda_timeout_seconds: int = Field(
        default=300, ge=30, le=900,
        description="Timeout of the gateway Lambda, seconds: what a seed async call's model call may take in its "
                    "worker invocation (API Gateway still answers a synchronous call within 29 s).")


def _check_schedule(value: str) -> str:
    if not _SCHEDULE.match(value):
        raise ValueError(f"{value!r} is not an EventBridge schedule: write rate(1 hour) or cron(15 * * * ? *)")
    return value


class GlueJob(_Strict):
    """The Glue 5.0 job of ``engine: glue`` (Spark; docs/transform.md, "Engines")."""

    worker_type: Literal["G.1X", "G.2X", "G.4X", "G.8X"] = Field(
        default="G.1X", description="Glue worker type (G.1X: 4 vCPU, 16 GB each).")
    workers: int = Field(default=2, ge=2, le=100, description="Workers of a run (one of them is the driver).")
    timeout_minutes: int = Field(default=120, ge=5, le=2880, description="A run is stopped (and alarms) after this.")


class Transform(_Strict):
    """The scheduled transform (validate → quarantine → dedupe → price → write)."""

    schedule: str = Field(default="cron(15 * * * ? *)", description="EventBridge schedule expression.")
    engine: Literal["duckdb", "glue"] = Field(
        default="duckdb", description="duckdb (in the Lambda: a day up to ~10 M events) or glue (Spark on AWS Glue "
                                      "5.0, for days that outgrow one Lambda).")
    glue: GlueJob = Field(default_factory=GlueJob, description="Workers and timeout of the Glue job (engine glue).")
    memory_mb: int = Field(default=3008, ge=512, le=10240, description="Lambda memory of the transform.")
    timeout_minutes: int = Field(default=15, ge=1, le=15, description="Lambda timeout of the transform.")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return _check_schedule(value)


class Billing(_Strict):
    """The scheduled import of the AWS bill: the payer account's CUR 2.0 Data Export, delivered into the lake bucket
    under ``billing/exports/``, imported into snapshots and reconciled (docs/finance.md; the export's steps in
    docs/deploy.md). Off by default: the export is created in the payer account."""

    enabled: bool = Field(default=False, description="Deploy the export's bucket policy and the scheduled import.")
    payer_account: str | None = Field(
        default=None, description="AWS account that creates the Data Export (the payer, or management, account).")
    export_name: str = Field(default="modelmeter-cur2", description="Name of the Data Export, as created.")
    schedule: str = Field(default="rate(6 hours)", description="EventBridge schedule of the import.")
    include_tax: bool = Field(default=False, description="Reconcile Tax lines too (as non_usage).")
    memory_mb: int = Field(default=2048, ge=512, le=10240, description="Lambda memory of the import.")
    timeout_minutes: int = Field(default=15, ge=1, le=15, description="Lambda timeout of the import.")

    @field_validator("payer_account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{12}", value):
            raise ValueError(f"{value!r} is not an AWS account id: write its 12 digits, in quotes")
        return value

    @field_validator("export_name")
    @classmethod
    def _export_name(cls, value: str) -> str:
        # Data Exports' own rule for an export's name (API Export.Name: [0-9A-Za-z\-_]+, 1 to 128 characters)
        if not re.fullmatch(r"[0-9A-Za-z_-]{1,128}", value):
            raise ValueError(f"{value!r} is not a Data Exports name: use 1-128 letters, digits, '-' and '_'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return _check_schedule(value)

    @model_validator(mode="after")
    def _payer_when_enabled(self) -> Billing:
        if self.enabled and self.payer_account is None:
            raise ValueError("enabled billing needs payer_account: the account whose Data Export delivers the bill")
        return self


class Lake(_Strict):
    """Retention of the lake's prefixes."""

    raw_retention_days: int = Field(default=400, ge=1, description="Days raw events are kept (after that, deleted).")
    infrequent_access_after_days: int = Field(default=30, ge=30, description="Days before objects go to Standard-IA.")
    athena_bytes_scanned_cutoff_mb: int = Field(default=10_240, ge=10, description="Per-query scan limit, MB.")


class QuickSight(_Strict):
    """QuickSight data source, datasets and dashboard (off by default: it needs a QuickSight subscription)."""

    enabled: bool = Field(default=False, description="Deploy the QuickSight assets.")
    principals: list[str] = Field(default_factory=list,
                                  description="QuickSight user/group ARNs that own the assets and see every team.")
    rls_principals: dict[str, list[str]] = Field(
        default_factory=dict, description="Team leads: QuickSight user/group ARN → team ids they may see.")

    @model_validator(mode="after")
    def _principals_when_enabled(self) -> QuickSight:
        if self.enabled and not self.principals:
            raise ValueError("enabled QuickSight needs at least one principal (a QuickSight user or group ARN)")
        for arn in [*self.principals, *self.rls_principals]:
            if not arn.startswith("arn:aws") or ":quicksight:" not in arn:
                raise ValueError(f"{arn!r} is not a QuickSight user or group ARN")
        return self


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class BudgetAlerts(_Strict):
    """Who hears of budget alerts: subscriptions of the unit's budget-alert SNS topic (none by default; the topic and
    its EventBridge event exist either way, so a platform can route them with its own rules)."""

    email: list[str] = Field(default_factory=list, description="E-mail addresses subscribed (each confirms once).")
    https: list[str] = Field(default_factory=list, description="HTTPS endpoints subscribed (each confirms once).")

    @field_validator("email")
    @classmethod
    def _emails(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _EMAIL.match(value):
                raise ValueError(f"{value!r} is not an e-mail address")
        return values

    @field_validator("https")
    @classmethod
    def _urls(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.match(r"^https://[^\s/]+", value):
                raise ValueError(f"{value!r} is not an https:// URL (SNS confirms HTTPS subscriptions only over TLS)")
        return values


#: Fargate's CPU units and the memory each allows (MiB): AWS's table of valid task sizes (Linux).
FARGATE_MEMORY_MB: dict[int, range] = {256: range(512, 2049, 512), 512: range(1024, 4097, 1024),
                                       1024: range(2048, 8193, 1024), 2048: range(4096, 16385, 1024),
                                       4096: range(8192, 30721, 1024)}


class ContainerGateway(_Strict):
    """The gateway as ECS Fargate tasks behind an Application Load Balancer (``gateway.runtime: container``)."""

    cpu: Literal[256, 512, 1024, 2048, 4096] = Field(default=1024, description="Fargate CPU units of a task.")
    memory_mb: int = Field(default=2048, description="Memory of a task, MiB (a size Fargate allows for the CPU).")
    desired_tasks: int = Field(default=2, ge=1, le=100, description="Tasks at deploy time.")
    min_tasks: int = Field(default=2, ge=1, le=100, description="Fewest tasks autoscaling keeps.")
    max_tasks: int = Field(default=6, ge=1, le=100, description="Most tasks autoscaling starts.")
    target_cpu_percent: int = Field(default=60, ge=10, le=90, description="Autoscaling target: average CPU, %.")
    requests_per_task: int = Field(default=600, ge=1, description="Autoscaling target: requests per task a minute.")
    certificate_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$",
        description="ACM certificate of the HTTPS listener; none: an HTTP listener (inside a VPC only).")
    idle_timeout_seconds: int = Field(default=900, ge=60, le=4000,
                                      description="ALB idle timeout: the longest silence within a stream, seconds.")
    deregistration_delay_seconds: int = Field(
        default=300, ge=0, le=3600, description="Seconds a stopping task keeps serving its open streams.")
    ephemeral_storage_gib: int = Field(default=21, ge=21, le=200,
                                       description="Fargate ephemeral storage of a task (holds the spool), GiB.")

    @model_validator(mode="after")
    def _sizes(self) -> ContainerGateway:
        if self.memory_mb not in FARGATE_MEMORY_MB[self.cpu]:
            allowed = FARGATE_MEMORY_MB[self.cpu]
            raise ValueError(f"memory_mb {self.memory_mb} is not a Fargate size for cpu {self.cpu}: use "
                             f"{allowed.start} to {allowed[-1]} in steps of {allowed.step}")
        if not self.min_tasks <= self.desired_tasks <= self.max_tasks:
            raise ValueError(f"tasks must satisfy min_tasks <= desired_tasks <= max_tasks (got {self.min_tasks}, "
                             f"{self.desired_tasks}, {self.max_tasks})")
        return self


class Gateway(_Strict):
    """Where the gateway runs: Lambda behind API Gateway (the seed's shape, the default), or containers behind an ALB
    (real SSE, no 29 s limit; docs/aws-runtime.md, "Container runtime")."""

    runtime: Literal["lambda", "container"] = Field(
        default="lambda", description="lambda (API Gateway + Lambda) or container (ALB + ECS Fargate).")
    container: ContainerGateway = Field(default_factory=ContainerGateway,
                                        description="Tasks, load balancer and scaling of the container runtime.")


class FullUnit(_Strict):
    """A business unit with its own network, gateway, lake, transform, analytics and dashboards."""

    kind: Literal["full"] = "full"
    name: Name = Field(description="Unit name; prefixes the stack and is the events' business_unit.")
    account: str | None = Field(default=None, pattern=r"^\d{12}$", description="AWS account (optional: env-agnostic).")
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="AWS region (optional).")
    vpc_cidr: str = Field(description="CIDR of the unit's VPC.")
    nat_gateways: int = Field(default=0, ge=0, le=3, description="NAT gateways (0: AWS services via endpoints only).")
    api: Api
    teams: list[Team] = Field(min_length=1)
    sagemaker_endpoints: dict[str, SageMakerEndpoint] = Field(default_factory=dict,
                                                              description="Model id → SageMaker endpoint.")
    transform: Transform = Field(default_factory=Transform)
    reporting_timezone: str = Field(default="UTC", description="IANA time zone of reports and dashboards.")
    fiscal_month_start_day: int = Field(default=1, ge=1, le=28, description="Day fiscal months start (1 = calendar).")
    lake: Lake = Field(default_factory=Lake)
    quicksight: QuickSight = Field(default_factory=QuickSight)
    billing: Billing = Field(default_factory=Billing)
    budget_alerts: BudgetAlerts = Field(default_factory=BudgetAlerts)
    lambda_package: Literal["zip", "image"] = Field(
        default="zip", description="zip (code asset + dependency layers) or image (built by cdk deploy).")
    dependency_layer_arns: list[Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:lambda:")]] = Field(
        default_factory=list, description="Lambda layers holding the third-party dependencies (docs/deploy.md).")
    gateway: Gateway = Field(default_factory=Gateway, description="Where the gateway runs (lambda or container).")

    @model_validator(mode="after")
    def _public_load_balancer_needs_public_subnets(self) -> FullUnit:
        if self.gateway.runtime == "container" and self.api.endpoint == "regional" and not self.nat_gateways:
            raise ValueError("gateway.runtime container with api.endpoint regional puts the load balancer in public "
                             "subnets, which the VPC has only with nat_gateways >= 1 (or set api.endpoint: private "
                             "for an internal load balancer)")
        if (self.gateway.runtime == "container" and self.api.endpoint == "regional"
                and self.gateway.container.certificate_arn is None):
            raise ValueError("gateway.runtime container with api.endpoint regional is reachable from the internet: "
                             "set gateway.container.certificate_arn (an ACM certificate) so API keys travel over "
                             "HTTPS, or set api.endpoint: private")
        return self

    @model_validator(mode="after")
    def _layers_need_zip(self) -> FullUnit:
        if self.dependency_layer_arns and self.lambda_package == "image":
            raise ValueError("dependency_layer_arns apply to zip functions only: an image carries its dependencies "
                             "(remove the layers, or set lambda_package: zip)")
        return self

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a CIDR block ({exc})") from None
        if net.version != 4 or not 16 <= net.prefixlen <= 24:
            raise ValueError(f"{value!r} must be an IPv4 block between /16 and /24")
        return value

    @field_validator("reporting_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (like Europe/Berlin or UTC)") from None
        return value


class ApiKeysOnlyUnit(_Strict):
    """A unit that only adds teams (keys and usage plans) to a parent unit's API (the seed's API-key deployment)."""

    kind: Literal["api_keys_only"]
    name: Name
    parent: Name = Field(description="Name of the full unit whose API the keys attach to.")
    teams: list[Team] = Field(min_length=1)


Unit = Annotated[FullUnit | ApiKeysOnlyUnit, Field(discriminator="kind")]


class DeploymentConfig(_Strict):
    """Every business unit of one deployment."""

    units: list[Unit] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> DeploymentConfig:
        names = [u.name for u in self.units]
        dupes = sorted(n for n, c in Counter(names).items() if c > 1)
        if dupes:
            raise ValueError(f"unit names must be unique: {', '.join(dupes)} repeated")
        full = {u.name: u for u in self.units if isinstance(u, FullUnit)}
        for i, unit in enumerate(self.units):
            if isinstance(unit, ApiKeysOnlyUnit) and unit.parent not in full:
                known = ", ".join(sorted(full)) or "none"
                raise ValueError(f"units[{i}].parent: {unit.parent!r} is not a full unit (full units: {known})")
        for parent in full.values():
            team_ids = [t.team_id for u in self.units for t in u.teams if u.name == parent.name
                        or (isinstance(u, ApiKeysOnlyUnit) and u.parent == parent.name)]
            dupes = sorted(n for n, c in Counter(team_ids).items() if c > 1)
            if dupes:
                raise ValueError(f"team ids must be unique on the API of unit {parent.name!r}: "
                                 f"{', '.join(dupes)} repeated")
        return self

    def unit(self, name: str) -> FullUnit | ApiKeysOnlyUnit:
        return next(u for u in self.units if u.name == name)


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("full", "api_keys_only") and path.endswith("]"):
            continue  # pydantic puts the discriminator's value in the path; it is not a key of the file
        else:
            path += f".{part}" if path else str(part)
    return path


def parse_config(data: Any, *, source: str = "<config>") -> DeploymentConfig:
    """Validate decoded YAML/JSON; raise :class:`ConfigError` naming ``source`` and every bad key."""
    try:
        return DeploymentConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check its spelling; see docs/deploy.md for every key)"
            path = _key_path(err["loc"])
            lines.append(f"  {path}: {msg}" if path else f"  {msg}")
        raise ConfigError(f"{source}: invalid deployment config:\n" + "\n".join(lines)) from None


def load_config(path: str | Path = DEFAULT_CONFIG) -> DeploymentConfig:
    """Read and validate a deployment config file (YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the deployment config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_config(data, source=str(path))
