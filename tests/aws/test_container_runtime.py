"""The gateway as its container runs it: ``python -m ingest.container`` in its own process on 127.0.0.1, DynamoDB,
Firehose and S3 on moto's server, Bedrock on a local HTTP server speaking the event-stream protocol frame by frame.

Nothing in the process is replaced for the test: it finds AWS through the SDK's own endpoint variables
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``), as it would find VPC endpoints. The tests prove real
incremental SSE through the ``openai`` SDK, the seed's async flow finishing in the background, and SIGTERM draining
the spool into Firehose → S3 exactly once (and, when Firehose is down, leaving it on the volume for the next start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import openai
import pytest
import requests

from common import constants as c
from common.contracts import Team
from ingest import container
from ingest.dynamo import DynamoTenantRegistry
from ingest.spool import OPEN_SUFFIX, SEGMENT_SUFFIX
from tests.aws.conftest import REGION, converse_stream_body, create_table, load_event
from tests.conftest import AWS_TEST_ENV
from tests.faults.harness import free_port

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
#: Frames sent before the model "thinks": the stream's start and its first words. The rest waits for the client.
FIRST_FRAMES = 2


class SlowBedrock:
    """Bedrock runtime on 127.0.0.1: ``/converse`` answers JSON; ``/converse-stream`` sends its first frames, then
    waits until ``release`` is set before producing the rest (``finished`` is set once the last frame is out)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()
        self.paths: list[str] = []
        frames = [converse_stream_body([e]) for e in load_event("converse_stream_events")]
        answer = json.dumps({k: v for k, v in load_event("converse_response").items()
                             if k != "ResponseMetadata"}).encode()
        bedrock = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                bedrock.paths.append(self.path)
                streaming = self.path.endswith("/converse-stream")
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.amazon.eventstream" if streaming
                                 else "application/json")
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                if not streaming:
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                # As Bedrock streams: chunked transfer encoding, one event-stream message per chunk.
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, frame in enumerate(frames):
                    if i == FIRST_FRAMES:
                        bedrock.release.wait(timeout=20)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                bedrock.finished.set()

            def log_message(self, *args: Any) -> None:
                pass

        Handler.protocol_version = "HTTP/1.1"  # chunked encoding needs HTTP/1.1
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class Unit:
    """One unit's AWS resources on moto's server, and the environment a task of it gets."""

    moto: str
    spool: Path
    secret: str
    env: dict[str, str]
    bucket: str
    stream: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.moto)

    def create_stream(self) -> None:
        self.client("firehose").create_delivery_stream(
            DeliveryStreamName=self.stream, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/fh",
                                                "BucketARN": f"arn:aws:s3:::{self.bucket}"})

    def delivered(self) -> list[dict[str, Any]]:
        """Every usage event Firehose delivered to the bucket."""
        s3 = self.client("s3")
        events = []
        for obj in s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            body = s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read().decode()
            events += [json.loads(line) for line in body.splitlines() if line]
        return events

    def spooled(self) -> int:
        """Events in the spool's files (open and closed segments)."""
        return sum(1 for p in [*self.spool.glob(f"*{OPEN_SUFFIX}"), *self.spool.glob(f"*{SEGMENT_SUFFIX}")]
                   for line in p.read_bytes().splitlines() if line.strip())

    def start(self, **env: str) -> tuple[subprocess.Popen[str], str]:
        """The container's command in a process of its own; returns once ``/healthz`` answers 200."""
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "ingest.container"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True,
                                env={**self.env, c.ENV_PORT: str(port), **env})
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return proc, url
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, f"the container exited: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "the container did not answer /healthz in 60 s"
            time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """What ECS does to stop a task: SIGTERM, then wait (stopTimeout)."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    return code, proc.stderr.read() if proc.stderr else ""


@pytest.fixture
def bedrock() -> Iterator[SlowBedrock]:
    server = SlowBedrock()
    yield server
    server.close()


@pytest.fixture
def unit(moto_s3_server: str, bedrock: SlowBedrock, tmp_path: Path) -> Iterator[Unit]:
    suffix = uuid.uuid4().hex[:8]
    tenants, longpoll, bucket, stream = (f"tenants-{suffix}", f"longpoll-{suffix}", f"lake-{suffix}",
                                         f"usage-{suffix}")
    ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_s3_server)
    create_table(ddb, tenants)
    create_table(ddb, longpoll, ttl=True)
    registry = DynamoTenantRegistry(table_name=tenants, client=ddb)
    registry.put_team(Team(team_id="search", cost_center="CC-42", allowed_models=("anthropic.*",)))
    _, secret = registry.create_key("search")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELMETER_"))}
    env |= {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_s3_server, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.url,
            c.ENV_TENANT_TABLE: tenants, c.ENV_LONGPOLL_TABLE: longpoll, c.ENV_FIREHOSE_STREAM: stream,
            c.ENV_BUSINESS_UNIT: "retail", c.ENV_SPOOL_DIR: str(tmp_path / "spool"), c.ENV_HOST: "127.0.0.1",
            # Segments are handed to Firehose only on SIGTERM, so the drain is what delivers them.
            c.ENV_SPOOL_FLUSH_SECONDS: "3600"}
    running = Unit(moto=moto_s3_server, spool=tmp_path / "spool", secret=secret, env=env, bucket=bucket,
                   stream=stream)
    running.client("s3").create_bucket(Bucket=bucket)
    running.create_stream()
    yield running
    for proc in running.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _first_chunk_before_last_frame(url: str, secret: str, bedrock: SlowBedrock) -> tuple[bool, str, Any]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0, timeout=30)
    stream = client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Hi"}], stream=True,
                                            stream_options={"include_usage": True})
    text, usage, early = "", None, None
    for chunk in stream:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta and early is None:
            # The first words are here: the model has not produced its last frame yet (it waits for us)
            early = not bedrock.finished.is_set()
            bedrock.release.set()
        text += delta or ""
        usage = chunk.usage or usage
    return bool(early), text, usage


def test_sse_is_incremental_seed_async_runs_in_the_background_and_sigterm_drains_the_spool_once(
        unit: Unit, bedrock: SlowBedrock) -> None:
    # GIVEN the gateway as its container runs it
    proc, url = unit.start()
    # WHEN a /v1 stream is read with the openai SDK
    early, text, usage = _first_chunk_before_last_frame(url, unit.secret, bedrock)
    # THEN its first chunk arrived while the model was still producing (real SSE, nothing buffered), all of it came
    assert early, "the first chunk only arrived after the model's last frame: the response was buffered"
    assert text == "Hello there!" and (usage.prompt_tokens, usage.completion_tokens) == (10 + 1024, 5)
    # WHEN the seed's async flow starts a call and polls for it
    headers = {"x-api-key": unit.secret, "team_id": "search", "messages_api": "true", "streaming": "true"}
    body = {"inputs": [{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
            "parameters": {"maxTokens": 100}}
    started = requests.post(f"{url}/invoke_model", params={"model_id": CLAUDE}, json=body, headers=headers,
                            timeout=30)
    assert started.status_code == 200, started.text
    (request_id,) = [item["request_id"] for item in started.json()]
    answer = None
    for _ in range(100):  # the seed's client polls every 2 s for 120 s; here every 0.1 s, at most 100 times
        polled = requests.post(f"{url}/invoke_model", params={"model_id": CLAUDE, "requestId": request_id},
                               json={}, headers=headers, timeout=30).json()
        if "generated_text" in polled[0]:
            answer = polled[0]["generated_text"]
            break
        time.sleep(0.1)
    # THEN the call finished in the process after its start request had returned
    assert answer == "Paris is the capital of France."
    assert [p.rsplit("/", 1)[-1] for p in bedrock.paths] == ["converse-stream", "converse"]
    # AND both events are in the spool on the task's storage, none delivered yet
    assert unit.spooled() == 2 and unit.delivered() == []
    # WHEN ECS stops the task
    code, stderr = stop(proc)
    # THEN it exits 0 having delivered each event exactly once, and its spool is empty
    assert code == 0, stderr
    events = unit.delivered()
    assert sorted((e["streaming"], e["status"], e["input_tokens"]) for e in events) == [(True, "ok", 10),
                                                                                         (True, "ok", 12)]
    assert len({e["event_id"] for e in events}) == 2 and request_id in {e["request_id"] for e in events}
    assert {e["business_unit"] for e in events} == {"retail"} and unit.spooled() == 0


def test_what_firehose_refuses_on_sigterm_stays_on_the_volume_and_the_next_task_sends_it_once(
        unit: Unit, bedrock: SlowBedrock) -> None:
    # GIVEN a task that served a call while its Firehose stream is gone (deleted, or unreachable)
    bedrock.release.set()
    unit.client("firehose").delete_delivery_stream(DeliveryStreamName=unit.stream)
    proc, url = unit.start(**{c.ENV_DRAIN_SECONDS: "5"})
    reply = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {unit.secret}"},
                          json={"model": CLAUDE, "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    assert reply.status_code == 200, reply.text
    # WHEN it is stopped THEN it says so (exit 1) and the event stays in the spool
    code, stderr = stop(proc)
    assert code == 1 and "usage events still in" in stderr
    assert unit.spooled() == 1 and unit.delivered() == []
    # WHEN the stream is back and a task starts on the same volume, then stops
    unit.create_stream()
    proc, _ = unit.start()
    code, stderr = stop(proc)
    # THEN the event reached Firehose once, and the spool is empty
    assert code == 0, stderr
    (event,) = unit.delivered()
    assert (event["status"], event["request_id"]) == ("ok", reply.headers["x-request-id"])
    assert unit.spooled() == 0


def test_with_a_hand_off_queue_what_firehose_refuses_on_sigterm_goes_to_the_queue_before_the_task_ends(
        unit: Unit, bedrock: SlowBedrock) -> None:
    # GIVEN a task with the Lambda's hand-off queue, serving a call while its Firehose stream is gone
    bedrock.release.set()
    sqs = unit.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"handoff-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    unit.client("firehose").delete_delivery_stream(DeliveryStreamName=unit.stream)
    # 8 s: the queue's 40 % must fit one worst-case call of the task's clients (3 s), or no call may begin
    proc, url = unit.start(**{c.ENV_HANDOFF_QUEUE_URL: queue_url, c.ENV_DRAIN_SECONDS: "8"})
    reply = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {unit.secret}"},
                          json={"model": CLAUDE, "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    assert reply.status_code == 200, reply.text
    # WHEN ECS stops it THEN nothing is left on the storage that dies with the task: the queue took the event
    code, stderr = stop(proc)
    assert code == 0, stderr
    assert unit.spooled() == 0 and unit.delivered() == []
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    events = [json.loads(line) for m in messages for line in m["Body"].splitlines() if line]
    assert [(e["request_id"], e["status"]) for e in events] == [(reply.headers["x-request-id"], "ok")]


def test_a_bad_environment_is_one_line_naming_every_variable(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in (c.ENV_TENANT_TABLE, c.ENV_LONGPOLL_TABLE, c.ENV_FIREHOSE_STREAM):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(c.ENV_PORT, "http")
    assert container.main() == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("modelmeter gateway cannot start:") and "\n" not in line
    assert c.ENV_TENANT_TABLE in line and c.ENV_FIREHOSE_STREAM in line
    with pytest.raises(ValueError, match=c.ENV_PORT):
        container.ContainerSettings.from_env({c.ENV_PORT: "http", c.ENV_DRAIN_SECONDS: "5"})
    assert container.ContainerSettings.from_env({c.ENV_PORT: "9000"}).port == 9000
