"""The gateway Lambda's end of invocation: no answered call depends on its container's future.

A Lambda container's ``/tmp`` spool is only as durable as the container, which may never be invoked again. So at
the end of each invocation the spool is flushed in two phases, both bounded by the invocation's remaining time
(``context.get_remaining_time_in_millis()``):

1. **Firehose** (``PutRecordBatch``) for at most :data:`FIREHOSE_SECONDS`, ending early enough to leave the
   hand-off its reserve (two worst-case calls), so a slow or hanging Firehose cannot eat the invocation.
2. **The hand-off queue** (SQS ``SendMessageBatch``), as long again at most, for what Firehose did not take: several
   events per message as
   JSON Lines (each line exactly the Firehose record), at most :data:`MAX_BODY_BYTES` a message and ten messages or
   :data:`MAX_BATCH_BYTES` a call; a failed entry is sent again, never the entries SQS accepted. The drain Lambda
   (:mod:`ingest.handoff_drain`) puts them into Firehose. An event leaves the spool only once Firehose or SQS took it.

If an event of *this* invocation was taken by neither, the call is not answered as a success: its 2xx response is
replaced by a JSON 503 (``usage_not_recorded``, ``Retry-After``), and the event stays in the spool (it may still go
out with the container's next invocation). A call is never sent again by this module once a service accepted it;
the one window for a duplicate (a crash between a service's answer and the spool update, or the drain's re-send of
a message whose remainder could not be re-queued) is covered by ``event_id``, the transform's dedupe key.

A call's worst case (:data:`CALL_SECONDS`) is derived from the botocore configuration the Lambda builds its clients
with (:func:`fast_client`, :data:`CLIENT_CONFIG`: tight timeouts, retries left to the loops here, which retry only
what failed); a client passed in (tests) is assumed to be configured alike.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ingest.emit import UNAVAILABLE_RETRY_AFTER, Emitter
from ingest.firehose import MAX_BATCH_RECORDS, chunk_records, chunk_sizes, encode_record, firehose_deliverer

log = logging.getLogger(__name__)

#: Each phase of the end-of-invocation flush (Firehose, then the queue) takes at most this long by default.
FIREHOSE_SECONDS = 5.0
#: Left to the handler after the flush: the alerts, the response, the log line and the metrics.
RETURN_MARGIN_SECONDS = 1.0
#: SendMessageBatch quotas: ten entries; 256 KiB for a message and for the whole call (attributes included).
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
#: A message body: 256 KiB less room for its two attributes; at most one PutRecordBatch of events.
MAX_BODY_BYTES = MAX_BATCH_BYTES - 1024
MAX_EVENTS_PER_MESSAGE = MAX_BATCH_RECORDS
#: Message attribute naming the body's format (the drain refuses other messages).
FORMAT_ATTRIBUTE = "modelmeter_format"
FORMAT = "usage-events-jsonl/1"
#: Seconds a re-queued remainder waits before the drain sees it (a Firehose in trouble gets a breather).
REQUEUE_DELAY_SECONDS = 60

# Fail fast, retry in our loops (only what failed): a hanging service costs at most (connect + read) per attempt.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=2)

LatestStart = Callable[[], float | None]


def fast_client(service: str, **kwargs: Any) -> Any:
    """A boto3 client configured as the hand-off's time bounds assume (:data:`CLIENT_CONFIG`)."""
    return boto3.client(service, config=CLIENT_CONFIG, **kwargs)


def call_seconds(config: Config) -> float:
    """The longest one API call of a client with ``config`` can take: (connect + read timeout) × its attempts."""
    retries = config.retries or {}
    if "total_max_attempts" in retries:
        attempts = int(retries["total_max_attempts"])
    elif retries.get("mode") in ("standard", "adaptive"):
        attempts = int(retries.get("max_attempts", 3))
    else:  # legacy mode counts retries, not attempts (default 4 retries)
        attempts = int(retries.get("max_attempts", 4)) + 1
    connect = config.connect_timeout if config.connect_timeout is not None else 60
    read = config.read_timeout if config.read_timeout is not None else 60
    return float(connect + read) * max(1, attempts)


#: The worst case of one call of a :func:`fast_client` (3 s): what the flush's deadlines reserve per call.
CALL_SECONDS = call_seconds(CLIENT_CONFIG)


def message_attributes(events: int) -> dict[str, dict[str, str]]:
    """The attributes of a hand-off message of ``events`` events (the drain reads the format)."""
    return {FORMAT_ATTRIBUTE: {"DataType": "String", "StringValue": FORMAT},
            "events": {"DataType": "Number", "StringValue": str(events)}}


def attribute_bytes(attributes: dict[str, dict[str, str]]) -> int:
    """What SQS counts of a message's attributes toward its size limits: each name, data type and value."""
    return sum(len(name.encode()) + len(a["DataType"].encode()) + len(a.get("StringValue", "").encode())
               for name, a in attributes.items())


