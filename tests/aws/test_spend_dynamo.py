"""DynamoSpendStore against moto: the spend-store contract (tests/spend_contract.py, which the SQLite store keeps
too), the item layout in a table of its own, and failures as the protocol's error."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from common.constants import DYNAMO_PARTITION_KEY, DYNAMO_TTL_ATTRIBUTE
from ingest.spend import SpendStore, SpendStoreError, SpendTotals
from ingest.spend_dynamo import DynamoSpendStore
from tests.aws.conftest import REGION, create_table
from tests.spend_contract import DAY1, DAY2, NOV, SpendStoreContract

TABLE = "modelmeter-spend"


@pytest.fixture
def serialized_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto applies a request to an item in plain Python, so two threads can interleave inside one UpdateItem (read
    the old value, add, write), which DynamoDB never does: it applies each write to an item atomically, condition
    and update expression included. Serialising moto's handlers gives the tests the service's per-item atomicity;
    what is tested is then that the store uses only operations that are atomic in DynamoDB."""
    lock = threading.Lock()
    for name in ("get_item", "put_item", "update_item", "scan"):
        original = getattr(DynamoHandler, name)

        @functools.wraps(original)
        def serialized(self: Any, *args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoHandler, name, serialized)


@pytest.fixture
def dynamodb(serialized_moto: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client, TABLE, ttl=True)
        yield client


class TestDynamoSpendStoreContract(SpendStoreContract):
    @pytest.fixture
    def open_store(self, dynamodb: Any) -> Callable[[], SpendStore]:
        # each handle has its own client, as each Lambda container would
        return lambda: DynamoSpendStore(table_name=TABLE, client=boto3.client("dynamodb", region_name=REGION))

    @pytest.fixture
    def broken_store(self, dynamodb: Any) -> SpendStore:
        return DynamoSpendStore(table_name="no-such-table", client=dynamodb)


def test_a_team_and_period_is_one_item_in_the_counters_table_with_its_ttl(dynamodb: Any) -> None:
    raised = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    store = DynamoSpendStore(table_name=TABLE, client=dynamodb, clock=lambda: raised)
    store.add("search", period=NOV, day=DAY1, spend_pico=5_000, tokens=40)
    store.add("search", period=NOV, day=DAY2, spend_pico=1_000, tokens=2)
    assert store.first_alert("search", period=NOV, threshold=80) is True
    (item,) = dynamodb.scan(TableName=TABLE)["Items"]
    assert item[DYNAMO_PARTITION_KEY] == {"S": "spend#search#2026-11-01"}
    assert item["team_id"] == {"S": "search"} and item["period"] == {"S": NOV}
    assert item["spend_pico"] == {"N": "6000"} and item["requests"] == {"N": "2"}
    assert item[f"day_tokens#{DAY1}"] == {"N": "40"} and item[f"day_requests#{DAY2}"] == {"N": "1"}
    assert item["alerted"] == {"NS": ["80"]} and item["alerted_at#80"] == {"S": "2026-11-25T09:30:00.000+00:00"}
    # kept 400 days after the period starts, then DynamoDB's TTL sweep may delete it
    assert int(item[DYNAMO_TTL_ATTRIBUTE]["N"]) == int(datetime(2027, 12, 6, tzinfo=UTC).timestamp())


def test_set_spend_leaves_request_and_token_counts_and_alerts_alone(dynamodb: Any) -> None:
    store = DynamoSpendStore(table_name=TABLE, client=dynamodb)
    store.add("search", period=NOV, day=DAY1, spend_pico=5_000, tokens=40)
    store.first_alert("search", period=NOV, threshold=50)
    store.set_spend("search", period=NOV, spend_pico=4_200)
    assert store.read("search", period=NOV, day=DAY1) == SpendTotals(4_200, 1, 40, 1)
    assert store.alerts("search", period=NOV) == (50,)


def test_an_unreachable_endpoint_fails_fast_as_the_protocols_error_and_is_counted() -> None:
    # nothing listens on port 9 (discard): the connection is refused, as when the VPC endpoint is unreachable
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 1}))
    store = DynamoSpendStore(table_name=TABLE, client=client)
    with pytest.raises(SpendStoreError, match=r"dynamodb://modelmeter-spend: cannot update"):
        store.add("search", period=NOV, day=DAY1, spend_pico=1, tokens=1)
    with pytest.raises(SpendStoreError, match="cannot read"):
        store.read("search", period=NOV, day=DAY1)
    with pytest.raises(SpendStoreError):
        store.first_alert("search", period=NOV, threshold=50)
    assert store.take_errors() == 3 and store.take_errors() == 0


def test_a_throttled_or_missing_table_is_the_protocols_error_and_an_alert_lost_to_it_is_not_won(
        dynamodb: Any) -> None:
    store = DynamoSpendStore(table_name="no-such-table", client=dynamodb)
    with pytest.raises(SpendStoreError, match="ResourceNotFoundException"):
        store.first_alert("search", period=NOV, threshold=50)
    assert store.take_errors() == 1


def test_a_period_key_that_is_not_a_date_is_refused() -> None:
    store = DynamoSpendStore(table_name=TABLE, client=object())
    with pytest.raises(SpendStoreError, match="not a period key"):
        store.set_spend("search", period="November", spend_pico=1)
