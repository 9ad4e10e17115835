"""DynamoDB tenant registry and long-poll store through moto: keys stored only as hashes, atomic claims."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from common.constants import DYNAMO_PARTITION_KEY, DYNAMO_TTL_ATTRIBUTE
from common.contracts import DEFAULT_ALERT_AT, Limits, Team
from common.errors import NotFound
from ingest.dynamo import DynamoLongPollStore, DynamoTenantRegistry
from ingest.ports import hash_key
from tests.aws.conftest import REGION, create_table


@pytest.fixture
def db() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client, "tenants")
        create_table(client, "longpoll", ttl=True)
        yield client


TEAM = Team(team_id="search", cost_center="CC-42", monthly_budget_usd=Decimal("1500.25"),
            allowed_models=("anthropic.*", "amazon.nova-*"), limits=Limits(requests_per_second=2.5, daily_tokens=10**6),
            business_unit="retail")


def test_team_round_trip_and_listing(db: Any) -> None:
    registry = DynamoTenantRegistry(table_name="tenants", client=db)
    registry.put_team(TEAM)
    registry.put_team(Team(team_id="ads"))
    assert registry.get_team("search") == TEAM
    assert [t.team_id for t in registry.list_teams()] == ["ads", "search"]
    assert registry.get_team("nobody") is None


def test_budget_mode_and_alert_thresholds_round_trip_and_a_seeded_item_has_the_defaults(db: Any) -> None:
    registry = DynamoTenantRegistry(table_name="tenants", client=db)
    blocking = replace(TEAM, budget_mode="block", alert_at=(25, 90, 150))
    registry.put_team(blocking)
    assert registry.get_team("search") == blocking
    item = db.get_item(TableName="tenants", Key={DYNAMO_PARTITION_KEY: {"S": "team#search"}})["Item"]
    assert item["budget_mode"] == {"S": "block"}
    assert item["alert_at"] == {"L": [{"N": "25"}, {"N": "90"}, {"N": "150"}]}
    # an item as the deploy seeds it (infra/constructs/gateway_api.py seed_item) has neither attribute
    db.put_item(TableName="tenants", Item={DYNAMO_PARTITION_KEY: {"S": "team#ads"}, "kind": {"S": "team"},
                                           "team_id": {"S": "ads"}, "monthly_budget_usd": {"N": "100"}})
    seeded = registry.get_team("ads")
    assert seeded is not None and (seeded.budget_mode, seeded.alert_at) == ("alert", DEFAULT_ALERT_AT)


def test_keys_are_stored_only_as_hashes_and_resolve_to_their_team(db: Any) -> None:
    # GIVEN a team and a key created for it
    registry = DynamoTenantRegistry(table_name="tenants", client=db, cache_seconds=0)
    registry.put_team(TEAM)
    record, secret = registry.create_key("search")
    # WHEN the table is read raw
    items = db.scan(TableName="tenants")["Items"]
    # THEN the secret is nowhere in it, only its hash, and the key resolves to the team
    assert secret not in repr(items)
    assert {"S": f"key#{hash_key(secret)}"} in [i[DYNAMO_PARTITION_KEY] for i in items]
    found = registry.lookup_key(secret)
    assert found is not None and found[0].api_key_id == record.api_key_id and found[1] == TEAM
    assert registry.lookup_key(secret + "x") is None
    assert [r.api_key_id for r in registry.list_keys("search")] == [record.api_key_id]


def test_revoked_key_stops_working_and_unknown_team_has_no_keys(db: Any) -> None:
    registry = DynamoTenantRegistry(table_name="tenants", client=db)
    registry.put_team(TEAM)
    record, secret = registry.create_key("search")
    assert registry.lookup_key(secret) is not None  # cached now
    assert registry.revoke_key(record.api_key_id)
    assert registry.lookup_key(secret) is None  # revocation clears this process's cache
    assert not registry.revoke_key("mk_live_nope")
    with pytest.raises(KeyError):
        registry.create_key("ghost")


class Clock:
    def __init__(self, now: float = 1_764_078_301.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_long_poll_pending_then_claimed_once(db: Any) -> None:
    store = DynamoLongPollStore(table_name="longpoll", client=db)
    store.start("req-1", team_id="search", ttl_seconds=600)
    assert store.claim("req-1", team_id="search") is None  # still running
    store.complete("req-1", result={"generated_text": "done", "score": 0.5})
    assert store.claim("req-1", team_id="search") == {"generated_text": "done", "score": 0.5}
    assert store.claim("req-1", team_id="search") is None  # claimed already: no second copy
    item = db.get_item(TableName="longpoll", Key={DYNAMO_PARTITION_KEY: {"S": "req-1"}})["Item"]
    assert item["status"] == {"S": "claimed"} and "result" not in item and DYNAMO_TTL_ATTRIBUTE in item


def test_other_teams_unknown_and_expired_ids_are_not_found(db: Any) -> None:
    clock = Clock()
    store = DynamoLongPollStore(table_name="longpoll", client=db, clock=clock)
    store.start("req-2", team_id="search", ttl_seconds=120)
    store.complete("req-2", result={"generated_text": "secret answer"})
    with pytest.raises(NotFound):
        store.claim("req-2", team_id="ads")
    with pytest.raises(NotFound):
        store.claim("req-404", team_id="search")
    clock.now += 121  # DynamoDB's TTL sweep is lazy: the store checks expiry itself
    with pytest.raises(NotFound):
        store.claim("req-2", team_id="search")
    store.complete("req-never-started", result={"generated_text": "x"})  # dropped with a warning, no error
    assert "Item" not in db.get_item(TableName="longpoll", Key={DYNAMO_PARTITION_KEY: {"S": "req-never-started"}})


def race(store: DynamoLongPollStore, request_id: str, *, pollers: int) -> list[Any]:
    """What each of ``pollers`` threads got when claiming ``request_id`` at the same moment."""
    barrier = threading.Barrier(pollers)
    results: list[Any] = []
    lock = threading.Lock()

    def poll() -> None:
        barrier.wait()
        try:
            got: Any = store.claim(request_id, team_id="search")
        except NotFound:
            got = "not-found"
        with lock:
            results.append(got)

    threads = [threading.Thread(target=poll) for _ in range(pollers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_claims_exactly_one_wins(db: Any) -> None:
    # GIVEN finished results polled by 8 threads at once, for 10 rounds
    store = DynamoLongPollStore(table_name="longpoll", client=db)
    for round_no in range(10):
        request_id = f"race-{round_no}"
        store.start(request_id, team_id="search", ttl_seconds=600)
        store.complete(request_id, result={"generated_text": f"answer {round_no}"})
        # WHEN they claim it concurrently
        results = race(store, request_id, pollers=8)
        # THEN exactly one poll got the result; the others saw nothing to claim
        winners = [r for r in results if isinstance(r, dict)]
        assert winners == [{"generated_text": f"answer {round_no}"}], results
        assert len(results) == 8 and all(r is None or r == "not-found" for r in results if not isinstance(r, dict))


def test_unknown_keys_are_not_cached_and_a_new_key_works_at_once(db: Any) -> None:
    registry = DynamoTenantRegistry(table_name="tenants", client=db)
    registry.put_team(TEAM)
    for i in range(50):
        assert registry.lookup_key(f"mk_live_guess.{i}") is None
    assert registry._cache == {}
    # A key created by another container (another registry object) works on its first use here
    _, secret = DynamoTenantRegistry(table_name="tenants", client=db).create_key("search")
    assert registry.lookup_key(secret) is not None
    assert len(registry._cache) == 1


def test_a_claim_that_deletes_the_winners_tombstone_gets_nothing_and_puts_it_back() -> None:
    # GIVEN a store whose delete returned the winner's tombstone (possible only where a condition and its delete
    # are not atomic, as in moto's in-process backend under threads; never in DynamoDB)
    from botocore.stub import ANY, Stubber

    client = boto3.client("dynamodb", region_name=REGION)
    store = DynamoLongPollStore(table_name="longpoll", client=client, clock=lambda: 1_000)
    tombstone = {DYNAMO_PARTITION_KEY: {"S": "req-9"}, "team_id": {"S": "search"}, "status": {"S": "claimed"},
                 DYNAMO_TTL_ATTRIBUTE: {"N": "1600"}}
    with Stubber(client) as stubber:
        stubber.add_response("delete_item", {"Attributes": tombstone}, {
            "TableName": "longpoll", "Key": {DYNAMO_PARTITION_KEY: {"S": "req-9"}}, "ConditionExpression": ANY,
            "ExpressionAttributeNames": ANY, "ExpressionAttributeValues": ANY, "ReturnValues": "ALL_OLD",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"})
        stubber.add_response("put_item", {}, {
            "TableName": "longpoll", "Item": tombstone, "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": DYNAMO_PARTITION_KEY}})
        # WHEN this poll claims it
        got = store.claim("req-9", team_id="search")
        # THEN it won nothing (no KeyError, no second copy) and the tombstone is written back
        assert got is None
        stubber.assert_no_pending_responses()
