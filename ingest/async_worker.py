"""The seed's async ("streaming: true") flow in Lambda: the start hands the model call to a worker invocation.

The AWS guidance the seed API comes from invoked a second Lambda asynchronously for these calls; so does this, with
the gateway function itself as the worker (``InvocationType="Event"``). The start parks the long-poll item
``pending``, invokes the worker with a :class:`SeedJob` and answers ``[{"request_id"}]`` at once, so a generation
longer than API Gateway's 29 s integration timeout no longer ends in a 504. The worker (the same handler, which
recognises the job by :data:`JOB_MARKER`) rebuilds the call, claims the item ``pending → running`` with one
conditional write, calls the model, emits the call's one usage event (the start's request id and event id; a
result never polled is still billed) and completes the item for one poll.

- The job carries what the worker needs to rebuild the call, never the API key: the start already authenticated it.
- Lambda may deliver an asynchronous event more than once (the unit tells it never to retry a failed one): the
  claim makes a second delivery a no-op, so there is never a second model call nor a second event. A claim the
  store does not answer is retried here, then the call is failed with its one event (no Lambda retry to wait for).
- A job over the asynchronous payload limit is refused at the start with 413 before anything is parked.
- A start whose invocation failed may still have had its job queued (a lost answer): it fails the call only with a
  conditional write on a still-pending item, so either the start's 503 or the worker's run is the call's outcome,
  never both (one event per call).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from common.constants import ASYNC_WORKER_INLINE, ENV_ASYNC_WORKER_FUNCTION
from common.contracts import Team
from common.errors import PayloadTooLarge, ServiceError, ServiceUnavailable, UpstreamTimeout
from ingest import fastjson
from ingest.dynamo import LONGPOLL_CLIENT_CONFIG
from ingest.gateway import LONGPOLL_TTL_SECONDS, Call, Gateway
from ingest.handoff import CALL_SECONDS, FIREHOSE_SECONDS, RETURN_MARGIN_SECONDS, call_seconds
from ingest.ports import KeyRecord
from ingest.providers.base import Usage
from ingest.routes_seed import (
    PARK_RETRY_DELAYS,
    WriteDeadline,
    build_request,
    error_result,
    fail_async,
    finish_async,
)
from ingest.usage import placeholder_usage

log = logging.getLogger(__name__)

#: The key that tells a worker job from an API Gateway event (whose top-level keys are AWS's own).
JOB_MARKER = "modelmeter_seed_async"
JOB_VERSION = 1
#: Lambda's limit on an asynchronous invocation's payload (raised from 256 KB to 1 MB in October 2025); a job is
#: kept under it with room to spare, since the service counts the request as it receives it.
MAX_JOB_BYTES = 1_000_000
#: The longest one long-poll write can take (the store's client: connect + read timeouts × its attempts).
LONGPOLL_ATTEMPT_SECONDS = call_seconds(LONGPOLL_CLIENT_CONFIG)
#: Room for the long-poll write after the model call: one whole attempt and the retry pauses. park_result starts
#: a further attempt only if it ends inside this share (routes_seed.WriteDeadline), so the flush keeps its own.
LONGPOLL_WRITE_SECONDS = LONGPOLL_ATTEMPT_SECONDS + sum(PARK_RETRY_DELAYS)
#: Pauses between claim attempts of a throttled or unreachable store: Lambda does not retry a job
#: (MaximumRetryAttempts=0), so a claim that failed once would otherwise lose the whole call.
CLAIM_RETRY_DELAYS = (0.2, 0.5, 1.0)


def worker_reserve(*, call_seconds: float = CALL_SECONDS, phase_seconds: float = FIREHOSE_SECONDS) -> float:
    """Seconds of a worker invocation kept back from the model call: the long-poll write, then the whole
    end-of-invocation flush of ingest/handoff.py (a Firehose phase, the two hand-off calls it reserves, the margin
    for returning), so a model call that takes all its budget still leaves Firehose its phase."""
    return LONGPOLL_WRITE_SECONDS + phase_seconds + 2 * call_seconds + RETURN_MARGIN_SECONDS


#: The reserve with the Lambda's default clients and phase (the handler passes its own delivery's figures).
WORKER_RESERVE_SECONDS = worker_reserve()
_RETRY_AFTER = 5


@dataclass(frozen=True)
class SeedJob:
    """One seed async call, as the worker receives it (JSON; no secret)."""

    request_id: str
    event_id: str
    team_id: str
    api_key_id: str
    model_id: str
    model_arn: str | None
    operation: str
    #: when the start began (seconds since the epoch): the event's latency counts from the client's request
    started_at: float
    business_unit: str | None
    #: the seed request body, as the start parsed and checked it
    body: Any

    @classmethod
    def of(cls, call: Call, body: Any) -> SeedJob:
        return cls(request_id=call.request_id, event_id=call.event_id, team_id=call.team.team_id,
                   api_key_id=call.key.api_key_id, model_id=call.model_id, model_arn=call.model_arn,
                   operation=call.operation, started_at=time.time() - (time.perf_counter() - call.started),
                   business_unit=call.team.business_unit, body=body)

    def encode(self) -> bytes:
        return fastjson.dumps({JOB_MARKER: JOB_VERSION, **asdict(self)})

    @classmethod
    def decode(cls, event: dict[str, Any]) -> SeedJob:
        """The job of a worker event; ``ValueError`` naming what is wrong with a malformed one."""
        if event.get(JOB_MARKER) != JOB_VERSION:
            raise ValueError(f"not a version {JOB_VERSION} seed async job")
        fields: dict[str, Any] = {name: event.get(name) for name in cls.__dataclass_fields__}
        for name in ("request_id", "event_id", "team_id", "api_key_id", "model_id", "operation"):
            if not isinstance(fields[name], str) or not fields[name]:
                raise ValueError(f"seed async job: {name} must be a non-empty string")
        if isinstance(fields["started_at"], bool) or not isinstance(fields["started_at"], int | float):
            raise ValueError("seed async job: started_at must be seconds since the epoch")
        return cls(**fields)


def is_job(event: Any) -> bool:
    """Whether a Lambda event is a worker job rather than an API Gateway request."""
    return isinstance(event, dict) and JOB_MARKER in event


class LambdaAsyncRunner:
    """The start's side (implements :class:`ingest.gateway.AsyncRunner`): park the item, invoke the worker.

    Args:
        longpoll: the long-poll store the worker completes.
        client: a ``lambda`` client.
        function_name: the worker function (name or ARN); the gateway's own function in a deployed unit.
    """

    def __init__(self, *, longpoll: Any, client: Any, function_name: str):
        self.longpoll = longpoll
        self.client = client
        self.function_name = function_name

    async def start(self, call: Call, body: Any) -> None:
        payload = SeedJob.of(call, body).encode()
        if len(payload) > MAX_JOB_BYTES:
            raise PayloadTooLarge(f"a streaming: true request must stay under {MAX_JOB_BYTES} bytes (this one is "
                                  f"{len(payload)}); send it without the streaming header")
        self.longpoll.start(call.request_id, team_id=call.team.team_id, ttl_seconds=LONGPOLL_TTL_SECONDS)
        try:
            # boto3 blocks: off the event loop. An Event invocation returns 202 once Lambda has queued the job.
            response = await asyncio.to_thread(self.client.invoke, FunctionName=self.function_name,
                                               InvocationType="Event", Payload=payload)
            if response.get("StatusCode") != 202:
                raise ServiceUnavailable(f"the worker invocation answered {response.get('StatusCode')}")
        except (ClientError, BotoCoreError, ServiceUnavailable) as exc:
            code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
            log.error("seed async request %s: the worker could not be invoked (%s)", call.request_id, code)
            refused = ServiceUnavailable("the gateway could not start the async call; no model was called, retry "
                                         "shortly", retry_after=_RETRY_AFTER)
            if self._fail_if_pending(call, refused, queued_maybe=not _refused_outright(exc)):
                raise refused from None
            # The invocation was queued after all (its answer was lost: a read timeout, a retry) and the worker
            # claimed the item: the call is the worker's, whose event is its one event. The start answers the id.

    def _fail_if_pending(self, call: Call, refused: ServiceUnavailable, *, queued_maybe: bool) -> bool:
        """Fail the call in the store only while no worker has claimed it (one conditional write): ``True`` if the
        start must answer ``refused`` (a job delivered later then loses its claim: no model call, no event).
        ``queued_maybe``: the invocation's failure leaves open whether Lambda queued the job."""
        try:
            if self.longpoll.complete_pending(call.request_id, result=error_result(refused)):
                return True
        except Exception:  # noqa: BLE001 - the store failed too: only the invocation's error can tell
            if not queued_maybe:  # nothing was queued, so no worker will run: the start's 503 is the outcome
                log.exception("seed async request %s: the store could not record the refusal", call.request_id)
                return True
            # Answering 503 (and its event) could contradict a worker that does run it; answering the id lets the
            # poll find out. If no worker ever runs, no model was called and polls see "not ready", then 404.
            log.exception("seed async request %s: neither the invocation nor the store answered; answering its id",
                          call.request_id)
            return False
        log.warning("seed async request %s: the worker invocation's answer was lost but the worker claimed it",
                    call.request_id)
        return False


