"""The key lifecycle against the DynamoDB tenant table and API Gateway, through moto (``mock_aws``) behind real
boto3: the commands in-process, the key cache of a Lambda container (the longest revocation delay), expiry,
rotation, "last used" written in batches with a condition, and each key's API Gateway twin in its usage plan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from common.constants import DYNAMO_PARTITION_KEY, ENV_LAKE, ENV_TENANTS
from common.contracts import Team
from common.errors import Unauthorized, UserError
from ingest.auth import authenticate
from ingest.dynamo import DynamoTenantRegistry
from ingest.ports import hash_key
from modelmeter.cli import main
from tests.aws.conftest import REGION, create_table
from tests.aws.test_lambda import Stack, stack  # noqa: F401 - the Lambda fixture, reused
from tests.clocks import Clocks

TABLE = "modelmeter-research-tenants"
TENANTS = f"dynamodb://{TABLE}"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)




class Counting:
    """A client that counts its calls by operation, passing them on."""

    def __init__(self, client: Any) -> None:
        self._client, self.meta, self.calls = client, client.meta, []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)
        return call


@pytest.fixture(autouse=True)
def _no_caller_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_TENANTS, ENV_LAKE, "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client, TABLE)
        DynamoTenantRegistry(table_name=TABLE, client=client).put_team(Team(team_id="search", cost_center="CC-1"))
        yield client


@pytest.fixture
def apigw(db: Any) -> Any:
    """The unit ``research``'s API with the usage plan the stack makes for team ``search`` (and another team's)."""
    client = boto3.client("apigateway", region_name=REGION)
    client.create_rest_api(name="modelmeter-research")
    for name in ("research-ads", "research-search"):
        client.create_usage_plan(name=name, throttle={"rateLimit": 10, "burstLimit": 20})
    return client


def _plan(apigw: Any, name: str) -> str:
    return next(p["id"] for p in apigw.get_usage_plans()["items"] if p["name"] == name)


def _item(db: Any, secret: str) -> dict[str, Any]:
    return db.get_item(TableName=TABLE, Key={DYNAMO_PARTITION_KEY: {"S": f"key#{hash_key(secret)}"}})["Item"]


def _rows(out: str) -> list[dict[str, str]]:
    header, *rows = out.splitlines()
    return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]


# --- the commands against the table ---------------------------------------------------------------------------------

def test_keys_create_list_rotate_revoke_work_against_the_dynamodb_registry(
        db: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "search", "--expires-in", "12h", "--tenants", TENANTS]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert "expiring at " in err and "--api-gateway-unit UNIT" in err
    item = _item(db, secret)
    assert item["key_expires_at"]["S"] > item["created_at"]["S"] and "expires_at" not in item  # not the TTL one
    assert secret not in repr(db.scan(TableName=TABLE)["Items"])
    # list: one line, no secret
    assert main(["keys", "list", "search", "--tenants", TENANTS]) == 0
    out = capsys.readouterr().out
    (row,) = _rows(out)
    assert secret not in out and row["status"] == "active" and row["team_id"] == "search"
    # rotate: a new secret; the old key rotated; the new one lives 12 h like the old
    assert main(["keys", "rotate", row["api_key_id"], "--grace", "30m", "--tenants", TENANTS]) == 0
    out, err = capsys.readouterr()
    new_secret = out.strip()
    assert "(grace 30m), then is refused" in err
    registry = DynamoTenantRegistry(table_name=TABLE, client=db, cache_seconds=0)
    assert registry.lookup_key(secret) is not None and registry.lookup_key(new_secret) is not None
    old = _item(db, secret)
    assert old["replaced_by"]["S"] == _item(db, new_secret)["api_key_id"]["S"]
    # revoke the old one: refused at once by a registry without a cache; the message states the containers' delay
    assert main(["keys", "revoke", row["api_key_id"], "--tenants", TENANTS]) == 0
    assert "gateway containers refuse it within 30 s" in capsys.readouterr().err
    assert registry.lookup_key(secret) is None and registry.lookup_key(new_secret) is not None
    assert main(["keys", "list", "--tenants", TENANTS]) == 0
    assert [r["status"] for r in _rows(capsys.readouterr().out)] == ["revoked", "active"]
    # an unknown key id: exit 1, one line naming the table
    assert main(["keys", "revoke", "mk_live_nope", "--tenants", TENANTS]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"modelmeter keys revoke: no key 'mk_live_nope' in {TENANTS} ({REGION}) (see `modelmeter keys list`)"]


# --- what a Lambda container sees -----------------------------------------------------------------------------------

def test_a_revoked_key_reaches_a_lambda_container_within_its_30_s_key_cache(db: Any) -> None:
    # GIVEN a container's registry (the Lambda default: hits cached 30 s) that has just accepted a key
    clocks = Clocks(T0, monotonic=1000.0)
    container = DynamoTenantRegistry(table_name=TABLE, client=db, clock=clocks.wall, monotonic=clocks.monotonic)
    command = DynamoTenantRegistry(table_name=TABLE, client=db, cache_seconds=0)
    record, secret = command.create_key("search")
    assert authenticate(container, secret)[0].api_key_id == record.api_key_id
    # WHEN the command revokes it
    assert command.revoke_key(record.api_key_id)
    # THEN the container may accept it until its cached entry is 30 s old, and refuses it like an unknown key after
    clocks.advance(29.999)
    assert container.lookup_key(secret) is not None
    clocks.advance(0.001)
    with pytest.raises(Unauthorized, match="invalid API key"):
        authenticate(container, secret)


def test_an_expired_key_is_refused_at_its_instant_even_from_the_cache(db: Any) -> None:
    clocks = Clocks(T0, monotonic=1000.0)
    container = DynamoTenantRegistry(table_name=TABLE, client=db, clock=clocks.wall, monotonic=clocks.monotonic)
    _, secret = container.create_key("search", expires_at=T0 + timedelta(seconds=10))
    assert container.lookup_key(secret) is not None  # cached now, for 30 s
    clocks.advance(9.999)
    assert container.lookup_key(secret) is not None
    clocks.advance(0.001)
    assert container.lookup_key(secret) is None  # from the cache: no read, no write needed
    fresh = DynamoTenantRegistry(table_name=TABLE, client=db, clock=clocks.wall, cache_seconds=0)
    assert fresh.lookup_key(secret) is None


def test_after_a_rotation_both_keys_work_during_the_grace_and_the_old_is_refused_after(db: Any) -> None:
    clocks = Clocks(T0, monotonic=1000.0)
    container = DynamoTenantRegistry(table_name=TABLE, client=db, clock=clocks.wall, monotonic=clocks.monotonic)
    command = DynamoTenantRegistry(table_name=TABLE, client=db, cache_seconds=0, clock=clocks.wall)
    old, old_secret = command.create_key("search")
    assert container.lookup_key(old_secret) is not None
    new, new_secret, after = command.rotate_key(old.api_key_id, grace=timedelta(hours=24))
    assert (after.replaced_by, after.expires_at) == (new.api_key_id, "2026-11-26T09:00:00.000+00:00")
    clocks.advance(24 * 3600 - 1)
    assert container.lookup_key(old_secret) is not None and container.lookup_key(new_secret) is not None
    clocks.advance(1)
    assert container.lookup_key(old_secret) is None and container.lookup_key(new_secret) is not None
    # an expired key cannot be rotated (nothing to keep working)
    with pytest.raises(UserError, match=f"key {old.api_key_id} is expired"):
        command.rotate_key(old.api_key_id, grace=timedelta(hours=1))


def test_two_rotations_at_once_cannot_both_replace_one_key(db: Any) -> None:
    first, second = (DynamoTenantRegistry(table_name=TABLE, client=db, cache_seconds=0) for _ in range(2))
    old, _ = first.create_key("search")
    # GIVEN the second command read the key before the first rotated it
    stale = second._key_item(old.api_key_id)
    first.rotate_key(old.api_key_id, grace=timedelta(hours=1))
    second._key_item = lambda _id: stale  # type: ignore[method-assign]
    with pytest.raises(UserError, match="changed in dynamodb://.* while it was being rotated"):
        second.rotate_key(old.api_key_id, grace=timedelta(hours=1))
    assert len(first.list_keys("search")) == 2  # the loser created nothing


# --- last used, batched ---------------------------------------------------------------------------------------------

def test_n_authentications_cost_at_most_one_write_per_key_and_flush_interval(db: Any) -> None:
    clocks = Clocks(T0, monotonic=1000.0)
    counting = Counting(db)
    container = DynamoTenantRegistry(table_name=TABLE, client=counting, clock=clocks.wall,
                                     monotonic=clocks.monotonic)
    _, secret = DynamoTenantRegistry(table_name=TABLE, client=db).create_key("search")
    # WHEN 600 calls authenticate over 59.9 s, each invocation ending with the handler's flush
    for _ in range(600):
        authenticate(container, secret)
        container.flush()
        clocks.advance(0.0999)
    # THEN one UpdateItem: the first use, at once; none more within the minute
    assert counting.calls.count("update_item") == 1
    clocks.advance(0.2)
    authenticate(container, secret)
    assert container.flush() == 1 and counting.calls.count("update_item") == 2
    assert _item(db, secret)["last_used_at"] == {"S": "2026-11-25T09:01:00.140+00:00"}
    assert [k.last_used_at for k in container.list_keys("search")] == ["2026-11-25T09:01:00.140+00:00"]


def test_an_older_use_never_overwrites_a_newer_one_and_no_item_is_made(db: Any) -> None:
    early, late = Clocks(T0, monotonic=1000.0), Clocks(T0, monotonic=1000.0)
    late.advance(300)
    record, secret = DynamoTenantRegistry(table_name=TABLE, client=db).create_key("search")
    a = DynamoTenantRegistry(table_name=TABLE, client=db, clock=early.wall)
    b = DynamoTenantRegistry(table_name=TABLE, client=db, clock=late.wall)
    b.record_use(record)
    assert b.flush() == 1
    a.record_use(record)
    assert a.flush() == 0  # the condition failed: a later use is stored
    assert _item(db, secret)["last_used_at"] == {"S": "2026-11-25T09:05:00.000+00:00"}
    # a key deleted meanwhile gets no ghost item
    db.delete_item(TableName=TABLE, Key={DYNAMO_PARTITION_KEY: {"S": f"key#{record.key_hash}"}})
    a.record_use(record)
    assert a.flush(force=True) == 0
    assert "Item" not in db.get_item(TableName=TABLE, Key={DYNAMO_PARTITION_KEY: {"S": f"key#{record.key_hash}"}})


def test_the_lambda_handler_writes_the_keys_last_use(stack: Stack) -> None:  # noqa: F811 - the imported fixture
    assert stack.call("apigw_rest_list_models")["statusCode"] == 200
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=stack.env["MODELMETER_TENANT_TABLE"],
        Key={DYNAMO_PARTITION_KEY: {"S": f"key#{hash_key(stack.secret)}"}})["Item"]
    assert datetime.fromisoformat(item["last_used_at"]["S"]) > datetime.now(UTC) - timedelta(minutes=1)


# --- API Gateway twins ----------------------------------------------------------------------------------------------

def test_with_an_api_gateway_unit_each_key_is_also_an_api_gateway_key_in_the_teams_plan(
        db: Any, apigw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(apigw, "research-search")
    # WHEN a key is created for the unit's team
    assert main(["keys", "create", "search", "--api-gateway-unit", "research", "--tenants", TENANTS]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    twin = _item(db, secret)["api_gateway_key_id"]["S"]
    # THEN API Gateway has an enabled key whose value is the secret, in the team's usage plan (and only there)
    key = apigw.get_api_key(apiKey=twin, includeValue=True)
    assert key["value"] == secret and key["enabled"] is True and key["name"].startswith("research-search-mk_live_")
    assert [k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan)["items"]] == [twin]
    assert apigw.get_usage_plan_keys(usagePlanId=_plan(apigw, "research-ads"))["items"] == []
    assert f"API Gateway key {twin} (same secret)" in err
    # WHEN it is rotated (no unit named: the old key's plan is used)
    old_id = _item(db, secret)["api_key_id"]["S"]
    assert main(["keys", "rotate", old_id, "--tenants", TENANTS]) == 0
    new_secret = capsys.readouterr().out.strip()
    new_twin = _item(db, new_secret)["api_gateway_key_id"]["S"]
    # THEN the new secret is a second key in the plan; the old one stays enabled for its grace
    assert apigw.get_api_key(apiKey=new_twin, includeValue=True)["value"] == new_secret
    assert sorted(k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan)["items"]) == sorted([twin, new_twin])
    assert apigw.get_api_key(apiKey=twin)["enabled"] is True
    # WHEN the old key is revoked, its API Gateway key is disabled (kept, for API Gateway's own records)
    assert main(["keys", "revoke", old_id, "--tenants", TENANTS]) == 0
    assert f"its API Gateway key {twin} is disabled" in capsys.readouterr().err
    assert apigw.get_api_key(apiKey=twin)["enabled"] is False
    assert apigw.get_api_key(apiKey=new_twin)["enabled"] is True
    # and revoking again is harmless
    assert main(["keys", "revoke", old_id, "--tenants", TENANTS]) == 0
    assert "already revoked" in capsys.readouterr().err


def test_a_team_without_a_usage_plan_in_the_unit_gets_no_key_at_all(db: Any, apigw: Any,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    DynamoTenantRegistry(table_name=TABLE, client=db).put_team(Team(team_id="newcomer"))
    assert main(["keys", "create", "newcomer", "--api-gateway-unit", "research", "--tenants", TENANTS]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("modelmeter keys create: API Gateway has no usage plan named 'research-newcomer'")
    assert [i for i in db.scan(TableName=TABLE)["Items"] if i["kind"]["S"] == "key"] == []
    assert apigw.get_api_keys()["items"] == []


def test_a_registry_key_is_not_left_behind_a_failed_twin(db: Any, apigw: Any) -> None:
    # GIVEN API Gateway refusing to add the key to the plan
    class Refusing(Counting):
        def create_usage_plan_key(self, **kwargs: Any) -> Any:
            raise RuntimeError("throttled")

    registry = DynamoTenantRegistry(table_name=TABLE, client=db, api_gateway_unit="research",
                                    apigateway=Refusing(apigw))
    with pytest.raises(RuntimeError):
        registry.create_key("search")
    # THEN neither the registry nor API Gateway holds the key
    assert registry.list_keys() == [] and apigw.get_api_keys()["items"] == []


def test_api_gateway_unit_needs_the_dynamodb_registry(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "search", "--api-gateway-unit", "research",
                 "--tenants", str(tmp_path / "t.json")]) == 1
    assert "it needs the unit's tenant table as --tenants dynamodb://TABLE" in capsys.readouterr().err
