"""Budget alerts in AWS (implements :class:`ingest.alerts.AlertSink`): each alert is published to the unit's SNS topic
and put on EventBridge, off the request path, retried.

The spend store has already decided the alert is this process's to raise (``first_alert``: once fleet-wide); this
module only delivers it. ``deliver`` queues and returns at once. In Lambda nothing runs between invocations, so the
handler calls :meth:`AwsAlerts.flush` after the response is built, as it flushes the usage events; elsewhere
``start=True`` runs a background thread that does the same.

**The SNS message** (``MessageStructure="json"``): ``default`` is the alert's JSON (:func:`ingest.budget.alert_of`,
the same object as a line of the local alert log), what HTTPS, SQS and Lambda subscribers get; ``email`` is the same
in a few readable lines. ``Subject`` says who crossed what. Message attributes ``team_id``, ``threshold_pct``,
``budget_mode``, ``period`` and ``alert_id`` let a subscription filter (a team lead subscribed to one team's alerts).

**The EventBridge event**: source ``modelmeter``, detail-type ``BudgetThresholdCrossed``, detail the alert's JSON, on
the configured bus (default: the account's default bus), for a platform's own rules.

**Retries.** Each destination is retried with exponential backoff (full jitter) within the flush's time; SNS and
EventBridge are tracked apart, so a retry never re-sends to the one that accepted. What is still undelivered stays
queued for the next flush (the next invocation of the container), is counted in ``failed`` (the gateway's
``BudgetAlertDeliveryFailures`` metric, alarmed), and is logged whole, so an operator never loses it. A retry after
an ambiguous failure (a timeout once the service had accepted) can deliver twice: ``alert_id`` (team, period,
threshold) is the consumers' dedupe key.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from common.constants import ALERT_EVENT_DETAIL_TYPE, ALERT_EVENT_SOURCE

log = logging.getLogger(__name__)

#: One call fails fast; our own loop retries (botocore's retries on top would multiply the wait).
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2})
ATTEMPTS = 4
FIRST_BACKOFF = 0.2
#: Alerts kept for later flushes at most (a few per team and month are normal; this bounds a long outage's memory).
MAX_QUEUED = 1_000
#: SNS's limit on a subject (ASCII, no line breaks).
SUBJECT_MAX = 100
DESTINATIONS = ("sns", "events")


def alert_id(alert: Mapping[str, Any]) -> str:
    """The alert's identity, the same in every copy of it: ``<team>:<period>:<threshold>``."""
    return f"{alert.get('team_id')}:{alert.get('period')}:{alert.get('threshold_pct')}"


def sns_publish_args(alert: Mapping[str, Any], *, topic_arn: str) -> dict[str, Any]:
    """The ``sns.publish`` arguments of one alert (see the module docstring)."""
    body = json.dumps(dict(alert), sort_keys=True, separators=(",", ":"))
    subject = (f"modelmeter budget: {alert.get('team_id')} reached {alert.get('threshold_pct')}% of "
               f"{alert.get('budget_usd')} USD")
    subject = subject.encode("ascii", "replace").decode()[:SUBJECT_MAX]
    attributes = {
        "team_id": {"DataType": "String", "StringValue": str(alert.get("team_id"))},
        "threshold_pct": {"DataType": "Number", "StringValue": str(alert.get("threshold_pct"))},
        "budget_mode": {"DataType": "String", "StringValue": str(alert.get("budget_mode"))},
        "period": {"DataType": "String", "StringValue": str(alert.get("period"))},
        "alert_id": {"DataType": "String", "StringValue": alert_id(alert)},
    }
    return {"TopicArn": topic_arn, "Subject": subject, "MessageStructure": "json",
            "Message": json.dumps({"default": body, "email": _email_text(alert)}),
            "MessageAttributes": attributes}


def events_entry(alert: Mapping[str, Any], *, event_bus: str) -> dict[str, Any]:
    """The ``events.put_events`` entry of one alert."""
    return {"Source": ALERT_EVENT_SOURCE, "DetailType": ALERT_EVENT_DETAIL_TYPE, "EventBusName": event_bus,
            "Detail": json.dumps(dict(alert), sort_keys=True, separators=(",", ":"))}


def _email_text(alert: Mapping[str, Any]) -> str:
    mode = ("calls are refused once the budget is reached" if alert.get("budget_mode") == "block"
            else "calls are not refused (alert mode)")
    return "\n".join((
        f"Team {alert.get('team_id')} has reached {alert.get('threshold_pct')}% of its monthly budget.",
        "",
        f"Spent: {alert.get('spend_usd')} USD of {alert.get('budget_usd')} USD "
        f"(fiscal month {alert.get('period_start')} to {alert.get('period_end')}; it resets at "
        f"{alert.get('resets_at')}).",
        f"Budget mode: {alert.get('budget_mode')}: {mode}.",
        f"Cost centre: {alert.get('cost_center') or 'none'}. Raised at {alert.get('raised_at')} by "
        f"{alert.get('source')}.",
        "",
        "The gateway's figure is a running one; the transform's cost tables are the figures of record.",
        "",
        json.dumps(dict(alert), sort_keys=True),
    ))


@dataclass
class _Pending:
    alert: dict[str, Any]
    left: set[str] = field(default_factory=lambda: set(DESTINATIONS))
    failed_flushes: int = 0


