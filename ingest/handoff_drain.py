"""The drain Lambda of the usage hand-off queue: ``handler(event, context)`` puts queued usage events into Firehose.

An SQS event source mapping (``ReportBatchItemFailures``) hands it up to ten messages of the queue the gateway
Lambda fills (:mod:`ingest.handoff`), each a JSON Lines body of usage events. Per message:

- every event goes to Firehose (``PutRecordBatch``; only failed records are sent again, as the gateway does);
- all accepted: the message is done (the mapping deletes it);
- none accepted: the message is reported in ``batchItemFailures``; SQS makes it visible again after the visibility
  timeout and, after the queue's ``maxReceiveCount``, moves it to the dead-letter queue (alarmed);
- some accepted: the rest is re-queued as a new, smaller message (delayed :data:`REQUEUE_DELAY_SECONDS`) and the
  original is done, so the accepted events are never sent again; only if that re-queue fails is the original
  reported as failed (its accepted events then go to Firehose twice; ``event_id`` is the transform's dedupe key).

A line that is not a JSON object with an ``event_id``, or a message of another format, is not usage: it is kept
aside in the dead-letter queue with its reason (message attributes ``reason`` and ``source_message_id``) and
logged with its message id and line number; the message's good events still go to Firehose.

The invocation's remaining time (``context.get_remaining_time_in_millis()``) bounds every call: the clients are
:func:`ingest.handoff.fast_client`'s (one call at most :data:`ingest.handoff.CALL_SECONDS`), no Firehose call begins
unless it and the message's re-queue and dead-letter calls can still end before the return margin, and a message
that can no longer be handled in time is not started: it is reported in ``batchItemFailures`` with the others not
done, so a timeout never makes SQS send back messages whose events Firehose already took.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from common.constants import (
    ENV_FIREHOSE_STREAM,
    ENV_HANDOFF_DLQ_URL,
    ENV_HANDOFF_QUEUE_URL,
    METRIC_HANDOFF_MESSAGES_FAILED,
    METRIC_USAGE_EVENTS_DRAINED,
    METRICS_NAMESPACE,
    SERVICE_USAGE_DRAIN,
)
from ingest.firehose import Deliverer, firehose_deliverer
from ingest.handoff import (
    CALL_SECONDS,
    FORMAT,
    FORMAT_ATTRIBUTE,
    REQUEUE_DELAY_SECONDS,
    RETURN_MARGIN_SECONDS,
    HandoffQueue,
    fast_client,
)

logger = Logger(service=SERVICE_USAGE_DRAIN)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_USAGE_DRAIN)


class UndeliveredMessage(RuntimeError):
    """Firehose took none of a message's events (or its remainder could not be re-queued): retry it later."""


#: The firehose_deliverer's backoff sleeps of one message (0.05 + 0.1 + 0.2 s at most, its defaults), rounded up.
BACKOFF_SLACK_SECONDS = 0.5


class NotTried(UndeliveredMessage):
    """Too little of the invocation is left to handle the message: it was not started, SQS sends it again."""


@dataclass
class Deadline:
    """The current invocation's end (``time.monotonic()``, less the return margin) and what it leaves per call.

    A message takes at most three calls in a row after its start: Firehose (retried only while one more call
    fits), the re-queue of a remainder, the dead-letter send of its bad lines; plus the backoff sleeps between
    Firehose attempts (:data:`BACKOFF_SLACK_SECONDS`).
    """

    call_seconds: float = CALL_SECONDS
    end: float | None = None

    def start_invocation(self, remaining_ms: int) -> None:
        self.end = time.monotonic() + remaining_ms / 1000 - RETURN_MARGIN_SECONDS

    def firehose_start(self) -> float | None:
        """No PutRecordBatch begins after this: the re-queue and the dead-letter call still fit after it."""
        return None if self.end is None else self.end - 3 * self.call_seconds - BACKOFF_SLACK_SECONDS

    def queue_start(self) -> float | None:
        """No SendMessageBatch (re-queue) begins after this: the dead-letter call still fits after it."""
        return None if self.end is None else self.end - 2 * self.call_seconds

    def too_late(self) -> bool:
        """Whether a message may no longer be started (its first Firehose call could not begin)."""
        limit = self.firehose_start()
        return limit is not None and time.monotonic() > limit


