"""The gateway in AWS Lambda behind API Gateway: ``handler(event, context)`` runs the same ASGI app as
``modelmeter serve``, through Mangum, with DynamoDB tenants and long-poll results and Firehose usage delivery.

Built once per container, lazily, from the environment (validated on the first call). Lambda freezes the container
between invocations, so nothing is left to background threads: seed async calls are handed to a worker invocation
of the function (ingest/async_worker.py; or, inline, finished before the handler returns), and the usage events of
the invocation are flushed to Firehose at its end, and what Firehose does not take in time to the SQS hand-off queue
(ingest/handoff.py): a success whose events neither took is answered 503, its events kept in the ``/tmp`` spool for
the container's next invocation. No API key, header, body or prompt is logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.constants import (
    ENV_ALERT_EVENT_BUS,
    ENV_ALERT_TOPIC_ARN,
    ENV_BUSINESS_UNIT,
    ENV_FIREHOSE_STREAM,
    ENV_FLUSH_SECONDS,
    ENV_HANDOFF_QUEUE_URL,
    ENV_LAKE,
    ENV_LONGPOLL_TABLE,
    ENV_PRICING_RELOAD_SECONDS,
    ENV_SAGEMAKER_ENDPOINTS,
    ENV_SPEND_TABLE,
    ENV_SPOOL_DIR,
    ENV_TENANT_TABLE,
    METRIC_ALERT_DELIVERY_FAILURES,
    METRIC_SPEND_STORE_ERRORS,
    METRIC_USAGE_EVENTS_HANDED_OFF,
    METRIC_USAGE_NOT_RECORDED,
    METRICS_NAMESPACE,
    SERVICE_GATEWAY,
)
from common.lake import Lake
from ingest.alerts_aws import AwsAlerts
from ingest.app import create_app
from ingest.async_worker import (
    LambdaAsyncRunner,
    SeedJob,
    invoke_client,
    is_job,
    run_job,
    worker_function,
    worker_reserve,
)
from ingest.dynamo import DynamoLongPollStore, DynamoTenantRegistry
from ingest.emit import Emitter
from ingest.firehose import MAX_BATCH_RECORDS
from ingest.handoff import (
    CALL_SECONDS,
    FIREHOSE_SECONDS,
    FlushOutcome,
    HandoffQueue,
    LambdaDelivery,
    TrackedEmitter,
    fast_client,
    flush_invocation,
    usage_not_recorded,
)
from ingest.pricing import DEFAULT_RELOAD_SECONDS, GatewayPricer
from ingest.providers.registry import build_router
from ingest.spend_dynamo import DynamoSpendStore

DEFAULT_SPOOL_DIR = "/tmp/spool"  # noqa: S108 - Lambda's only writable place; private to the container
SERVICE = SERVICE_GATEWAY

# Powertools reads POWERTOOLS_LOGGER_LOG_EVENT; the event holds x-api-key and prompts, so it is never logged here.
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)


class GatewaySettings(BaseModel):
    """The Lambda's configuration, read once from the environment (names in :mod:`common.constants`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_table: str = Field(min_length=1, description="DynamoDB table of teams and key hashes.")
    longpoll_table: str = Field(min_length=1, description="DynamoDB table of seed async results (TTL).")
    firehose_stream: str = Field(min_length=1, description="Firehose stream the usage events go to.")
    handoff_queue_url: str | None = Field(default=None, min_length=1, description=(
        "SQS queue the events Firehose did not take by an invocation's end go to (ingest/handoff.py); unset: they "
        "stay in the container's spool and a call whose events are not delivered is answered 503."))
    flush_seconds: float = Field(default=FIREHOSE_SECONDS, gt=0, le=60, description=(
        "Seconds each end-of-invocation delivery phase may take: Firehose first, then the hand-off queue."))
    business_unit: str | None = Field(default=None, description="Written into every usage event.")
    spool_dir: str = Field(default=DEFAULT_SPOOL_DIR, description="Local spool of undelivered events.")
    region: str | None = Field(default=None, description="Region of the Bedrock/SageMaker calls.")
    sagemaker_endpoints: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                           description="Model id → SageMaker endpoint spec.")
    spend_table: str | None = Field(default=None, min_length=1, description=(
        "DynamoDB table of the fleet-wide spend counters (budgets, daily tokens); unset: counted per container."))
    alert_topic_arn: str | None = Field(default=None, min_length=1,
                                        description="SNS topic budget alerts are published to.")
    alert_event_bus: str | None = Field(default=None, min_length=1,
                                        description="EventBridge bus (name or ARN) budget alerts are put on.")
    lake: str | None = Field(default=None, min_length=1,
                             description="The lake (s3://…) whose pricing/ prefix prices each call's cost_usd.")
    pricing_reload_seconds: float = Field(default=DEFAULT_RELOAD_SECONDS, gt=0,
                                          description="Seconds between listings of the lake's catalog versions.")
    async_worker_function: str | None = Field(default=None, min_length=1, description=(
        "Function seed async calls are handed to (ingest/async_worker.py); None: run inside the start."))

    @field_validator("sagemaker_endpoints", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value.strip() else (value or {})

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> GatewaySettings:
        """Settings from environment variables; ``ValueError`` naming every missing or bad variable."""
        raw = {
            "tenant_table": env.get(ENV_TENANT_TABLE), "longpoll_table": env.get(ENV_LONGPOLL_TABLE),
            "firehose_stream": env.get(ENV_FIREHOSE_STREAM),
            "handoff_queue_url": env.get(ENV_HANDOFF_QUEUE_URL) or None,
            "flush_seconds": env.get(ENV_FLUSH_SECONDS) or None,
            "business_unit": env.get(ENV_BUSINESS_UNIT) or None,
            "spool_dir": env.get(ENV_SPOOL_DIR) or DEFAULT_SPOOL_DIR,
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            "sagemaker_endpoints": env.get(ENV_SAGEMAKER_ENDPOINTS),
            "spend_table": env.get(ENV_SPEND_TABLE) or None, "alert_topic_arn": env.get(ENV_ALERT_TOPIC_ARN) or None,
            "alert_event_bus": env.get(ENV_ALERT_EVENT_BUS) or None,
            "lake": env.get(ENV_LAKE) or None, "pricing_reload_seconds": env.get(ENV_PRICING_RELOAD_SECONDS) or None,
            "async_worker_function": worker_function(env),
        }
        names = {"spend_table": ENV_SPEND_TABLE, "alert_topic_arn": ENV_ALERT_TOPIC_ARN,
                 "alert_event_bus": ENV_ALERT_EVENT_BUS,
                 "tenant_table": ENV_TENANT_TABLE, "longpoll_table": ENV_LONGPOLL_TABLE,
                 "firehose_stream": ENV_FIREHOSE_STREAM, "handoff_queue_url": ENV_HANDOFF_QUEUE_URL,
                 "flush_seconds": ENV_FLUSH_SECONDS,
                 "sagemaker_endpoints": ENV_SAGEMAKER_ENDPOINTS,
                 "lake": ENV_LAKE, "pricing_reload_seconds": ENV_PRICING_RELOAD_SECONDS}
        try:
            return cls.model_validate({k: v for k, v in raw.items() if v is not None})
        except ValidationError as exc:
            problems = [f"{names.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()]
            raise ValueError("gateway configuration is invalid: " + "; ".join(problems)) from None


@dataclass
class Runtime:
    """What one container keeps between invocations."""

    app: Any
    adapter: Mangum
    emitter: Emitter
    spend: DynamoSpendStore | None = None  # the fleet-wide counters (None: MemorySpendStore, per container)
    alerts: AwsAlerts | None = None  # budget alerts to SNS and EventBridge, flushed after each invocation
    business_unit: str | None = None
    delivery: LambdaDelivery | None = None  # the emitter's deliver: Firehose, then the hand-off queue

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway


def build_runtime(*, settings: GatewaySettings | None = None, dynamodb: Any = None, firehose: Any = None,
                  bedrock_client: Any = None, sagemaker_client: Any = None, sns: Any = None,
                  events: Any = None, lambda_client: Any = None, sqs: Any = None,
                  call_seconds: float = CALL_SECONDS) -> Runtime:
    """The app with its AWS seams. Clients default to new boto3 clients; tests pass stubbed ones.

    ``call_seconds`` is the worst case of one Firehose or SQS call of those clients (default: of
    :func:`ingest.handoff.fast_client`'s), which the end-of-invocation deadlines reserve per call.
    """

    settings = settings or GatewaySettings.from_env()
    router = build_router(upstream="bedrock", region=settings.region, bedrock_client=bedrock_client,
                          sagemaker_endpoints=settings.sagemaker_endpoints or None,
                          sagemaker_client=sagemaker_client)
    # No background thread: Lambda freezes it between calls. The handler flushes at the end of each invocation,
    # to Firehose and then to the hand-off queue, within the invocation's time (ingest/handoff.py).
    queue = (HandoffQueue(queue_url=settings.handoff_queue_url, client=sqs or fast_client("sqs"))
             if settings.handoff_queue_url else None)
    delivery = LambdaDelivery(stream_name=settings.firehose_stream, firehose=firehose or fast_client("firehose"),
                              queue=queue, call_seconds=call_seconds, phase_seconds=settings.flush_seconds)
    emitter = TrackedEmitter(deliver=delivery, spool_dir=settings.spool_dir, batch_size=MAX_BATCH_RECORDS,
                             start=False)
    # Prices cost_usd from the lake's catalog; its poll thread runs while the container is thawed, so after a long
    # freeze the first invocations may still price from the version before (docs/gateway.md).
    pricer = (GatewayPricer(lake=Lake.open(settings.lake), reload_seconds=settings.pricing_reload_seconds).start()
              if settings.lake else None)
    # Budgets hold across containers only with the shared counters; alerts are sent after the response is built.
    spend = DynamoSpendStore(table_name=settings.spend_table, client=dynamodb) if settings.spend_table else None
    alerts = (AwsAlerts(topic_arn=settings.alert_topic_arn, event_bus=settings.alert_event_bus, sns=sns,
                        events=events) if settings.alert_topic_arn or settings.alert_event_bus else None)
    app = create_app(registry=DynamoTenantRegistry(table_name=settings.tenant_table, client=dynamodb),
                     providers=router, emitter=emitter,
                     longpoll=DynamoLongPollStore(table_name=settings.longpoll_table, client=dynamodb),
                     spend=spend, alerts=alerts, business_unit=settings.business_unit, pricer=pricer)
    if settings.async_worker_function:  # seed async calls: an Event invocation of the worker, not this one
        app.state.gateway.async_runner = LambdaAsyncRunner(
            longpoll=app.state.gateway.longpoll, client=lambda_client or invoke_client(settings.region),
            function_name=settings.async_worker_function)
    # lifespan off: Mangum would run the app's shutdown (closing providers) after every single invocation.
    return Runtime(app=app, adapter=Mangum(app, lifespan="off"), emitter=emitter, spend=spend, alerts=alerts,
                   business_unit=settings.business_unit, delivery=delivery)


_runtime: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    """Install (tests) or drop the container's runtime; the next invocation builds one from the environment."""
    global _runtime
    _runtime = runtime


def _get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = build_runtime()
    return _runtime


def _remaining_seconds(context: Any, default: float = 30.0) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000.0 if callable(getter) else default


def _run_worker(runtime: Runtime, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A seed async job (ingest/async_worker.py): the model call of a start, in this invocation's own time (the
    function's timeout, not API Gateway's). Answers a proxy-shaped result so the invocation's tail logs it."""
    try:
        job = SeedJob.decode(event)
    except (TypeError, ValueError) as exc:  # not ours to retry: logged and dropped, nothing was called
        logger.error("malformed seed async job", extra={"reason": str(exc)})
        return {"statusCode": 400, "headers": {}, "body": json.dumps({"outcome": "malformed"})}
    # Kept back from the model call: this unit's own flush phases (its clients' call time, its flush_seconds).
    reserve = (worker_reserve(call_seconds=runtime.delivery.call_seconds, phase_seconds=runtime.delivery.phase_seconds)
               if runtime.delivery is not None else worker_reserve())
    loop = asyncio.get_event_loop()
    outcome = loop.run_until_complete(run_job(runtime.gateway, job, seconds_left=_remaining_seconds(context),
                                              reserve_seconds=reserve))
    metrics.add_metric(name="SeedAsyncJobs", unit=MetricUnit.Count, value=1)
    if outcome in ("timeout", "refused", "failed"):
        metrics.add_metric(name="SeedAsyncJobFailures", unit=MetricUnit.Count, value=1)
    status = {"ok": 200, "duplicate": 200, "timeout": 504, "refused": 503}.get(outcome, 502)
    return {"statusCode": status, "headers": {"x-request-id": job.request_id},
            "body": json.dumps({"outcome": outcome})}


def _finish_background(runtime: Runtime, context: Any) -> int:
    """Run seed async calls started by this invocation to completion (the container freezes after we return):
    those run inline, when no worker function is configured (``GatewaySettings.async_worker_function``)."""
    pending = list(runtime.gateway.background)
    if not pending:
        return 0
    budget = max(0.5, _remaining_seconds(context) - 2.0)
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait(pending, timeout=budget))
    return len(pending)


def _flush_alerts(runtime: Runtime, context: Any) -> int:
    """Send the budget alerts this invocation raised (and what an earlier one could not), after the response is
    built: the container freezes once the handler returns. Returns how many are still undelivered."""
    if runtime.alerts is None or not runtime.alerts.pending():
        return 0
    return runtime.alerts.flush(timeout=max(0.5, min(3.0, _remaining_seconds(context) - 1.0)))


def _deliver_usage(runtime: Runtime, event: dict[str, Any], context: Any,
                   response: dict[str, Any]) -> tuple[dict[str, Any], FlushOutcome]:
    """The invocation's usage events to Firehose, else to the hand-off queue, before the container may freeze for
    good (ingest/handoff.py). An API call's success whose own events neither took is answered 503
    ``usage_not_recorded``: an answered call never depends on this container being invoked again. Whatever the
    status, and for a worker job, what neither took is logged and counted (``UsageNotRecorded``)."""
    assert runtime.delivery is not None and isinstance(runtime.emitter, TrackedEmitter)  # build_runtime's
    outcome = flush_invocation(runtime.emitter, runtime.delivery, remaining_seconds=_remaining_seconds(context))
    if not outcome.unrecorded:
        return response, outcome
    status = int(response.get("statusCode", 0))
    # Only an API call's success can still be turned into 503: a worker's answer reaches no client, and an
    # error's client already knows the call failed. Every case is logged and counted in UsageNotRecorded.
    answered = 200 <= status < 300 and not is_job(event)
    logger.error("usage not recorded: the call is answered 503" if answered else "usage not recorded", extra={
        "events": len(outcome.unrecorded), "event_ids": outcome.unrecorded, "status_code": status,
        "worker_job": is_job(event), "events_spooled": runtime.emitter.pending_events()})
    if answered:
        response = usage_not_recorded(response, path=event.get("path") or event.get("rawPath"))
    outcome.replaced = True  # counted as a call whose usage is not recorded
    return response, outcome


def _deliver_anyway(runtime: Runtime, event: dict[str, Any], context: Any) -> None:
    """The end-of-invocation delivery of an invocation that raises: the events it emitted before the exception
    (a worker's billed call, an API call's event) still go to Firehose or the queue, not only to this container's
    spool, and what neither took is counted in ``UsageNotRecorded``. The exception is the caller's to re-raise."""
    try:
        _finish_background(runtime, context)
        # A 500 is never replaced: what neither took is logged and counted there.
        _, delivered = _deliver_usage(runtime, event, context, {"statusCode": 500})
        _spend_metrics(runtime, 0, delivered)
    except Exception:  # noqa: BLE001 - the invocation's own exception is the one to surface
        logger.exception("end-of-invocation delivery failed after the invocation raised")


def _spend_metrics(runtime: Runtime, alerts_undelivered: int, delivered: FlushOutcome | None = None) -> None:
    """``SpendStoreErrors``, ``BudgetAlertDeliveryFailures``, ``UsageEventsHandedOff`` and ``UsageNotRecorded`` of
    this invocation, with the dimensions the unit's alarms select on (``service``, ``business_unit``;
    infra/constructs/spend_controls.py, infra/constructs/usage_handoff.py)."""
    store_errors = runtime.spend.take_errors() if runtime.spend is not None else 0
    dimensions = {"service": SERVICE, **({"business_unit": runtime.business_unit} if runtime.business_unit else {})}
    handed_off = delivered.handed_off if delivered else 0
    not_recorded = 1 if delivered and delivered.replaced else 0
    for name, value in ((METRIC_SPEND_STORE_ERRORS, store_errors),
                        (METRIC_ALERT_DELIVERY_FAILURES, alerts_undelivered),
                        (METRIC_USAGE_EVENTS_HANDED_OFF, handed_off), (METRIC_USAGE_NOT_RECORDED, not_recorded)):
        if value:
            with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=METRICS_NAMESPACE,
                               default_dimensions=dimensions):
                pass


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context(log_event=False, clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (REST v1 or HTTP API v2 payload) → the gateway app → the proxy response."""
    started = time.perf_counter()
    try:
        runtime = _get_runtime()
    except ValueError as exc:  # bad configuration: say so in the log, answer JSON (API Gateway would say 502)
        logger.error("gateway cannot start", extra={"reason": str(exc)})
        metrics.add_metric(name="ConfigurationErrors", unit=MetricUnit.Count, value=1)
        return {"statusCode": 500, "headers": {"content-type": "application/json"}, "isBase64Encoded": False,
                "body": json.dumps({"message": "the gateway is misconfigured; its operators have been told"})}
    try:
        response = _run_worker(runtime, event, context) if is_job(event) else runtime.adapter(event, context)
        background = _finish_background(runtime, context)
    except BaseException:
        _deliver_anyway(runtime, event, context)
        raise
    response, delivered = _deliver_usage(runtime, event, context, response)
    flushed = delivered.flushed
    alerts_undelivered = _flush_alerts(runtime, context)
    runtime.gateway.registry.flush()  # the keys' "last used": one write per key at most once a minute (auth.py)
    status = int(response.get("statusCode", 0))
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    # Only what is safe to log: method, path, status, timing, and the gateway's own request id.
    logger.info("request served", extra={
        "http_method": event.get("httpMethod") or event.get("requestContext", {}).get("http", {}).get("method"),
        "path": event.get("path") or event.get("rawPath"), "status_code": status,
        "gateway_request_id": headers.get("x-request-id"), "background_calls": background,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1), "events_flushed": flushed})
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Status{status // 100}xx", unit=MetricUnit.Count, value=1)
    if not flushed:
        metrics.add_metric(name="UsageEventsSpooled", unit=MetricUnit.Count, value=runtime.emitter.pending_events())
    _spend_metrics(runtime, alerts_undelivered, delivered)
    return response
