"""Fixtures shared by several test folders: one moto S3 server for the session, a fresh bucket per test."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def moto_s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a real HTTP endpoint for pyarrow's S3 client and boto3); its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_endpoint(moto_s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The S3 server, with this test's environment pointing pyarrow and boto3 at it (AWS_ENDPOINT_URL)."""
    for key, value in {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_s3_server}.items():
        monkeypatch.setenv(key, value)
    return moto_s3_server


@pytest.fixture()
def s3_lake_uri(s3_endpoint: str) -> str:
    """``s3://<a new bucket>/modelmeter``: moto keeps one in-process S3, so each test gets a bucket of its own."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/modelmeter"