def _refused_outright(exc: Exception) -> bool:
    """Lambda refused the invocation on its one and only attempt (a 4xx, no retry): no job was queued. Anything
    else (a timeout, a dropped connection, a 5xx, an error after retries) may follow an attempt Lambda queued."""
    if not isinstance(exc, ClientError):
        return False
    meta = exc.response.get("ResponseMetadata", {})
    return 400 <= int(meta.get("HTTPStatusCode") or 0) < 500 and int(meta.get("RetryAttempts") or 0) == 0


async def run_job(gw: Gateway, job: SeedJob, *, seconds_left: float,
                  reserve_seconds: float = WORKER_RESERVE_SECONDS) -> str:
    """Run one job in the worker: claim its item, call the model, emit the one event, complete the item.

    ``reserve_seconds`` of ``seconds_left`` are kept back from the model call for the long-poll write and the
    end-of-invocation flush (:func:`worker_reserve`). Returns the outcome (``ok``, ``failed``, ``timeout``,
    ``refused``, ``unclaimed`` (the store never let the claim through: the item is failed, its one error event
    emitted) or ``duplicate``: the item was not pending, so another delivery of the job ran it, the start failed
    it, or it expired; nothing was called or emitted). A failed long-poll write is logged, never raised.
    """
    now = time.monotonic()
    deadline = now + seconds_left - reserve_seconds
    # The write's share ends where the flush's begins, however early the model answers.
    write_by = WriteDeadline(at=now + seconds_left - max(0.0, reserve_seconds - LONGPOLL_WRITE_SECONDS),
                             attempt_seconds=_attempt_seconds(gw))
    owner = uuid.uuid4().hex  # this delivery's token: its retried claim is still its own (ingest/ports.py)
    taken = await _take(gw, job, owner, deadline=deadline, write_by=write_by)
    if taken is not None:
        return taken
    call = _rebuild_call(gw, job)
    try:
        team = gw.registry.get_team(job.team_id)
        if team is None:
            raise ServiceUnavailable("the team of this call is no longer registered")
        call.team = team
        request = build_request(call, job.body)
        provider = call.route(request)  # the journal entry is this container's: billed even if it is killed
    except Exception as exc:  # noqa: BLE001 - every refusal still gets its event and its poll answer
        await _fail(call, exc, write_by=write_by)
        return "refused"
    budget = deadline - time.monotonic()  # after the claim and the registry read, which took some of it
    if budget <= 0:  # a call abandoned at once would still be billed by the provider: not made at all
        await _fail(call, ServiceUnavailable("the worker had no time left for the model call; no model was "
                                             "called, retry shortly", retry_after=_RETRY_AFTER), write_by=write_by)
        return "refused"
    try:
        # Only the model call is timed: the event and the long-poll write come after, in the reserve.
        result = await asyncio.wait_for(provider.invoke(request), timeout=budget)
    except TimeoutError:
        # Abandoned here, not cancelled at the provider, which may still bill it: the event says 504 with the
        # estimated counts of the request (never 0), and the poll gets the same error.
        await _fail(call, UpstreamTimeout(f"the model did not answer within the worker's {budget:.0f} s"),
                    usage=placeholder_usage(request), write_by=write_by)
        return "timeout"
    except Exception as exc:  # noqa: BLE001 - a model error reaches the poll and the event
        await _fail(call, exc, write_by=write_by)
        return "failed"
    await finish_async(gw, call, result, write_by=write_by)
    return "ok"