def _too_late(latest_start: LatestStart | None) -> bool:
    limit = latest_start() if latest_start is not None else None
    return limit is not None and time.monotonic() > limit


class HandoffQueue:
    """Usage events into an SQS queue as JSON Lines messages (``send`` hands back what SQS did not accept).

    Args:
        queue_url: the hand-off queue.
        client: an ``sqs`` client (default: :func:`fast_client`).
        max_attempts: SendMessageBatch attempts per batch, the first included.
        base_delay: first backoff ceiling in seconds; doubled per attempt, capped at ``max_delay`` (full jitter).
        sleep: how to wait (tests pass a recorder).
        latest_start: the ``time.monotonic()`` instant after which no call may begin (``None``: no limit).
    """

    def __init__(self, *, queue_url: str, client: Any = None, max_attempts: int = 4, base_delay: float = 0.05,
                 max_delay: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 latest_start: LatestStart | None = None) -> None:
        self.queue_url = queue_url
        self.sqs = client or fast_client("sqs")
        self.max_attempts, self.base_delay, self.max_delay = max_attempts, base_delay, max_delay
        self.sleep = sleep
        self.latest_start = latest_start

    def send(self, events: list[dict[str, Any]], *, delay_seconds: int = 0) -> list[dict[str, Any]]:
        """Send ``events``; returns the events whose message SQS did not accept (``[]`` when all were)."""
        records = [encode_record(event) for event in events]
        undelivered: list[dict[str, Any]] = []
        messages: list[tuple[list[int], bytes]] = []
        for chunk in chunk_records(records, max_records=MAX_EVENTS_PER_MESSAGE, max_bytes=MAX_BODY_BYTES):
            body = b"".join(records[i] for i in chunk)
            if len(body) > MAX_BODY_BYTES:  # one event alone over the limit: a gateway bug, kept in the spool
                log.error("usage event %s is %d bytes, over an SQS message; kept in the spool",
                          events[chunk[0]].get("event_id"), len(body))
                undelivered.extend(events[i] for i in chunk)
                continue
            messages.append((chunk, body))
        # SQS counts each message's attributes (names, types, values) in the call's size, not only its body.
        sizes = [len(body) + attribute_bytes(message_attributes(len(indexes))) for indexes, body in messages]
        for batch in chunk_sizes(sizes, max_records=MAX_BATCH_ENTRIES, max_bytes=MAX_BATCH_BYTES):
            for failed in self._send_batch([messages[i] for i in batch], delay_seconds=delay_seconds):
                undelivered.extend(events[i] for i in failed[0])
        return undelivered

    def _send_batch(self, messages: list[tuple[list[int], bytes]], *,
                    delay_seconds: int) -> list[tuple[list[int], bytes]]:
        """SendMessageBatch ``messages``, re-sending only failed entries; returns the messages not accepted."""
        pending = dict(enumerate(messages))
        refused: list[tuple[list[int], bytes]] = []  # the sender's fault: no retry will fix them
        for attempt in range(1, self.max_attempts + 1):
            if _too_late(self.latest_start):
                break
            entries = [{"Id": str(i), "MessageBody": body.decode("ascii"), "DelaySeconds": delay_seconds,
                        "MessageAttributes": message_attributes(len(indexes))}
                       for i, (indexes, body) in pending.items()]
            try:
                response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:  # the whole call failed: every entry is still pending
                log.warning("SendMessageBatch failed (%s), attempt %d/%d", _error_code(exc), attempt,
                            self.max_attempts)
            else:
                for ok in response.get("Successful", []):
                    pending.pop(int(ok["Id"]), None)  # accepted: never sent again
                failed = response.get("Failed", [])
                if failed:
                    log.warning("SendMessageBatch: %d of %d entries failed (%s), attempt %d/%d", len(failed),
                                len(entries), ", ".join(sorted({f.get("Code", "?") for f in failed})), attempt,
                                self.max_attempts)
                faults = [f for f in failed if f.get("SenderFault")]
                if faults:
                    # Our request was wrong (no retry will fix it): the events stay in the spool, said loudly.
                    log.error("SendMessageBatch refused entries as the sender's fault: %s",
                              [(f.get("Code"), f.get("Message")) for f in faults])
                    refused += [pending.pop(int(f["Id"])) for f in faults if int(f["Id"]) in pending]
                if not pending:
                    return refused
            if attempt < self.max_attempts:
                self.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1))))
        return refused + list(pending.values())


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