@dataclass
class Drain:
    """What a drain container keeps between invocations."""

    deliver: Deliverer
    queue: HandoffQueue          # the hand-off queue itself (re-queued remainders)
    dead_letters: HandoffQueue | None = None
    requeue_delay_seconds: int = REQUEUE_DELAY_SECONDS
    #: Set by each invocation; ``deliver`` and ``queue`` read it when built by :meth:`from_env` (tests pass theirs).
    deadline: Deadline = field(default_factory=Deadline)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, firehose: Any = None, sqs: Any = None,
                 call_seconds: float = CALL_SECONDS) -> Drain:
        """The drain as its environment configures it; ``firehose``/``sqs`` default to :func:`fast_client`'s, and
        ``call_seconds`` is one call's worst case with them (tests pass clients with shorter timeouts)."""
        missing = [name for name in (ENV_FIREHOSE_STREAM, ENV_HANDOFF_QUEUE_URL) if not env.get(name)]
        if missing:
            raise ValueError("usage drain configuration is invalid: " + "; ".join(f"{m}: missing" for m in missing))
        dlq = env.get(ENV_HANDOFF_DLQ_URL)
        deadline = Deadline(call_seconds=call_seconds)
        sqs = sqs or fast_client("sqs")
        return cls(deliver=firehose_deliverer(stream_name=env[ENV_FIREHOSE_STREAM],
                                              client=firehose or fast_client("firehose"),
                                              latest_start=deadline.firehose_start),
                   queue=HandoffQueue(queue_url=env[ENV_HANDOFF_QUEUE_URL], client=sqs,
                                      latest_start=deadline.queue_start),
                   dead_letters=HandoffQueue(queue_url=dlq, client=sqs) if dlq else None, deadline=deadline)


_drain: Drain | None = None


def set_drain(drain: Drain | None) -> None:
    """Install (tests) or drop the container's drain; the next invocation builds one from the environment."""
    global _drain
    _drain = drain


@dataclass
class BadLine:
    """A line of a hand-off message that is not a usage event, and why."""

    number: int
    text: str
    reason: str


def parse_message(record: SQSRecord) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """A message's events, and its lines that are not one."""
    attribute = record.message_attributes[FORMAT_ATTRIBUTE]
    fmt = attribute.string_value if attribute is not None else None
    if fmt != FORMAT:
        return [], [BadLine(0, record.body, f"message attribute {FORMAT_ATTRIBUTE} is {fmt!r}, not {FORMAT!r}")]
    events: list[dict[str, Any]] = []
    bad: list[BadLine] = []
    for number, line in enumerate(record.body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(BadLine(number, line, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(event, dict) or not isinstance(event.get("event_id"), str) or not event["event_id"]:
            bad.append(BadLine(number, line, "not a usage event (a JSON object with a string event_id)"))
            continue
        events.append(event)
    return events, bad


def _keep_aside(drain: Drain, record: SQSRecord, bad: list[BadLine]) -> None:
    """Only the lines that are not usage go to the dead-letter queue, with their reasons (and to the log)."""
    reasons = "; ".join(f"line {b.number}: {b.reason}" if b.number else b.reason for b in bad)
    logger.error("hand-off message holds lines that are not usage events; kept aside", extra={
        "message_id": record.message_id, "problems": reasons})
    if drain.dead_letters is None:
        raise UndeliveredMessage(f"message {record.message_id}: {reasons} (no dead-letter queue configured)")
    drain.dead_letters.sqs.send_message(
        QueueUrl=drain.dead_letters.queue_url, MessageBody="\n".join(b.text for b in bad) or "(empty message)",
        MessageAttributes={"reason": {"DataType": "String", "StringValue": reasons[:4000]},
                           "source_message_id": {"DataType": "String", "StringValue": record.message_id}})


def drain_record(drain: Drain, record: SQSRecord) -> int:
    """One message into Firehose (see the module docstring); returns the events Firehose accepted."""
    if drain.deadline.too_late():
        raise NotTried(f"message {record.message_id}: not started, too little of the invocation is left")
    events, bad = parse_message(record)
    failed = drain.deliver(events) if events else []
    if failed and len(failed) == len(events):
        raise UndeliveredMessage(f"message {record.message_id}: Firehose took none of its {len(events)} events")
    if failed:
        if drain.queue.send(failed, delay_seconds=drain.requeue_delay_seconds):
            raise UndeliveredMessage(f"message {record.message_id}: {len(failed)} events could not be re-queued")
        logger.warning("Firehose took part of a hand-off message; the rest is re-queued", extra={
            "message_id": record.message_id, "accepted": len(events) - len(failed), "requeued": len(failed)})
    if bad:  # after the events went out: a retry of the message must not keep the same lines aside twice
        _keep_aside(drain, record, bad)
    return len(events) - len(failed)


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context(log_event=False, clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch → Firehose; ``{"batchItemFailures": [{"itemIdentifier": <messageId>}, …]}``."""
    global _drain
    if _drain is None:
        _drain = Drain.from_env()  # a bad configuration raises: every message is retried, then dead-lettered
    drain = _drain
    drain.deadline.start_invocation(context.get_remaining_time_in_millis())
    drained = 0

    def one(record: SQSRecord) -> None:
        nonlocal drained
        drained += drain_record(drain, record)

    # raise_on_entire_batch_failure off: an all-failed batch is reported like a partial one, not as a crash.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    result: dict[str, Any] = dict(process_partial_response(event=event, record_handler=one, processor=processor,
                                                           context=context))
    failures = len(result.get("batchItemFailures") or [])
    metrics.add_metric(name=METRIC_USAGE_EVENTS_DRAINED, unit=MetricUnit.Count, value=drained)
    if failures:
        metrics.add_metric(name=METRIC_HANDOFF_MESSAGES_FAILED, unit=MetricUnit.Count, value=failures)
    logger.info("hand-off batch drained", extra={"messages": len(event.get("Records", [])), "events": drained,
                                                 "failed_messages": failures})
    return result
