"""The gateway as a long-running container (ECS Fargate behind an ALB): ``python -m ingest.container``.

The same ASGI app as ``modelmeter serve`` and the Lambda, with the Lambda's AWS seams (DynamoDB tenants, keys and
long-poll results, Firehose usage delivery, the spend counters and alerts, the lake's prices), read from the same
environment (:class:`ingest.lambda_handler.GatewaySettings`). What a container changes, and why:

* **SSE is real.** uvicorn writes each ``data:`` chunk as the model produces it and the ALB passes it on; nothing
  sits between them that buffers a response, and no 29 s integration limit applies (the ALB's idle timeout does).
* **Work runs in the background**, as locally: the seed's async calls run in the process (``gw.spawn``) after the
  start request returned; the emitter's thread delivers the spool to Firehose every ``MODELMETER_SPOOL_FLUSH_SECONDS``;
  budget alerts go out from their own thread; a metrics thread prints the gauges the task's alarms read (EMF on
  stdout, which the awslogs driver ships to CloudWatch Logs).
* **SIGTERM drains.** ECS sends it when a task stops (after the ALB deregistered the target): uvicorn stops
  accepting, lets in-flight calls finish within ``MODELMETER_GRACEFUL_SECONDS``, runs the app's shutdown (seed async
  calls still running finish and bill), then the spool is flushed to Firehose within ``MODELMETER_DRAIN_SECONDS``.
  What Firehose does not take in time goes to the hand-off queue when one is configured
  (``MODELMETER_HANDOFF_QUEUE_URL``, :func:`drain`); what neither takes stays in ``MODELMETER_SPOOL_DIR``, and a
  process started on the same directory sends it first. Exit status 0 when nothing is left, 1 otherwise (ECS shows
  it as the container's exit code).

No API key, header, body or prompt is logged.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.constants import (
    DEFAULT_CONTAINER_PORT,
    ENV_DRAIN_SECONDS,
    ENV_GRACEFUL_SECONDS,
    ENV_HOST,
    ENV_KEEPALIVE_SECONDS,
    ENV_PORT,
    ENV_SPOOL_FLUSH_SECONDS,
    ENV_SPOOL_MAX_BACKLOG,
    METRIC_ALERT_DELIVERY_FAILURES,
    METRIC_SPEND_STORE_ERRORS,
    METRIC_USAGE_EVENTS_SPOOLED,
    METRICS_NAMESPACE,
    SERVICE_GATEWAY,
)
from common.lake import Lake
from ingest.alerts_aws import AwsAlerts
from ingest.app import create_app
from ingest.dynamo import DynamoLongPollStore, DynamoTenantRegistry
from ingest.emit import DEFAULT_MAX_BACKLOG, Emitter, SpoolLockedError
from ingest.firehose import MAX_BATCH_RECORDS
from ingest.handoff import CALL_SECONDS, HandoffQueue, LambdaDelivery, fast_client
from ingest.lambda_handler import GatewaySettings
from ingest.pricing import GatewayPricer
from ingest.providers.registry import build_router
from ingest.server import fast_loop_options
from ingest.spend_dynamo import DynamoSpendStore

log = logging.getLogger("modelmeter.container")

#: ECS gives a task at most 120 s between SIGTERM and SIGKILL (``stopTimeout``), after the ALB drained its target
#: (``deregistration_delay``, when open streams finish). The three stages fit in it with room to exit: in-flight
#: calls, then the app's shutdown (seed async calls still running, at most 30 s, and queued alerts, at most 10 s:
#: ``ingest.app.create_app``), then the spool.
ECS_STOP_TIMEOUT_SECONDS = 120.0
DEFAULT_GRACEFUL_SECONDS = 30.0
APP_SHUTDOWN_SECONDS = 30.0 + 10.0
DEFAULT_DRAIN_SECONDS = 40.0
#: Left of the stop timeout after the three stages: the drain's last bookkeeping, the log line, the exit.
EXIT_MARGIN_SECONDS = 5.0
#: Above the ALB's default idle timeout (60 s); the stack sets its own idle timeout plus a margin.
DEFAULT_KEEPALIVE_SECONDS = 65
#: Of the drain's time after SIGTERM, the share kept for the hand-off queue when Firehose has not taken everything.
HANDOFF_SHARE = 0.4
#: The shortest drain that lets Firehose's stage begin one call (whose worst case is ``CALL_SECONDS``): below it the
#: drain would make no call at all and the spool would die with the task.
MIN_DRAIN_SECONDS = CALL_SECONDS / (1 - HANDOFF_SHARE)
#: How often the metrics thread prints the spool, spend-store and alert gauges.
METRICS_INTERVAL_SECONDS = 60.0


class ContainerSettings(BaseModel):
    """What the container adds to :class:`GatewaySettings`: where it listens and how it stops."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="0.0.0.0", description="Address uvicorn binds (all interfaces in a task).")  # noqa: S104
    port: int = Field(default=DEFAULT_CONTAINER_PORT, ge=1, le=65535, description="TCP port of the target group.")
    graceful_seconds: float = Field(default=DEFAULT_GRACEFUL_SECONDS, gt=0,
                                    description="Seconds in-flight requests may take after SIGTERM.")
    drain_seconds: float = Field(default=DEFAULT_DRAIN_SECONDS, ge=MIN_DRAIN_SECONDS,
                                 description="Seconds the spool may take to reach Firehose after the server stopped.")
    spool_flush_seconds: float = Field(default=1.0, gt=0,
                                       description="Seconds a spool segment collects events before delivery.")
    keep_alive_seconds: int = Field(default=DEFAULT_KEEPALIVE_SECONDS, gt=0, description=(
        "Seconds an idle client connection stays open; above the load balancer's idle timeout."))
    max_backlog: int = Field(default=DEFAULT_MAX_BACKLOG, gt=0,
                             description="Events held in memory while the spool fails, before calls get 503.")

    @model_validator(mode="after")
    def _fits_the_stop_timeout(self) -> ContainerSettings:
        # Each stage is bounded (uvicorn's graceful timeout, the app's shutdown, the drain's deadlines), so their
        # sum is the longest a stop can take; past ECS's stop timeout the spool would die with the task (SIGKILL).
        total = self.graceful_seconds + APP_SHUTDOWN_SECONDS + self.drain_seconds + EXIT_MARGIN_SECONDS
        if total > ECS_STOP_TIMEOUT_SECONDS:
            raise ValueError(f"{self.graceful_seconds + self.drain_seconds:g} s: with the app's shutdown "
                             f"({APP_SHUTDOWN_SECONDS:g} s) and the exit margin ({EXIT_MARGIN_SECONDS:g} s) a stop "
                             f"would take over ECS's stop timeout ({ECS_STOP_TIMEOUT_SECONDS:g} s)")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ContainerSettings:
        """Settings from the environment; ``ValueError`` naming every bad variable."""
        names = {"host": ENV_HOST, "port": ENV_PORT, "graceful_seconds": ENV_GRACEFUL_SECONDS,
                 "drain_seconds": ENV_DRAIN_SECONDS, "spool_flush_seconds": ENV_SPOOL_FLUSH_SECONDS,
                 "max_backlog": ENV_SPOOL_MAX_BACKLOG, "keep_alive_seconds": ENV_KEEPALIVE_SECONDS}
        raw: dict[str, Any] = {field: env[name] for field, name in names.items() if env.get(name)}
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = [f"{_variable(names, e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise ValueError("container configuration is invalid: " + "; ".join(problems)) from None


def _variable(names: Mapping[str, str], loc: tuple[int | str, ...]) -> str:
    """The variable a validation error is about; the stop-time check (no field of its own) is about two."""
    if not loc:
        return f"{ENV_GRACEFUL_SECONDS} + {ENV_DRAIN_SECONDS}"
    return names.get(str(loc[0]), str(loc[0]))


@dataclass
class ContainerRuntime:
    """The app and the parts of it the container drives around uvicorn."""

    app: Any
    emitter: Emitter
    spend: DynamoSpendStore | None
    alerts: AwsAlerts | None
    business_unit: str | None
    handoff: HandoffQueue | None = None  # where the spool goes when Firehose does not take it before the task ends
    #: The emitter's deliver (Firehose, then ``handoff``), whose deadline bounds each call of the SIGTERM drain.
    delivery: LambdaDelivery | None = None


def build_container_runtime(*, gateway: GatewaySettings, container: ContainerSettings, dynamodb: Any = None,
                            firehose: Any = None, bedrock_client: Any = None, sagemaker_client: Any = None,
                            sns: Any = None, events: Any = None, sqs: Any = None) -> ContainerRuntime:
    """The gateway app with the Lambda's AWS seams, and its background threads running (unlike in Lambda).

    Clients default to new boto3 clients from the environment (``AWS_ENDPOINT_URL_<SERVICE>`` included); tests pass
    their own or point the environment at local servers.
    """
    router = build_router(upstream="bedrock", region=gateway.region, bedrock_client=bedrock_client,
                          sagemaker_endpoints=gateway.sagemaker_endpoints or None, sagemaker_client=sagemaker_client)
    handoff = (HandoffQueue(queue_url=gateway.handoff_queue_url, client=sqs or fast_client("sqs"))
               if gateway.handoff_queue_url else None)
    # The Lambda's deliverer and client settings: a hanging Firehose costs one short call (CALL_SECONDS), and no
    # call begins after the drain's deadline; the spool is on the task's storage, drained on SIGTERM.
    delivery = LambdaDelivery(stream_name=gateway.firehose_stream, firehose=firehose or fast_client("firehose"),
                              queue=handoff, track=False)
    emitter = Emitter(deliver=delivery, spool_dir=gateway.spool_dir, batch_size=MAX_BATCH_RECORDS,
                      flush_interval=container.spool_flush_seconds, max_backlog=container.max_backlog)
    pricer = (GatewayPricer(lake=Lake.open(gateway.lake), reload_seconds=gateway.pricing_reload_seconds).start()
              if gateway.lake else None)
    spend = DynamoSpendStore(table_name=gateway.spend_table, client=dynamodb) if gateway.spend_table else None
    # start=True: the alerts' own thread sends them (the Lambda flushes after each invocation instead).
    alerts = (AwsAlerts(topic_arn=gateway.alert_topic_arn, event_bus=gateway.alert_event_bus, sns=sns,
                        events=events, start=True) if gateway.alert_topic_arn or gateway.alert_event_bus else None)
    app = create_app(registry=DynamoTenantRegistry(table_name=gateway.tenant_table, client=dynamodb),
                     providers=router, emitter=emitter,
                     longpoll=DynamoLongPollStore(table_name=gateway.longpoll_table, client=dynamodb),
                     spend=spend, alerts=alerts, business_unit=gateway.business_unit, pricer=pricer)
    return ContainerRuntime(app=app, emitter=emitter, spend=spend, alerts=alerts,
                            business_unit=gateway.business_unit, handoff=handoff, delivery=delivery)


class GaugeThread:
    """Prints the task's gauges as EMF every ``interval`` seconds: events waiting in the spool, spend-store errors
    and undelivered budget alerts since the last print (dimensions ``service``, ``business_unit``, what the unit's
    alarms select on)."""

    def __init__(self, runtime: ContainerRuntime, *, interval: float = METRICS_INTERVAL_SECONDS) -> None:
        self.runtime = runtime
        self.interval = interval
        self._stop = threading.Event()
        self._alerts_failed = 0
        self._thread = threading.Thread(target=self._run, name="modelmeter-gauges", daemon=True)

    def start(self) -> GaugeThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and print the last figures (what the drain left); never raises: it runs at exit."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.emit()
        except Exception:  # noqa: BLE001 - a metric is advisory
            log.exception("could not emit the gateway's last gauges")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.emit()
            except Exception:  # noqa: BLE001 - a metric is advisory; never stop the gateway for one
                log.exception("could not emit the gateway's gauges")

    def emit(self) -> dict[str, int]:
        runtime = self.runtime
        failed = runtime.alerts.status()["failed"] if runtime.alerts is not None else 0
        figures = {METRIC_USAGE_EVENTS_SPOOLED: runtime.emitter.pending_events(),
                   METRIC_SPEND_STORE_ERRORS: runtime.spend.take_errors() if runtime.spend is not None else 0,
                   METRIC_ALERT_DELIVERY_FAILURES: failed - self._alerts_failed}
        self._alerts_failed = failed
        dimensions = {"service": SERVICE_GATEWAY,
                      **({"business_unit": runtime.business_unit} if runtime.business_unit else {})}
        for name, value in figures.items():
            with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=METRICS_NAMESPACE,
                               default_dimensions=dimensions):
                pass
        return figures


