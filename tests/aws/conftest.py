"""Shared fixtures of the AWS-side tests: credentials for moto/Stubber, real payload files, and a local HTTP server
that answers with AWS event-stream frames (what botocore parses for ConverseStream and the response streams)."""

from __future__ import annotations

import binascii
import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from common.contracts import Team
from ingest.dynamo import DynamoTenantRegistry

EVENTS = Path(__file__).parent / "events"
REGION = "us-east-1"
STREAM = "modelmeter-usage"
BUCKET = "modelmeter-lake-test"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, so no test can reach a real account."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def create_table(client: Any, name: str, *, ttl: bool = False) -> None:
    """A gateway table as infra/ creates it: string partition key ``pk``, on demand, optional TTL."""
    from common.constants import DYNAMO_PARTITION_KEY, DYNAMO_TTL_ATTRIBUTE

    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": DYNAMO_PARTITION_KEY, "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": DYNAMO_PARTITION_KEY, "KeyType": "HASH"}])
    if ttl:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": DYNAMO_TTL_ATTRIBUTE})


def gateway_resources() -> tuple[Any, Any, Any, str]:
    """Inside ``mock_aws``: the gateway's two tables, the lake bucket and the usage stream delivering into it, and
    team ``search`` (cost centre CC-42, Anthropic models) with one key. Returns the DynamoDB and S3 clients, the
    key's record and its secret."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    create_table(ddb, "modelmeter-tenants")
    create_table(ddb, "modelmeter-longpoll", ttl=True)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    boto3.client("firehose", region_name=REGION).create_delivery_stream(
        DeliveryStreamName=STREAM, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/fh",
                                            "BucketARN": f"arn:aws:s3:::{BUCKET}"})
    registry = DynamoTenantRegistry(table_name="modelmeter-tenants", client=ddb)
    registry.put_team(Team(team_id="search", cost_center="CC-42", allowed_models=("anthropic.*",)))
    record, secret = registry.create_key("search")
    return ddb, s3, record, secret


def partial_put(client: Any, stream: str, records: list[dict[str, Any]], refused: list[bool]) -> dict[str, Any]:
    """``PutRecordBatch`` of the records not ``refused`` through ``client`` (moto), answered as Firehose answers a
    partial failure (tests/aws/events/firehose_put_record_batch_partial.json) for the refused ones."""
    accepted = [r for r, bad in zip(records, refused, strict=True) if not bad]
    real = client.put_record_batch(DeliveryStreamName=stream, Records=accepted) if accepted else {
        "RequestResponses": []}
    ids = iter(real["RequestResponses"])
    template = load_event("firehose_put_record_batch_partial")["RequestResponses"][1]
    return {"FailedPutCount": sum(refused), "Encrypted": False,
            "RequestResponses": [dict(template) if bad else next(ids) for bad in refused]}


def load_event(name: str) -> Any:
    """A real-shaped payload from ``tests/aws/events/<name>.json``."""
    return json.loads((EVENTS / f"{name}.json").read_text())


# --- AWS event stream (application/vnd.amazon.eventstream) ---------------------------------------------------------

def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("B", len(raw_name)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def encode_frame(event_type: str, payload: bytes, *, message_type: str = "event") -> bytes:
    """One event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    kind = ":exception-type" if message_type == "exception" else ":event-type"
    headers = (_header(kind, event_type) + _header(":content-type", "application/json")
               + _header(":message-type", message_type))
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def converse_stream_body(events: list[dict[str, Any]]) -> bytes:
    """ConverseStream events (``{"contentBlockDelta": {…}}`` …) as the bytes Bedrock sends."""
    out = b""
    for event in events:
        (name, member), = event.items()
        kind = "exception" if name.endswith("Exception") else "event"
        out += encode_frame(name, json.dumps(member).encode(), message_type=kind)
    return out


class StreamServer:
    """A 127.0.0.1 HTTP server answering every POST with the configured body; it records requests."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.content_type = "application/vnd.amazon.eventstream"
        self.requests: list[tuple[str, bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                server.requests.append((self.path, self.rfile.read(length)))
                self.send_response(server.status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(server.body)))
                self.send_header("x-amzn-RequestId", "5d3c0a6a-0000-4000-8000-000000000000")
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.url,
                            config=Config(retries={"max_attempts": 1}))

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def stream_server() -> Iterator[StreamServer]:
    server = StreamServer()
    yield server
    server.close()