def _attempt_seconds(gw: Gateway) -> float:
    """The worst case of one long-poll write of this gateway's store, from its client's configuration (an
    in-memory store has no client and takes no time)."""
    config = getattr(gw.longpoll, "client_config", None)
    return call_seconds(config) if config is not None else 0.0


async def _take(gw: Gateway, job: SeedJob, owner: str, *, deadline: float, write_by: WriteDeadline) -> str | None:
    """Claim the job's item: ``None`` if this delivery runs the call, else the outcome to return.

    A claim the store never answered (throttled, unreachable, after a few tries) fails the item instead, with the
    same owner token and only while it is still pending, and emits the call's one error event: polls get a JSON
    503, not "not ready" then 404. If that write finds the item taken, a last claim asks whether the taker is us
    (a claim applied whose answers were all lost); otherwise another delivery or the start owns the call."""
    claimed = await _claim(gw, job, owner, until=deadline, attempt_seconds=write_by.attempt_seconds)
    if claimed is not None:
        if claimed:
            return None
        log.info("seed async request %s: already run, failed by its start, or expired: nothing to do",
                 job.request_id)
        return "duplicate"
    refused = ServiceUnavailable("the gateway could not claim the async call; no model was called, retry shortly",
                                 retry_after=_RETRY_AFTER)
    try:
        failed = gw.longpoll.complete_pending(job.request_id, result=error_result(refused), owner=owner)
    except Exception:  # noqa: BLE001 - neither write went through: the call's event still says what happened
        log.exception("seed async request %s: the store refused both the claim and the failure", job.request_id)
        failed = True
    if failed:
        call = _rebuild_call(gw, job)
        call.fail(refused)  # the call's one event: status error, no tokens (no model was called)
        return "unclaimed"
    if await _claim(gw, job, owner, until=deadline, attempt_seconds=write_by.attempt_seconds, tries=1):
        return None
    log.info("seed async request %s: taken by another delivery or its start while the store was failing",
             job.request_id)
    return "duplicate"