def serve(runtime: ContainerRuntime, settings: ContainerSettings, *,
          metrics_interval: float = METRICS_INTERVAL_SECONDS) -> int:
    """Serve until SIGTERM or SIGINT, then finish in-flight calls and drain the spool; the exit status."""
    server = uvicorn.Server(uvicorn.Config(
        runtime.app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
        lifespan="on", timeout_graceful_shutdown=int(settings.graceful_seconds),
        timeout_keep_alive=settings.keep_alive_seconds, **fast_loop_options()))
    gauges = GaugeThread(runtime, interval=metrics_interval).start()
    # uvicorn turns SIGTERM into a graceful shutdown, then re-raises it to the handler that was there before: a
    # no-op, so the process lives on to drain the spool below.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        # The drain first: nothing that runs before it may keep the spool from leaving the task's storage.
        drained = drain(runtime, seconds=settings.drain_seconds)
        gauges.stop()
    left = 0 if drained else runtime.emitter.pending_events()
    if drained:
        log.info("gateway stopped; every usage event reached Firehose")
    else:
        log.error("gateway stopped with %d usage events still in %s; a gateway started on the same directory "
                  "sends them", left, runtime.emitter.spool_dir)
    return 0 if server.started and drained else 1


def drain(runtime: ContainerRuntime, *, seconds: float) -> bool:
    """Empty the spool before the task's storage goes with the task; ``True`` when nothing is left.

    Firehose first; with a hand-off queue (``MODELMETER_HANDOFF_QUEUE_URL``, the Lambda's: its drain function puts
    the events into Firehose later), what Firehose has not taken within ``1 - HANDOFF_SHARE`` of the time goes there.
    An event leaves the spool only once one of them accepted it. With the runtime's ``delivery`` (as built by
    :func:`build_container_runtime`) no call begins unless its worst case ends inside its stage, so the hand-off
    starts by the ``1 - HANDOFF_SHARE`` mark and the drain ends within ``seconds`` however long Firehose hangs.
    """
    emitter, delivery = runtime.emitter, runtime.delivery
    if delivery is None:  # an emitter whose deliverer has no deadline: bounded only between its passes
        return emitter.close(timeout=seconds)
    start = time.monotonic()
    end = start + seconds
    if delivery.queue is not None:
        firehose_until = start + seconds * (1 - HANDOFF_SHARE)
        if not emitter.flush(timeout=_stage(delivery, route="firehose", until=firehose_until)):
            log.warning("%d usage events not taken by Firehose in %.0f s; handing them to the queue",
                        emitter.pending_events(), firehose_until - start)
            delivery.route = "queue"
    # The bound stays set: close() joins the emitter's thread (whose pass in flight obeys it too), then flushes.
    return emitter.close(timeout=_stage(delivery, route=delivery.route, until=end))


def _stage(delivery: LambdaDelivery, *, route: str, until: float) -> float:
    """Route the emitter's calls and let none begin unless its worst case ends by ``until``; the seconds a flush
    may keep starting passes (a pass under way when they are up ends by ``until``)."""
    delivery.route, delivery.latest_start = route, until - delivery.call_seconds
    return max(0.0, delivery.latest_start - time.monotonic())


def main(argv: list[str] | None = None) -> int:
    """``python -m ingest.container``: configuration from the environment, one line on stderr when it is bad."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    del argv  # everything comes from the environment, as in the Lambda
    try:
        gateway = GatewaySettings.from_env()
        settings = ContainerSettings.from_env()
        runtime = build_container_runtime(gateway=gateway, container=settings)
    except (ValueError, OSError, SpoolLockedError) as exc:
        print(f"modelmeter gateway cannot start: {exc}", file=sys.stderr)
        return 1
    log.info("modelmeter gateway on %s:%d (spool %s)", settings.host, settings.port, gateway.spool_dir)
    return serve(runtime, settings)


if __name__ == "__main__":
    sys.exit(main())
