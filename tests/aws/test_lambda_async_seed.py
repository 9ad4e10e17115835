"""The seed's async ("streaming: true") flow in Lambda, without API Gateway's 29 s wall: the start hands the model
call to a worker invocation of the same function (``ingest/async_worker.py``).

Real API Gateway REST proxy events go through ``handler``; DynamoDB and Firehose → S3 are moto; Bedrock is botocore's
Stubber (or, for the timeout, a slow Bedrock on 127.0.0.1); the start's ``lambda:Invoke`` is a Stubber whose
payload is captured and then run through ``handler`` in-process, as Lambda would deliver it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import ANY, Stubber
from moto import mock_aws

from common.constants import (
    ASYNC_WORKER_INLINE,
    ENV_ASYNC_WORKER_FUNCTION,
    ENV_FIREHOSE_STREAM,
    ENV_LONGPOLL_TABLE,
    ENV_SPOOL_DIR,
    ENV_TENANT_TABLE,
)
from ingest import async_worker, lambda_handler
from ingest.async_worker import (
    CLAIM_RETRY_DELAYS,
    JOB_MARKER,
    LONGPOLL_ATTEMPT_SECONDS,
    LONGPOLL_WRITE_SECONDS,
    WORKER_RESERVE_SECONDS,
    SeedJob,
    run_job,
    worker_function,
    worker_reserve,
)
from ingest.dynamo import LONGPOLL_CLIENT_CONFIG, DynamoLongPollStore
from ingest.firehose import MAX_BATCH_RECORDS, firehose_deliverer
from ingest.handoff import HandoffQueue, LambdaDelivery, TrackedEmitter, call_seconds, flush_invocation
from ingest.lambda_handler import GatewaySettings, build_runtime, handler
from ingest.longpoll import MemoryLongPollStore
from ingest.routes_seed import PARK_RETRY_DELAYS, WriteDeadline, park_result
from tests.aws.conftest import BUCKET, REGION, STREAM, gateway_resources, load_event
from tests.aws.test_firehose import make_events

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
FUNCTION = "modelmeter-gateway"
INVOKE_ACCEPTED = {"StatusCode": 202, "ResponseMetadata": {
    "RequestId": "0f7c1a9e-3a51-4c1b-8d0e-2b6a0c7e9f11", "HTTPStatusCode": 202, "RetryAttempts": 0,
    "HTTPHeaders": {"content-type": "application/json", "content-length": "0",
                    "x-amzn-requestid": "0f7c1a9e-3a51-4c1b-8d0e-2b6a0c7e9f11"}}}


@dataclass
class Context:
    """The attributes of Lambda's context object that Powertools, Mangum and the worker read."""

    remaining_ms: int = 25_000
    function_name: str = FUNCTION
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "6f4c7c1e-5b0a-4c55-9f0a-1f1e0c9d2b3a"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Unit:
    secret: str
    bedrock: Stubber
    invoke: Stubber
    s3: Any
    jobs: list[bytes] = field(default_factory=list)

    def start(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        event = load_event("apigw_rest_invoke_model")
        headers = {**event["headers"], "x-api-key": self.secret, "streaming": "true"}
        event.update(headers=headers, multiValueHeaders={k: [v] for k, v in headers.items()})
        if body is not None:
            event["body"] = json.dumps(body)
        return handler(event, Context())

    def poll(self, request_id: str) -> dict[str, Any]:
        event = load_event("apigw_rest_invoke_model")
        headers = {**event["headers"], "x-api-key": self.secret, "streaming": "true"}
        query = {"model_id": CLAUDE, "requestId": request_id}
        event.update(headers=headers, multiValueHeaders={k: [v] for k, v in headers.items()}, body="{}",
                     queryStringParameters=query, multiValueQueryStringParameters={k: [v] for k, v in query.items()})
        return handler(event, Context())

    def run_worker(self, job: bytes, *, remaining_ms: int = 25_000) -> dict[str, Any]:
        # What Lambda hands the function for an Event invocation: the payload, JSON-decoded.
        return handler(json.loads(job), Context(remaining_ms=remaining_ms))

    def events(self) -> list[dict[str, Any]]:
        found = []
        for obj in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            body = self.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
            found += [json.loads(line) for line in body.splitlines() if line]
        return found


def _expect_invoke(unit: Unit) -> None:
    unit.invoke.add_response("invoke", INVOKE_ACCEPTED,
                             {"FunctionName": FUNCTION, "InvocationType": "Event", "Payload": ANY})


def _expect_converse(unit: Unit) -> None:
    unit.bedrock.add_response("converse", load_event("converse_response"), {
        "modelId": CLAUDE, "messages": [{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
        "system": [{"text": "Answer in one sentence."}], "inferenceConfig": {"maxTokens": 100, "temperature": 0.2}})


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, str]]:
    """moto's tables, stream and bucket, a team with a key, and the environment Lambda gives the function."""
    env = {ENV_TENANT_TABLE: "modelmeter-tenants", ENV_LONGPOLL_TABLE: "modelmeter-longpoll",
           ENV_FIREHOSE_STREAM: STREAM, ENV_SPOOL_DIR: str(tmp_path / "spool"), "MODELMETER_BUSINESS_UNIT": "retail",
           "POWERTOOLS_METRICS_NAMESPACE": "modelmeter", "AWS_LAMBDA_FUNCTION_NAME": FUNCTION}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(ENV_ASYNC_WORKER_FUNCTION, raising=False)
    with mock_aws():
        ddb, s3, _, secret = gateway_resources()
        yield ddb, s3, secret


@contextmanager
def _installed(aws: tuple[Any, Any, str], bedrock: Any, *, stub_bedrock: bool = True, lambda_client: Any = None,
               dynamodb: Any = None) -> Iterator[Unit]:
    """The container's runtime, as ``handler`` builds it from the environment, with Bedrock and Lambda seams
    (``lambda_client``: a real client of its own instead of the Stubber; ``dynamodb``: the gateway's client)."""
    _, s3, secret = aws
    lam = lambda_client or boto3.client("lambda", region_name=REGION)
    jobs: list[bytes] = []
    # Stubber checks the call's shape; this hook keeps the payload Lambda would deliver to the worker.
    lam.meta.events.register("provide-client-params.lambda.Invoke",
                             lambda params, **_: jobs.append(params["Payload"]))
    bedrock_stub = Stubber(bedrock)
    if stub_bedrock:
        bedrock_stub.activate()
    invoke_stub = Stubber(lam)
    with invoke_stub if lambda_client is None else nullcontext():
        runtime = build_runtime(settings=GatewaySettings.from_env(), bedrock_client=bedrock, lambda_client=lam,
                                dynamodb=dynamodb)
        lambda_handler.set_runtime(runtime)
        try:
            yield Unit(secret=secret, bedrock=bedrock_stub, invoke=invoke_stub, s3=s3, jobs=jobs)
        finally:
            runtime.emitter.close(timeout=1)
            lambda_handler.set_runtime(None)
            if stub_bedrock:
                bedrock_stub.deactivate()


@pytest.fixture
def unit(aws: tuple[Any, Any, str]) -> Iterator[Unit]:
    with _installed(aws, boto3.client("bedrock-runtime", region_name=REGION)) as installed:
        yield installed


def test_start_answers_at_once_and_the_worker_bills_the_call_even_if_never_polled(unit: Unit) -> None:
    # GIVEN a worker invocation Lambda accepts, and NO Bedrock answer queued: a model call at the start would fail
    _expect_invoke(unit)
    # WHEN the seed's async call starts through API Gateway
    started = unit.start()
    # THEN it answers the request id at once, calls no model and bills nothing yet
    assert started["statusCode"] == 200, started
    (answer,) = json.loads(started["body"])
    request_id = answer["request_id"]
    assert list(answer) == ["request_id"]
    assert unit.events() == []
    unit.invoke.assert_no_pending_responses()
    # AND the worker's job names the call but carries no secret
    (job,) = unit.jobs
    assert json.loads(job)[JOB_MARKER] == 1 and json.loads(job)["request_id"] == request_id
    assert unit.secret not in job.decode()
    # WHEN Lambda runs the job (the model answers now) and nobody ever polls
    _expect_converse(unit)
    ran = unit.run_worker(job)
    # THEN the call is billed once, under the start's request id, as a streaming call
    assert json.loads(ran["body"]) == {"outcome": "ok"}
    unit.bedrock.assert_no_pending_responses()
    (event,) = unit.events()
    assert (event["request_id"], event["status"], event["http_status"], event["streaming"]) == (
        request_id, "ok", 200, True)
    assert (event["team_id"], event["model_id"], event["input_tokens"], event["output_tokens"]) == (
        "search", CLAUDE, 12, 9)
    assert event["event_id"] == json.loads(job)["event_id"]
    # AND a poll gets the text once; the next poll only the request id again; still one event
    first, second = unit.poll(request_id), unit.poll(request_id)
    assert json.loads(first["body"]) == [{"generated_text": "Paris is the capital of France."}]
    assert json.loads(second["body"]) == [{"request_id": request_id}]
    assert [e["request_id"] for e in unit.events()] == [request_id]


def test_a_poll_before_the_worker_ran_is_not_ready(unit: Unit) -> None:
    _expect_invoke(unit)
    request_id = json.loads(unit.start()["body"])[0]["request_id"]
    early = unit.poll(request_id)
    assert early["statusCode"] == 200 and json.loads(early["body"]) == [{"request_id": request_id}]
    assert unit.events() == []  # a poll is not a model call


def test_a_second_delivery_of_the_job_calls_no_model_and_bills_nothing(unit: Unit) -> None:
    # GIVEN a job that ran once
    _expect_invoke(unit)
    request_id = json.loads(unit.start()["body"])[0]["request_id"]
    (job,) = unit.jobs
    _expect_converse(unit)
    unit.run_worker(job)
    # WHEN Lambda delivers the same job again (a retry, or its at-least-once delivery), with no Bedrock answer queued
    again = unit.run_worker(job)
    # THEN the claim of the item stops it: no model call, no second event, and the result is still there to poll
    assert json.loads(again["body"]) == {"outcome": "duplicate"}
    assert [(e["request_id"], e["status"]) for e in unit.events()] == [(request_id, "ok")]
    assert json.loads(unit.poll(request_id)["body"]) == [{"generated_text": "Paris is the capital of France."}]


def test_a_failed_worker_invocation_answers_json_503_and_bills_one_error_without_a_model_call(unit: Unit) -> None:
    # GIVEN Lambda refusing the Event invocation (the function's concurrency is exhausted)
    unit.invoke.add_client_error("invoke", service_error_code="TooManyRequestsException", http_status_code=429,
                                 service_message="Rate Exceeded.")
    # WHEN the async call starts
    started = unit.start()
    # THEN the client gets a JSON 503 with Retry-After, and one event says so; no model was called
    assert started["statusCode"] == 503, started
    body = json.loads(started["body"])
    assert "no model was called" in body["message"]
    headers = {k.lower(): v for k, v in started["headers"].items()}
    assert headers["retry-after"] == "5"
    (event,) = unit.events()
    assert (event["request_id"], event["status"], event["http_status"]) == (
        headers["x-request-id"], "upstream_error", 503)
    assert event["input_tokens"] == 0
    # AND a poll of its id gets the same error, not an endless "not ready"
    polled = unit.poll(headers["x-request-id"])
    assert polled["statusCode"] == 503
    assert len(unit.events()) == 1


def test_a_model_error_in_the_worker_reaches_the_poll_and_its_event(unit: Unit) -> None:
    _expect_invoke(unit)
    request_id = json.loads(unit.start()["body"])[0]["request_id"]
    unit.bedrock.add_client_error("converse", service_error_code="ValidationException", http_status_code=400,
                                  service_message="The provided request is not valid")
    ran = unit.run_worker(unit.jobs[0])
    assert json.loads(ran["body"]) == {"outcome": "failed"}
    polled = unit.poll(request_id)
    assert polled["statusCode"] == 400
    assert json.loads(polled["body"])["type"] == "invalid_request_error"
    assert [(e["request_id"], e["status"], e["http_status"]) for e in unit.events()] == [
        (request_id, "client_error", 400)]


def test_a_request_over_the_async_payload_limit_is_refused_with_413_before_anything_is_parked(unit: Unit) -> None:
    # GIVEN a messages body whose job would exceed Lambda's asynchronous payload limit
    prompt = "x" * (async_worker.MAX_JOB_BYTES + 1)
    body = {"inputs": [{"role": "user", "content": [{"text": prompt}]}], "parameters": {"maxTokens": 100}}
    # WHEN it starts (no invocation is expected: the lambda Stubber would fail one)
    started = unit.start(body)
    # THEN a JSON 413 that says what to do, one client_error event, and no job
    assert started["statusCode"] == 413, started
    assert "without the streaming header" in json.loads(started["body"])["message"]
    assert [(e["status"], e["http_status"]) for e in unit.events()] == [("client_error", 413)]
    assert unit.jobs == []


def test_a_malformed_job_is_dropped_with_a_log_line_and_bills_nothing(unit: Unit,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    ran = unit.run_worker(json.dumps({JOB_MARKER: 1, "request_id": "r"}).encode())
    assert ran["statusCode"] == 400 and json.loads(ran["body"]) == {"outcome": "malformed"}
    assert any(r.getMessage() == "malformed seed async job" for r in caplog.records)
    assert unit.events() == []


# --- a model slower than the worker's time -------------------------------------------------------------------------

class SlowBedrock:
    """Bedrock's Converse on 127.0.0.1, answering after ``delay`` seconds (a generation longer than the time left)."""

    def __init__(self, delay: float) -> None:
        body = json.dumps({k: v for k, v in load_event("converse_response").items() if k != "ResponseMetadata"})

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_a_model_slower_than_the_worker_time_ends_in_504_billed_with_estimated_counts(
        aws: tuple[Any, Any, str]) -> None:
    slow = SlowBedrock(delay=2.0)
    bedrock = boto3.client("bedrock-runtime", region_name=REGION, endpoint_url=slow.url,
                           config=Config(retries={"max_attempts": 1}))
    try:
        with _installed(aws, bedrock, stub_bedrock=False) as unit:
            _expect_invoke(unit)
            request_id = json.loads(unit.start()["body"])[0]["request_id"]
            # WHEN the worker has 0.5 s for the model beyond what it keeps back for the flush
            ran = unit.run_worker(unit.jobs[0], remaining_ms=int((WORKER_RESERVE_SECONDS + 0.5) * 1000))
            # THEN the poll gets a 504 and the one event says so, billed with the request's estimate (never 0)
            assert json.loads(ran["body"]) == {"outcome": "timeout"}
            polled = unit.poll(request_id)
            assert polled["statusCode"] == 504
            (event,) = unit.events()
            assert (event["request_id"], event["status"], event["http_status"]) == (
                request_id, "upstream_error", 504)
            assert event["token_source"] == "estimated" and event["input_tokens"] > 0
    finally:
        slow.close()


# --- configuration ---------------------------------------------------------------------------------------------

def test_the_worker_is_the_function_itself_unless_configured_or_inline() -> None:
    assert worker_function({"AWS_LAMBDA_FUNCTION_NAME": FUNCTION}) == FUNCTION
    assert worker_function({"AWS_LAMBDA_FUNCTION_NAME": FUNCTION, ENV_ASYNC_WORKER_FUNCTION: "other"}) == "other"
    assert worker_function({"AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
                            ENV_ASYNC_WORKER_FUNCTION: ASYNC_WORKER_INLINE}) is None
    assert worker_function({}) is None  # outside Lambda (tests, uvicorn): run inside the start, as locally


# --- the claim that makes the worker idempotent ------------------------------------------------------------------

def test_claim_run_is_won_once_only_for_a_pending_item_of_the_team(aws: tuple[Any, Any, str]) -> None:
    ddb, _, _ = aws
    now = [1_796_000_000.0]
    dynamo = DynamoLongPollStore(table_name="modelmeter-longpoll", client=ddb, clock=lambda: now[0])
    memory = MemoryLongPollStore(clock=lambda: now[0])
    for store in (dynamo, memory):
        store.start("r1", team_id="search", ttl_seconds=900)
        assert not store.claim_run("r1", team_id="ads")  # another team's id is never run
        assert store.claim_run("r1", team_id="search")
        assert not store.claim_run("r1", team_id="search")  # the second delivery
        assert store.claim("r1", team_id="search") is None  # running: a poll sees "not ready"
        store.complete("r1", result={"status": 200, "body": [{"generated_text": "ok"}]})
        assert not store.claim_run("r1", team_id="search")  # done
        assert store.claim("r1", team_id="search") == {"status": 200, "body": [{"generated_text": "ok"}]}
        store.start("r2", team_id="search", ttl_seconds=900)
        now[0] += 901
        assert not store.claim_run("r2", team_id="search")  # expired: no item left to complete
        assert not store.claim_run("never-started", team_id="search")


# --- the long-poll write failing after the event was emitted -------------------------------------------------------

class ThrottledWrites:
    """The gateway's DynamoDB client (moto), whose UpdateItem calls that ``match`` get DynamoDB's real throttling
    error (through a Stubber-backed client, so it is the exception botocore raises) while ``on``."""

    def __init__(self, client: Any, match: Any) -> None:
        self._client, self._match, self.on, self.throttled = client, match, True, 0
        self._failing = boto3.client("dynamodb", region_name=REGION)
        self._stub = Stubber(self._failing)
        self._stub.activate()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **kwargs: Any) -> Any:
        if not (self.on and self._match(kwargs)):
            return self._client.update_item(**kwargs)
        self.throttled += 1
        self._stub.add_client_error("update_item", service_error_code="ProvisionedThroughputExceededException",
                                    service_message="The level of configured provisioned throughput for the table "
                                    "was exceeded.", http_status_code=400)
        return self._failing.update_item(**kwargs)


def _sets(value: str) -> Any:
    return lambda kwargs: value in kwargs.get("ExpressionAttributeValues", {})


def _longpoll_client() -> Any:
    """A DynamoDB client (moto) with the long-poll store's own timeouts and attempts, as the deployed store has."""
    return boto3.client("dynamodb", region_name=REGION, config=LONGPOLL_CLIENT_CONFIG)


@contextmanager
def _started_with_throttled(aws: tuple[Any, Any, str], sets: str) -> Iterator[tuple[Any, ThrottledWrites, str]]:
    """A unit whose long-poll writes setting ``sets`` (``:result``, ``:running``) are throttled, and one streaming
    call started on it: ``(unit, the throttling client, the call's request_id)``."""
    throttled = ThrottledWrites(_longpoll_client(), match=_sets(sets))
    with _installed(aws, boto3.client("bedrock-runtime", region_name=REGION), dynamodb=throttled) as unit:
        _expect_invoke(unit)
        yield unit, throttled, json.loads(unit.start()["body"])[0]["request_id"]


def test_a_result_write_failing_after_the_worker_emitted_still_delivers_the_event(aws: tuple[Any, Any, str]) -> None:
    # GIVEN a worker whose long-poll result writes are all throttled (its claim is not)
    with _started_with_throttled(aws, ":result") as (unit, throttled, request_id):
        _expect_converse(unit)
        # WHEN the job runs: the model answers, the event is emitted, then the result cannot be parked
        ran = unit.run_worker(unit.jobs[0])
        # THEN the invocation does not raise; the write was tried again briefly; the event reached Firehose → S3
        assert json.loads(ran["body"]) == {"outcome": "ok"}
        assert throttled.throttled == 1 + len(PARK_RETRY_DELAYS)
        (event,) = unit.events()
        assert (event["request_id"], event["status"], event["input_tokens"]) == (request_id, "ok", 12)
        assert lambda_handler._runtime is not None and lambda_handler._runtime.emitter.pending_events() == 0
        # AND the poll sees "not ready" (the item stays running until it expires, as docs/aws-runtime.md says),
        # and another delivery of the job calls nothing and bills nothing
        throttled.on = False
        assert json.loads(unit.poll(request_id)["body"]) == [{"request_id": request_id}]
        assert json.loads(unit.run_worker(unit.jobs[0])["body"]) == {"outcome": "duplicate"}
        assert len(unit.events()) == 1




def test_a_claim_throttled_on_every_try_fails_the_call_with_its_one_event(aws: tuple[Any, Any, str]) -> None:
    # GIVEN a container whose spool holds an event (left by an earlier invocation), and a claim throttled throughout
    with _started_with_throttled(aws, ":running") as (unit, throttled, request_id):
        runtime = lambda_handler._runtime
        assert runtime is not None
        earlier = make_events(1)[0]
        runtime.emitter.emit(earlier)
        # WHEN the job runs (Lambda never retries it): the claim is tried a few times, then given up
        ran = unit.run_worker(unit.jobs[0], remaining_ms=60_000)
        # THEN no model was called (the Stubber has no converse queued), the item is failed for the poll (JSON 503)
        assert json.loads(ran["body"]) == {"outcome": "unclaimed"}
        assert throttled.throttled == len(CLAIM_RETRY_DELAYS) + 1
        polled = unit.poll(request_id)
        assert polled["statusCode"] == 503 and json.loads(polled["body"])["type"] == "service_unavailable"
        # AND the call has exactly one event, an error without tokens; the spooled one was delivered too
        by_request = {e["request_id"]: e for e in unit.events()}
        assert sorted(by_request) == sorted([earlier["request_id"], request_id])
        failed = by_request[request_id]
        assert (failed["status"], failed["input_tokens"], failed["output_tokens"]) == ("upstream_error", 0, 0)
        assert runtime.emitter.pending_events() == 0
        # AND a second delivery of the job, with the store back, calls nothing and bills nothing
        throttled.on = False
        assert json.loads(unit.run_worker(unit.jobs[0])["body"]) == {"outcome": "duplicate"}
        assert len(unit.events()) == 2


def test_a_claim_throttled_once_is_retried_and_runs_the_call(aws: tuple[Any, Any, str]) -> None:
    with _started_with_throttled(aws, ":running") as (unit, throttled, request_id):
        _expect_converse(unit)
        original = throttled.update_item

        def once(**kwargs: Any) -> Any:  # the first claim attempt throttled, the retry goes through
            throttled.on = throttled.throttled == 0
            return original(**kwargs)
        throttled.update_item = once  # type: ignore[method-assign]
        assert json.loads(unit.run_worker(unit.jobs[0])["body"]) == {"outcome": "ok"}
        assert throttled.throttled == 1
        assert json.loads(unit.poll(request_id)["body"]) == [{"generated_text": "Paris is the capital of France."}]
        (event,) = unit.events()
        assert (event["request_id"], event["status"], event["input_tokens"]) == (request_id, "ok", 12)


# --- the start's invocation answer lost --------------------------------------------------------------------------

class LostAnswerLambda:
    """Lambda's Invoke API on 127.0.0.1 that takes each job and answers too late for the client's read timeout (the
    answer is lost, the job was queued): ``on_job`` runs with the payload first, as Lambda may run the worker."""

    def __init__(self, on_job: Any) -> None:
        self._released = threading.Event()
        released = self._released

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                on_job(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                released.wait(10)  # no answer while the client waits

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.client = boto3.client("lambda", region_name=REGION, endpoint_url=(
            f"http://127.0.0.1:{self._httpd.server_address[1]}"), config=Config(
            connect_timeout=1, read_timeout=0.3, retries={"mode": "standard", "total_max_attempts": 1}))
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _run_elsewhere(payload: bytes) -> None:
    # Another container's worker, at once: the same code as the handler's worker path, in the server's thread.
    assert lambda_handler._runtime is not None
    asyncio.run(run_job(lambda_handler._runtime.gateway, SeedJob.decode(json.loads(payload)), seconds_left=25))


def test_a_lost_invoke_answer_whose_worker_ran_is_answered_as_started_and_billed_once(
        aws: tuple[Any, Any, str]) -> None:
    lost = LostAnswerLambda(on_job=_run_elsewhere)
    try:
        with _installed(aws, boto3.client("bedrock-runtime", region_name=REGION),
                        lambda_client=lost.client) as unit:
            _expect_converse(unit)
            # WHEN the start's invocation times out after Lambda queued the job and the worker ran it
            started = unit.start()
            # THEN the start answers the request id (not 503), emits nothing: the worker's event is the one event
            assert started["statusCode"] == 200, started
            (answer,) = json.loads(started["body"])
            request_id = answer["request_id"]
            unit.bedrock.assert_no_pending_responses()
            (event,) = unit.events()
            assert (event["request_id"], event["status"], event["input_tokens"]) == (request_id, "ok", 12)
            assert event["event_id"] == json.loads(unit.jobs[0])["event_id"]
            # AND the poll gets the worker's text
            polled = unit.poll(request_id)
            assert json.loads(polled["body"]) == [{"generated_text": "Paris is the capital of France."}]
    finally:
        lost.close()


def test_a_lost_invoke_answer_before_the_worker_ran_fails_the_call_and_the_late_job_runs_nothing(
        aws: tuple[Any, Any, str]) -> None:
    lost = LostAnswerLambda(on_job=lambda payload: None)
    try:
        with _installed(aws, boto3.client("bedrock-runtime", region_name=REGION),
                        lambda_client=lost.client) as unit:
            # WHEN the start's invocation times out and no worker has claimed the item yet
            started = unit.start()
            # THEN the start fails the call: 503, one error event with no tokens
            assert started["statusCode"] == 503, started
            assert "no model was called" in json.loads(started["body"])["message"]
            (event,) = unit.events()
            assert (event["status"], event["http_status"], event["input_tokens"]) == ("upstream_error", 503, 0)
            # WHEN Lambda delivers the job after all (no Bedrock answer is queued: a model call would fail)
            ran = unit.run_worker(unit.jobs[0])
            # THEN its claim loses: no model call, no second event; the poll gets the start's 503
            assert json.loads(ran["body"]) == {"outcome": "duplicate"}
            assert len(unit.events()) == 1
            assert unit.poll(event["request_id"])["statusCode"] == 503
    finally:
        lost.close()


def test_complete_pending_wins_only_while_no_worker_claimed_the_item(aws: tuple[Any, Any, str]) -> None:
    refused = {"status": 503, "body": {"message": "no model was called", "type": "service_unavailable"}}
    answered = {"status": 200, "body": [{"generated_text": "ok"}]}
    dynamo = DynamoLongPollStore(table_name="modelmeter-longpoll", client=aws[0])
    for store in (dynamo, MemoryLongPollStore()):
        # the start fails a pending call first: a later delivery of its job loses the claim
        store.start("p1", team_id="search", ttl_seconds=900)
        assert store.complete_pending("p1", result=refused)
        assert not store.claim_run("p1", team_id="search")
        assert store.claim("p1", team_id="search") == refused
        # the worker claimed first: the start's write loses, before and after the worker completes
        store.start("p2", team_id="search", ttl_seconds=900)
        assert store.claim_run("p2", team_id="search")
        assert not store.complete_pending("p2", result=refused)
        store.complete("p2", result=answered)
        assert not store.complete_pending("p2", result=refused)
        assert store.claim("p2", team_id="search") == answered
        assert not store.complete_pending("never-started", result=refused)


# --- the worker's reserve -----------------------------------------------------------------------------------------

def test_the_worker_reserve_leaves_firehose_its_phase_with_a_handoff_queue(aws: tuple[Any, Any, str],
                                                                           tmp_path: Path) -> None:
    # GIVEN the Lambda's delivery with its default call time and phase, Firehose → S3 and a hand-off queue (moto)
    _, s3, _ = aws
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="modelmeter-usage-handoff")["QueueUrl"]
    delivery = LambdaDelivery(stream_name=STREAM, firehose=boto3.client("firehose", region_name=REGION),
                              queue=HandoffQueue(queue_url=queue_url, client=sqs))
    emitter = TrackedEmitter(deliver=delivery, spool_dir=tmp_path / "spool", batch_size=MAX_BATCH_RECORDS,
                             start=False)
    event = make_events(1)[0]
    emitter.emit(event)
    try:
        # WHEN a model call used all of its budget and the result write its allowance: what is left is the flush's
        left = worker_reserve() - LONGPOLL_WRITE_SECONDS
        assert left == WORKER_RESERVE_SECONDS - LONGPOLL_WRITE_SECONDS
        outcome = flush_invocation(emitter, delivery, remaining_seconds=left)
    finally:
        emitter.close(timeout=1)
    # THEN Firehose was tried and took the event; nothing went to the queue
    assert outcome.flushed and outcome.unrecorded == [] and outcome.handed_off == 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    lake = [json.loads(line) for key in keys
            for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines() if line]
    assert [e["event_id"] for e in lake] == [event["event_id"]]
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_a_refused_invocation_with_the_store_failing_too_is_still_a_503_with_its_event(
        aws: tuple[Any, Any, str]) -> None:
    # GIVEN the start's conditional write throttled, and Lambda refusing the invocation outright (403, no retry)
    throttled = ThrottledWrites(_longpoll_client(), match=lambda kw: _sets(":pending")(kw) and _sets(":result")(kw))
    with _installed(aws, boto3.client("bedrock-runtime", region_name=REGION), dynamodb=throttled) as unit:
        unit.invoke.add_client_error("invoke", service_error_code="AccessDeniedException", http_status_code=403,
                                     service_message="not authorized to perform: lambda:InvokeFunction")
        started = unit.start()
        # THEN no job was queued, so the start's refusal is the outcome: 503 and its one event
        assert started["statusCode"] == 503 and throttled.throttled == 1
        (event,) = unit.events()
        assert (event["status"], event["http_status"], event["input_tokens"]) == ("upstream_error", 503, 0)


def test_a_lost_invoke_answer_with_the_store_failing_too_answers_the_id_and_the_late_job_bills_it(
        aws: tuple[Any, Any, str]) -> None:
    # GIVEN the start's conditional write throttled, and the invocation's answer lost (the job may be queued)
    throttled = ThrottledWrites(_longpoll_client(), match=lambda kw: _sets(":pending")(kw) and _sets(":result")(kw))
    lost = LostAnswerLambda(on_job=lambda payload: None)
    try:
        with _installed(aws, boto3.client("bedrock-runtime", region_name=REGION), dynamodb=throttled,
                        lambda_client=lost.client) as unit:
            started = unit.start()
            # THEN the start cannot know whether a worker will run: it answers the id and emits nothing
            assert started["statusCode"] == 200, started
            request_id = json.loads(started["body"])[0]["request_id"]
            assert throttled.throttled == 1 and unit.events() == []
            # WHEN Lambda delivers the job after all, THEN the worker runs it and its event is the call's one event
            _expect_converse(unit)
            assert json.loads(unit.run_worker(unit.jobs[0])["body"]) == {"outcome": "ok"}
            assert [(e["request_id"], e["status"]) for e in unit.events()] == [(request_id, "ok")]
            assert json.loads(unit.poll(request_id)["body"]) == [{"generated_text": "Paris is the capital of France."}]
    finally:
        lost.close()


# --- review findings: lost conditional answers, unrecorded worker events, the result write's deadline ------------

def _losing_first_answer(target: str, marker: str) -> tuple[Any, dict[str, int]]:
    """A long-poll client (moto) whose first ``target`` call carrying ``marker`` is applied by the table, then its
    answer lost (botocore's ReadTimeoutError, which the client retries as it would a real one)."""
    client = _longpoll_client()
    lost = {"count": 0}

    def after_moto(request: Any, **_: Any) -> None:  # registered last: moto's handler has applied the write
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        amz_target = request.headers.get("X-Amz-Target", b"")
        amz_target = amz_target.decode() if isinstance(amz_target, bytes) else amz_target
        if amz_target.endswith(target) and marker in body and lost["count"] == 0:
            lost["count"] += 1
            raise ReadTimeoutError(endpoint_url="https://dynamodb")
    client.meta.events.register_last("before-send", after_moto)
    return client, lost


@pytest.mark.parametrize("write", ["claim_run", "complete_pending"])
def test_a_conditional_write_whose_answer_was_lost_is_still_won(aws: tuple[Any, Any, str], write: str) -> None:
    # GIVEN a store whose first claim (or first failure of a pending item) is applied but its answer lost
    client, lost = _losing_first_answer("UpdateItem", '"running"' if write == "claim_run" else '"result"')
    store = DynamoLongPollStore(table_name="modelmeter-longpoll", client=client)
    store.start("r1", team_id="search", ttl_seconds=900)
    # WHEN that write is made: botocore retries it, and the retry fails its own condition
    if write == "claim_run":
        won, other = store.claim_run("r1", team_id="search"), store.complete_pending("r1", result={"status": 503})
    else:
        won, other = store.complete_pending("r1", result={"status": 503}), store.claim_run("r1", team_id="search")
    # THEN the writer whose token the item carries is told it won, and the other side lost: one owner per call
    assert lost["count"] == 1
    assert (won, other) == (True, False)
    item = client.get_item(TableName="modelmeter-longpoll", Key={"pk": {"S": "r1"}})["Item"]
    assert item["status"]["S"] == ("running" if write == "claim_run" else "done") and item["owner"]["S"]


def test_a_claim_is_its_owners_again_and_never_anothers(aws: tuple[Any, Any, str]) -> None:
    dynamo = DynamoLongPollStore(table_name="modelmeter-longpoll", client=aws[0])
    for store in (MemoryLongPollStore(), dynamo):
        store.start("r1", team_id="search", ttl_seconds=900)
        assert store.claim_run("r1", team_id="search", owner="delivery-1")
        assert store.claim_run("r1", team_id="search", owner="delivery-1")  # asked again: still ours
        assert not store.claim_run("r1", team_id="search", owner="delivery-2")  # a second delivery
        assert not store.complete_pending("r1", result={"status": 503}, owner="start")
        store.start("r2", team_id="search", ttl_seconds=900)
        assert store.complete_pending("r2", result={"status": 503}, owner="start")
        assert store.complete_pending("r2", result={"status": 503}, owner="start")
        assert not store.complete_pending("r2", result={"status": 503}, owner="other")
        assert not store.claim_run("r2", team_id="search", owner="start")  # done, not running
        assert store.claim("r2", team_id="search") == {"status": 503}


class DeadFirehose:
    """Firehose unreachable (botocore's own connection error on every batch)."""

    def put_record_batch(self, **_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://firehose.invalid")


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize("model_fails", [False, True])
def test_a_worker_event_neither_firehose_nor_the_queue_took_is_counted(aws: tuple[Any, Any, str],
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         caplog: pytest.LogCaptureFixture,
                                                                         model_fails: bool) -> None:
    with _installed(aws, boto3.client("bedrock-runtime", region_name=REGION)) as unit:
        _expect_invoke(unit)
        unit.start()
        runtime = lambda_handler._runtime
        assert runtime is not None and runtime.delivery is not None
        delivery = runtime.delivery
        # GIVEN Firehose down (and no hand-off queue), and a model that answers or refuses the call
        delivery._firehose = firehose_deliverer(stream_name=STREAM, client=DeadFirehose(), sleep=lambda s: None,
                                                latest_start=lambda: delivery.latest_start)
        if model_fails:
            unit.bedrock.add_client_error("converse", service_error_code="ValidationException", http_status_code=400,
                                          service_message="The provided model identifier is invalid.")
        else:
            _expect_converse(unit)
        capsys.readouterr()
        # WHEN the worker runs the job
        ran = unit.run_worker(unit.jobs[0])
        # THEN whatever the outcome, its billed event (still spooled) is logged and counted as not recorded,
        # and the worker's own answer is not dressed up as an API 503
        out = capsys.readouterr().out
        assert runtime.emitter.pending_events() == 1
        assert json.loads(ran["body"])["outcome"] == ("failed" if model_fails else "ok")
        assert '"UsageNotRecorded":[1.0]' in out
        (logged,) = [r for r in caplog.records if r.getMessage() == "usage not recorded"]
        assert logged.levelname == "ERROR"


class HangingLongPoll(MemoryLongPollStore):
    """A store whose writes fail after taking their client's whole attempt time (here: a short sleep)."""

    client_config = Config(connect_timeout=0.1, read_timeout=0.1, retries={"total_max_attempts": 1})

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def complete(self, request_id: str, *, result: dict[str, Any]) -> None:
        self.writes += 1
        time.sleep(0.2)
        raise ConnectionError("the table did not answer")


def test_the_result_write_never_starts_an_attempt_past_its_share_of_the_reserve() -> None:
    store = HangingLongPoll()
    gw = type("Gw", (), {"longpoll": store})()
    # GIVEN a deadline that leaves room for one attempt (0.2 s) but not for a pause and a second one
    write_by = WriteDeadline(at=time.monotonic() + 0.3, attempt_seconds=async_worker._attempt_seconds(gw))
    assert write_by.attempt_seconds == pytest.approx(0.2)
    # WHEN the result is parked against a failing store
    parked = asyncio.run(park_result(gw, "r1", {"status": 200}, write_by=write_by))  # type: ignore[arg-type]
    # THEN one attempt was made, none after the deadline could not hold it, and the call ends by the deadline
    assert (parked, store.writes) == (False, 1)
    assert time.monotonic() <= write_by.at
    # AND without a deadline the brief retries all run (the inline flow, which has no reserve to keep)
    store.writes = 0
    assert not asyncio.run(park_result(gw, "r1", {"status": 200}))  # type: ignore[arg-type]
    assert store.writes == len(PARK_RETRY_DELAYS) + 1


def test_the_write_share_of_the_reserve_holds_one_whole_attempt_of_the_store_client() -> None:
    assert LONGPOLL_ATTEMPT_SECONDS == call_seconds(LONGPOLL_CLIENT_CONFIG)
    assert LONGPOLL_WRITE_SECONDS == LONGPOLL_ATTEMPT_SECONDS + sum(PARK_RETRY_DELAYS)
    store = DynamoLongPollStore(table_name="t", client=_longpoll_client())
    gw = type("Gw", (), {"longpoll": store})()
    assert async_worker._attempt_seconds(gw) == LONGPOLL_ATTEMPT_SECONDS  # type: ignore[arg-type]