async def _claim(gw: Gateway, job: SeedJob, owner: str, *, until: float, attempt_seconds: float,
                 tries: int = len(CLAIM_RETRY_DELAYS) + 1) -> bool | None:
    """``claim_run`` retried over brief pauses while its worst case still ends by ``until``: its answer, or
    ``None`` when the store never gave one."""
    pauses = (*CLAIM_RETRY_DELAYS[:tries - 1], None)
    for attempt, pause in enumerate(pauses, start=1):
        try:
            return bool(gw.longpoll.claim_run(job.request_id, team_id=job.team_id, owner=owner))
        except Exception as exc:  # noqa: BLE001 - throttling, a timeout, an outage: all worth another try
            log.warning("seed async request %s: claim attempt %d/%d failed (%s)", job.request_id, attempt,
                        len(pauses), type(exc).__name__)
        if pause is None or time.monotonic() + pause + attempt_seconds > until:
            return None
        await asyncio.sleep(pause)
    return None


def _rebuild_call(gw: Gateway, job: SeedJob) -> Call:
    # The key's id is all an event needs of the key; its hash is the registry's business, never the job's.
    key = KeyRecord(api_key_id=job.api_key_id, key_hash="", team_id=job.team_id, created_at="")
    # perf_counter is per process: start the clock as far back as the start's request began.
    started = time.perf_counter() - max(0.0, time.time() - job.started_at)
    return Call(gw=gw, request_id=job.request_id, key=key,
                team=Team(team_id=job.team_id, business_unit=job.business_unit), started=started,
                model_id=job.model_id, model_arn=job.model_arn, operation=job.operation, streaming=True,
                event_id=job.event_id)


async def _fail(call: Call, exc: BaseException, *, usage: Usage | None = None,
                write_by: WriteDeadline | None = None) -> None:
    await fail_async(call.gw, call, exc, usage=usage, write_by=write_by)
    if not isinstance(exc, ServiceError):
        log.exception("seed async request %s failed in the worker", call.request_id, exc_info=exc)


def worker_function(env: Mapping[str, str]) -> str | None:
    """The function seed async calls are handed to, from the environment; ``None``: run them inline (outside
    Lambda, or when told to with ``ASYNC_WORKER_INLINE``)."""
    name = env.get(ENV_ASYNC_WORKER_FUNCTION) or env.get("AWS_LAMBDA_FUNCTION_NAME") or None
    return None if name == ASYNC_WORKER_INLINE else name


def invoke_client(region: str | None) -> Any:
    """A ``lambda`` client for the start's Event invocations: Lambda queues one at once, so it fails fast rather
    than hold the start's answer."""
    return boto3.client("lambda", region_name=region, config=Config(
        connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}))