class AwsAlerts:
    """The AWS alert sink: SNS ``Publish`` and EventBridge ``PutEvents`` per alert.

    Args:
        topic_arn: the budget-alert topic (``MODELMETER_ALERT_TOPIC_ARN``).
        event_bus: the EventBridge bus name or ARN (``MODELMETER_ALERT_EVENT_BUS``; ``None``: no event).
        sns: an ``sns`` client; events: an ``events`` client (defaults: new ones with :data:`CLIENT_CONFIG`).
        start: run a background thread that flushes after each ``deliver`` (not in Lambda: the handler flushes).
        sleep: how a retry waits (tests); attempts, first_backoff: the retry schedule.
    """

    def __init__(self, *, topic_arn: str | None, event_bus: str | None = None, sns: Any = None, events: Any = None,
                 start: bool = False, sleep: Callable[[float], None] = time.sleep, attempts: int = ATTEMPTS,
                 first_backoff: float = FIRST_BACKOFF):
        if not topic_arn and not event_bus:
            raise ValueError("an AWS alert sink needs an SNS topic, an EventBridge bus, or both")
        self.topic_arn = topic_arn
        self.event_bus = event_bus
        self._sns = sns if sns is not None or not topic_arn else boto3.client("sns", config=CLIENT_CONFIG)
        self._events = events if events is not None or not event_bus else boto3.client("events",
                                                                                       config=CLIENT_CONFIG)
        self._sleep = sleep
        self.attempts, self.first_backoff = attempts, first_backoff
        self.counts = {"delivered": 0, "failed": 0, "dropped": 0}
        self._queue: list[_Pending] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="modelmeter-alerts-aws", daemon=True)
            self._thread.start()

    # --- the AlertSink protocol ----------------------------------------------------------------------------------

    def deliver(self, alert: Mapping[str, Any]) -> None:
        """Queue one alert (returns at once; :meth:`flush` or the background thread sends it)."""
        pending = _Pending(dict(alert))
        if not self.topic_arn:
            pending.left.discard("sns")
        if not self.event_bus:
            pending.left.discard("events")
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                dropped = self._queue.pop(0)
                self.counts["dropped"] += 1
                log.error("budget alert queue full (%d): dropped the oldest alert, never delivered: %s", MAX_QUEUED,
                          json.dumps(dropped.alert, sort_keys=True))
            self._queue.append(pending)
        self._wake.set()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counts, "queued": len(self._queue)}

    def close(self, *, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join(timeout)
        self.flush(timeout=timeout)

    # --- delivery ------------------------------------------------------------------------------------------------

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def flush(self, *, timeout: float = 5.0) -> int:
        """Send what is queued, retrying within ``timeout`` seconds; what still fails stays queued.

        Returns:
            how many alerts are still undelivered after this flush (each counted once more in ``failed``).
        """
        deadline = time.monotonic() + timeout
        with self._flushing:  # one flush at a time (the handler and a background thread never both send)
            with self._lock:
                batch = list(self._queue)
            undelivered = 0
            for item in batch:
                for destination in sorted(item.left):
                    if self._send(destination, item.alert, deadline):
                        item.left.discard(destination)
                if item.left:
                    undelivered += 1
                    item.failed_flushes += 1
                    log.error("budget alert not delivered to %s after %d attempts (kept for the next flush): %s",
                              ", ".join(sorted(item.left)), self.attempts, json.dumps(item.alert, sort_keys=True))
            with self._lock:
                delivered = [i for i in batch if not i.left]
                self._queue = [i for i in self._queue if i.left]
                self.counts["delivered"] += len(delivered)
                self.counts["failed"] += undelivered
        return undelivered

    def _send(self, destination: str, alert: dict[str, Any], deadline: float) -> bool:
        wait = self.first_backoff
        for attempt in range(1, self.attempts + 1):
            try:
                if destination == "sns":
                    self._sns.publish(**sns_publish_args(alert, topic_arn=self.topic_arn or ""))
                else:
                    self._put_event(alert)
                return True
            except (ClientError, BotoCoreError, _EntryFailed) as exc:
                if attempt == self.attempts or not _transient(exc):
                    log.warning("budget alert to %s failed (%s), attempt %d", destination, _reason(exc), attempt)
                    return False
                if time.monotonic() + wait >= deadline:  # the longest this pause may be: not within the flush
                    log.warning("budget alert to %s failed (%s); no time left in this flush", destination,
                                _reason(exc))
                    return False
                self._sleep(random.uniform(0, wait))  # noqa: S311 - jitter, not cryptography
                wait *= 2
        return False

    def _put_event(self, alert: dict[str, Any]) -> None:
        response = self._events.put_events(Entries=[events_entry(alert, event_bus=self.event_bus or "default")])
        if response.get("FailedEntryCount"):
            entry = (response.get("Entries") or [{}])[0]
            raise _EntryFailed(str(entry.get("ErrorCode")), str(entry.get("ErrorMessage")))

    def _loop(self) -> None:
        while not self._stop:
            self._wake.wait(timeout=30.0)  # also retries what failed, every 30 s
            self._wake.clear()
            if self.pending():
                self.flush(timeout=30.0)


class _EntryFailed(Exception):
    """EventBridge accepted the call but not the entry (``FailedEntryCount``)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


# Errors a retry cannot fix: the topic or bus does not exist, the role may not publish, the request is malformed.
_TERMINAL = {"AccessDenied", "AccessDeniedException", "AuthorizationError", "NotFound", "NotFoundException",
             "ResourceNotFoundException", "InvalidParameter", "InvalidParameterValue", "ValidationException",
             "InvalidParameterException", "KMSAccessDenied", "KMSDisabled", "KMSNotFound", "KMSInvalidState"}


def _code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    if isinstance(exc, _EntryFailed):
        return exc.code
    return type(exc).__name__


def _transient(exc: BaseException) -> bool:
    return _code(exc) not in _TERMINAL


def _reason(exc: BaseException) -> str:
    return _code(exc) or str(exc)
