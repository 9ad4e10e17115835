"""The Lambda entry point: real API Gateway REST (v1) proxy events through ``handler``, with moto DynamoDB and
Firehose → S3, and Bedrock on a Stubber. Asserts the proxy response and the usage event that reached Firehose."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from common.constants import ENV_FIREHOSE_STREAM, ENV_LONGPOLL_TABLE, ENV_SPOOL_DIR, ENV_TENANT_TABLE
from ingest import lambda_handler
from ingest.lambda_handler import GatewaySettings, build_runtime, handler
from tests.aws.conftest import BUCKET, REGION, STREAM, gateway_resources, load_event

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"


@dataclass
class LambdaContext:
    """The attributes of the real context object that Powertools and Mangum read."""

    function_name: str = "modelmeter-gateway"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:modelmeter-gateway"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "6f4c7c1e-5b0a-4c55-9f0a-1f1e0c9d2b3a"
    log_group_name: str = "/aws/lambda/modelmeter-gateway"
    log_stream_name: str = "2026/11/25/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 25_000


@dataclass
class Stack:
    secret: str
    key_id: str
    stubber: Stubber
    s3: Any
    env: dict[str, str]

    def call(self, name: str, *, secret: str | None = None, **overrides: Any) -> dict[str, Any]:
        event = json.loads(json.dumps(load_event(name)).replace("${API_KEY}", secret or self.secret))
        for key, value in overrides.items():
            event[key] = value
        return handler(event, LambdaContext())

    def firehose_events(self) -> list[dict[str, Any]]:
        events = []
        for obj in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            body = self.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
            events += [json.loads(line) for line in body.splitlines() if line]
        return events


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    env = {ENV_TENANT_TABLE: "modelmeter-tenants", ENV_LONGPOLL_TABLE: "modelmeter-longpoll",
           ENV_FIREHOSE_STREAM: STREAM, ENV_SPOOL_DIR: str(tmp_path / "spool"), "MODELMETER_BUSINESS_UNIT": "retail",
           "POWERTOOLS_METRICS_NAMESPACE": "modelmeter"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        _, s3, record, secret = gateway_resources()
        bedrock = boto3.client("bedrock-runtime", region_name=REGION)
        with Stubber(bedrock) as stubber:
            # The handler builds its runtime from the environment, like in Lambda; only Bedrock is injected.
            runtime = build_runtime(settings=GatewaySettings.from_env(), bedrock_client=bedrock)
            lambda_handler.set_runtime(runtime)
            try:
                yield Stack(secret=secret, key_id=record.api_key_id, stubber=stubber, s3=s3, env=env)
            finally:
                runtime.emitter.close(timeout=1)
                lambda_handler.set_runtime(None)


def test_seed_chat_through_api_gateway_event_bills_one_event_to_firehose(stack: Stack,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN Bedrock answering with cache tokens, and the seed's messages call as API Gateway delivers it
    stack.stubber.add_response("converse", load_event("converse_response"), {
        "modelId": CLAUDE, "messages": [{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
        "system": [{"text": "Answer in one sentence."}], "inferenceConfig": {"maxTokens": 100, "temperature": 0.2}})
    # WHEN Lambda invokes the handler
    response = stack.call("apigw_rest_invoke_model")
    # THEN the proxy response is the seed's one-element array
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == [{"generated_text": "Paris is the capital of France."}]
    # AND exactly one usage event reached Firehose, with the key's id, the exact cache tokens and no text
    (event,) = stack.firehose_events()
    assert (event["team_id"], event["api_key_id"], event["business_unit"]) == ("search", stack.key_id, "retail")
    assert (event["provider"], event["model_id"], event["operation"], event["status"]) == (
        "bedrock", CLAUDE, "chat", "ok")
    assert (event["input_tokens"], event["output_tokens"]) == (12, 9)
    assert (event["cache_read_input_tokens"], event["cache_write_input_tokens"]) == (1536, 512)
    assert event["request_id"] == {k.lower(): v for k, v in response["headers"].items()}["x-request-id"]
    # AND nothing secret or private was logged
    # (Powertools binds stdout at import, so the records are read from the logging system, extras included)
    served = [r for r in caplog.records if r.getMessage() == "request served"]
    assert len(served) == 1 and served[0].status_code == 200 and served[0].path == "/invoke_model"
    logged = " ".join(repr(r.__dict__) for r in caplog.records)
    for private in (stack.secret, "capital of France", "Paris"):
        assert private not in logged
    assert json.dumps(event).find("Paris") == -1


def test_bad_key_spoofed_team_and_list_models(stack: Stack) -> None:
    # A wrong key: the seed's 403 with a JSON body, and no event (the request never authenticated)
    denied = stack.call("apigw_rest_invoke_model", secret="mk_live_x.not-a-key")
    assert denied["statusCode"] == 403 and "message" in json.loads(denied["body"])
    # A team_id header naming another team: 403, billed to the key's team as a client error
    event = load_event("apigw_rest_invoke_model")
    headers = {**event["headers"], "x-api-key": stack.secret, "team_id": "ads"}
    spoofed = stack.call("apigw_rest_invoke_model", headers=headers,
                         multiValueHeaders={k: [v] for k, v in headers.items()})
    assert spoofed["statusCode"] == 403
    # Listing models: moto has no Bedrock control plane, so the provider falls back to its configured models
    listed = stack.call("apigw_rest_list_models")
    assert listed["statusCode"] == 200
    assert json.loads(listed["body"])[0]["modelSummaries"]
    events = stack.firehose_events()
    assert [(e["team_id"], e["status"], e["http_status"]) for e in events] == [("search", "client_error", 403)]


def test_seed_async_flow_finishes_within_the_invocation_and_claims_once(stack: Stack) -> None:
    # GIVEN the seed's async ("streaming: true") call
    stack.stubber.add_response("converse", load_event("converse_response"), {"modelId": CLAUDE, "messages": ANY,
                                                                             "system": ANY, "inferenceConfig": ANY})
    event = load_event("apigw_rest_invoke_model")
    headers = {**event["headers"], "x-api-key": stack.secret, "streaming": "true"}
    mv = {k: [v] for k, v in headers.items()}
    # WHEN it starts, then polls twice with requestId
    started = stack.call("apigw_rest_invoke_model", headers=headers, multiValueHeaders=mv)
    request_id = json.loads(started["body"])[0]["request_id"]
    query = {"model_id": CLAUDE, "requestId": request_id}
    poll = {"headers": headers, "multiValueHeaders": mv, "queryStringParameters": query,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()}, "body": "{}"}
    first = stack.call("apigw_rest_invoke_model", **poll)
    second = stack.call("apigw_rest_invoke_model", **poll)
    # THEN the first poll gets the text (the call finished before the start invocation returned), the second
    # gets only the request id again, and exactly one event was billed, for the model call
    assert json.loads(first["body"]) == [{"generated_text": "Paris is the capital of France."}]
    assert json.loads(second["body"]) == [{"request_id": request_id}]
    events = stack.firehose_events()
    assert [(e["request_id"], e["status"], e["streaming"], e["input_tokens"]) for e in events] == [
        (request_id, "ok", True, 12)]


def test_openai_route_through_lambda(stack: Stack) -> None:
    stack.stubber.add_response("converse", load_event("converse_response"), {
        "modelId": CLAUDE, "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "inferenceConfig": {"maxTokens": 50}})
    response = stack.call("apigw_rest_v1_chat")
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["choices"][0]["message"]["content"] == "Paris is the capital of France."
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 1536}
    assert [e["cache_write_input_tokens"] for e in stack.firehose_events()] == [512]


def test_settings_name_every_missing_variable() -> None:
    with pytest.raises(ValueError) as raised:
        GatewaySettings.from_env({ENV_TENANT_TABLE: "t"})
    assert ENV_LONGPOLL_TABLE in str(raised.value) and ENV_FIREHOSE_STREAM in str(raised.value)
    settings = GatewaySettings.from_env({ENV_TENANT_TABLE: "t", ENV_LONGPOLL_TABLE: "l", ENV_FIREHOSE_STREAM: "f",
                                         "MODELMETER_SAGEMAKER_ENDPOINTS": '{"m": {"endpoint_name": "e"}}'})
    assert settings.spool_dir == "/tmp/spool" and settings.sagemaker_endpoints == {"m": {"endpoint_name": "e"}}


def test_openai_streaming_through_lambda_is_buffered_but_billed(stack: Stack, stream_server: Any,
                                                               tmp_path: Path) -> None:
    # GIVEN a container whose Bedrock answers ConverseStream (event-stream bytes from a local server)
    from tests.aws.conftest import converse_stream_body

    stream_server.body = converse_stream_body(load_event("converse_stream_events"))
    settings = GatewaySettings.from_env().model_copy(update={"spool_dir": str(tmp_path / "spool2")})
    runtime = build_runtime(settings=settings, bedrock_client=stream_server.client("bedrock-runtime"))
    lambda_handler.set_runtime(runtime)
    try:
        event = load_event("apigw_rest_v1_chat")
        body = {**json.loads(event["body"]), "stream": True, "stream_options": {"include_usage": True}}
        # WHEN the openai SDK's streaming request arrives through API Gateway
        response = stack.call("apigw_rest_v1_chat", body=json.dumps(body))
    finally:
        runtime.emitter.close(timeout=1)
    # THEN API Gateway gets the whole SSE body at once (REST proxy integrations buffer), usage included
    assert response["statusCode"] == 200
    data = [json.loads(line[6:]) for line in response["body"].splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in data if c["choices"]) == "Hello there!"
    assert data[-1]["usage"]["completion_tokens"] == 5
    assert [(e["streaming"], e["cache_read_input_tokens"]) for e in stack.firehose_events()] == [(True, 1024)]


def test_misconfigured_container_answers_json_500_and_logs_why(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(ENV_FIREHOSE_STREAM, raising=False)
    monkeypatch.setenv(ENV_TENANT_TABLE, "t")
    monkeypatch.setenv(ENV_LONGPOLL_TABLE, "l")
    lambda_handler.set_runtime(None)
    response = handler(load_event("apigw_rest_list_models"), LambdaContext())
    assert response["statusCode"] == 500 and "misconfigured" in json.loads(response["body"])["message"]
    (record,) = [r for r in caplog.records if r.getMessage() == "gateway cannot start"]
    assert ENV_FIREHOSE_STREAM in record.reason