class TrackedEmitter(Emitter):
    """The Lambda's emitter: an :class:`Emitter` that also notes the ``event_id`` of each event emitted, so the end
    of an invocation can tell whether *its* events were taken by Firehose or the queue."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.emitted: list[str] = []

    def emit(self, event: dict[str, Any]) -> None:
        super().emit(event)
        self.emitted.append(str(event.get("event_id")))

    def take_emitted(self) -> list[str]:
        taken, self.emitted = self.emitted, []
        return taken


class LambdaDelivery:
    """The Lambda emitter's ``deliver``: Firehose, or (during the hand-off phase) the queue; it notes which events
    a service accepted (``accepted``, unless ``track`` is off) and how many went to the queue (``handed_off``).

    No call of either begins after ``latest_start`` (``None``: no limit). The container's emitter delivers through
    one too (``track=False``: nothing clears ``accepted`` there), so its SIGTERM drain bounds every call.
    """

    def __init__(self, *, stream_name: str, firehose: Any, queue: HandoffQueue | None = None,
                 call_seconds: float = CALL_SECONDS, phase_seconds: float = FIREHOSE_SECONDS,
                 track: bool = True) -> None:
        self.latest_start: float | None = None
        self.route = "firehose"
        self.queue = queue
        if queue is not None:
            queue.latest_start = lambda: self.latest_start
        self.call_seconds = call_seconds
        self.phase_seconds = phase_seconds
        self.firehose = firehose
        self._firehose = firehose_deliverer(stream_name=stream_name, client=firehose,
                                            latest_start=lambda: self.latest_start)
        self.accepted: set[str] = set()
        self.track = track
        self.handed_off = 0

    def __call__(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        to_queue = self.route == "queue" and self.queue is not None
        failed = self.queue.send(events) if to_queue and self.queue is not None else self._firehose(events)
        refused = {id(event) for event in failed}
        taken = [event for event in events if id(event) not in refused]
        if self.track:
            self.accepted.update(str(event.get("event_id")) for event in taken)
        if to_queue:
            self.handed_off += len(taken)
        return failed


@dataclass
class FlushOutcome:
    """What the end of one invocation achieved."""

    flushed: bool            # nothing is left in the spool
    handed_off: int          # events the queue took in this invocation
    unrecorded: list[str]    # this invocation's events that neither Firehose nor the queue took (still spooled)
    replaced: bool = False   # counted in UsageNotRecorded (and a 2xx answer became a 503)


def flush_invocation(emitter: TrackedEmitter, delivery: LambdaDelivery, *, remaining_seconds: float) -> FlushOutcome:
    """Flush the spool to Firehose, then what is left to the queue, within ``remaining_seconds`` (less
    :data:`RETURN_MARGIN_SECONDS`); see the module docstring."""
    delivery.accepted.clear()
    delivery.handed_off = 0
    start = time.monotonic()
    end = start + remaining_seconds - RETURN_MARGIN_SECONDS
    reserve = 2 * delivery.call_seconds if delivery.queue is not None else 0.0  # two SendMessageBatch attempts
    flushed = _phase(emitter, delivery, route="firehose", until=min(start + delivery.phase_seconds, end - reserve))
    if not flushed and delivery.queue is not None:
        flushed = _phase(emitter, delivery, route="queue", until=min(time.monotonic() + delivery.phase_seconds, end))
    ours = emitter.take_emitted()
    return FlushOutcome(flushed=flushed, handed_off=delivery.handed_off,
                        unrecorded=[event_id for event_id in ours if event_id not in delivery.accepted])


def _phase(emitter: Emitter, delivery: LambdaDelivery, *, route: str, until: float) -> bool:
    """One flush through ``route`` that begins no call unless its worst case ends by ``until``; it stops retrying
    once no call could begin any more (a pass already under way ends by ``until``)."""
    latest_start = until - delivery.call_seconds
    delivery.route, delivery.latest_start = route, latest_start
    try:
        return emitter.flush(timeout=max(0.0, latest_start - time.monotonic()))
    finally:
        delivery.route, delivery.latest_start = "firehose", None


def usage_not_recorded(response: dict[str, Any], *, path: str | None) -> dict[str, Any]:
    """The JSON 503 that replaces a success whose usage event could not be handed to Firehose or the queue.

    The body has the gateway's error shapes (``ingest.http.error_response``): ``{"error": {…}}`` on ``/v1``, the
    seed's ``{"message", "type"}`` elsewhere; the request id header is kept, so the team can quote it.
    """
    message = ("the gateway could not record this call's usage, so it does not return its result; retry shortly "
               "(the call may still be billed if its usage is delivered later)")
    kind = "usage_not_recorded"
    body: dict[str, Any] = ({"error": {"type": kind, "message": message, "code": kind, "param": None}}
                            if (path or "").startswith("/v1/") else {"message": message, "type": kind})
    kept = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() == "x-request-id"}
    return {"statusCode": 503, "isBase64Encoded": False, "body": json.dumps(body),
            "headers": {**kept, "content-type": "application/json", "retry-after": str(UNAVAILABLE_RETRY_AFTER)},
            **({"multiValueHeaders": {}} if "multiValueHeaders" in response else {})}
