"""DynamoDB implementations of the gateway's tenant registry and long-poll store (:mod:`ingest.ports`).

Both tables have one string partition key, ``pk`` (``common.constants.DYNAMO_PARTITION_KEY``).

* Tenant table (single-table): ``team#<team_id>`` items hold a team; ``key#<sha256 of the secret>`` items hold a
  key's id, team and state (``revoked``, and optionally ``key_expires_at``, ``replaced_by``, ``last_used_at`` as
  ISO UTC text, and the ids of its API Gateway twin and usage plan: ``ingest.api_keys``). The secret itself is never
  stored, so a leaked table grants nothing. A key's expiry is ``key_expires_at``, not the table's TTL attribute
  ``expires_at``: DynamoDB's TTL sweep must never delete a key item (an expired key stays a finance record). A team
  item holds its dated organisation in ``cost_center_history`` (a list of maps ``{effective_from: "YYYY-MM-DD",
  cost_center}``, oldest first; ``effective_from`` absent: since always; the attribute absent: ``cost_center`` since
  always, the shape the deploy seeds) and a ``revision`` token that a read-modify-write checks, so two commands
  changing one team at the same time cannot lose each other's change.
* Long-poll table: one item per request id, ``status`` ``pending`` → ``done`` (with the JSON ``result``), and a TTL
  attribute ``expires_at`` (epoch seconds; DynamoDB deletes expired items lazily, so reads check it too). Claiming a
  finished result is a conditional delete: of concurrent claims exactly one gets the item back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from common.constants import DYNAMO_PARTITION_KEY as PK
from common.constants import DYNAMO_TTL_ATTRIBUTE as TTL
from common.contracts import DEFAULT_ALERT_AT, CostCenterSpan, Limits, Team, history_from_json
from common.errors import NotFound, ServiceUnavailable, UserError
from ingest import api_keys
from ingest.ports import KeyRecord, hash_key, utc_iso, utc_now
from ingest.tenants import LAST_USED_FLUSH_SECONDS, new_secret, rotated, rotation_problem

log = logging.getLogger(__name__)
MAX_CACHED_KEYS = 10_000
#: A team item's revision: a new random token on every write, which the next read-modify-write checks (items
#: seeded by a deploy have none yet).
REVISION = "revision"
_ABSENT = object()  # get_team found no item: a later put must not overwrite one created meanwhile
_UNREAD = object()  # put_team of a team this registry never read: unconditional
_ser = TypeSerializer()
_de = TypeDeserializer()


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _span_values(span: CostCenterSpan) -> dict[str, Any]:
    # A map without NULLs: an absent effective_from means since always, an absent cost_center none.
    return {k: v for k, v in (("effective_from", span.effective_from.isoformat() if span.effective_from else None),
                              ("cost_center", span.cost_center)) if v is not None}


def _team_values(team: Team) -> dict[str, Any]:
    return {
        PK: f"team#{team.team_id}", "kind": "team", "team_id": team.team_id, "cost_center": team.cost_center,
        "monthly_budget_usd": team.monthly_budget_usd, "allowed_models": list(team.allowed_models),
        "business_unit": team.business_unit,
        # Numbers go to DynamoDB as Decimal (it refuses float); str() keeps e.g. 0.5 exact.
        "requests_per_second": (Decimal(str(team.limits.requests_per_second))
                                if team.limits.requests_per_second is not None else None),
        "daily_tokens": team.limits.daily_tokens,
        "cost_center_history": [_span_values(s) for s in team.cost_center_history] or None,
        # the spend controls (ingest/budget.py): an item without them (as the deploy seeds it) has the defaults
        "budget_mode": team.budget_mode, "alert_at": [int(t) for t in team.alert_at],
    }


def _team_from(values: dict[str, Any]) -> Team:
    rps = values.get("requests_per_second")
    daily = values.get("daily_tokens")
    budget = values.get("monthly_budget_usd")
    alert_at = values.get("alert_at")
    return Team(
        team_id=values["team_id"], cost_center=values.get("cost_center"),
        monthly_budget_usd=Decimal(budget) if budget is not None else None,
        allowed_models=tuple(values.get("allowed_models") or ("*",)),
        limits=Limits(requests_per_second=float(rps) if rps is not None else None,
                      daily_tokens=int(daily) if daily is not None else None),
        business_unit=values.get("business_unit"),
        cost_center_history=history_from_json(values.get("cost_center_history")),
        budget_mode=values.get("budget_mode") or "alert",
        alert_at=tuple(int(t) for t in alert_at) if alert_at is not None else DEFAULT_ALERT_AT,
    )


class DynamoTenantRegistry:
    """Teams and API keys in one DynamoDB table (implements :class:`ingest.ports.TenantRegistry`).

    Args:
        table_name: the tenant table.
        client: a ``dynamodb`` client (default: a new one from the environment).
        cache_seconds: how long a looked-up key stays cached in this process (a revoked key keeps working at most
            this long; 0 disables the cache). Two reads per request otherwise. Expiry is checked at every lookup,
            cached or not, against ``clock``.
        api_gateway_unit: the deployed unit whose API Gateway usage plans (``<unit>-<team>``) get a twin of each
            key ``create_key`` makes (``ingest.api_keys``); None: registry keys only. ``rotate_key`` gives the new
            key a twin in the old key's plan whenever the old one has a twin, and ``revoke_key`` disables any twin.
        apigateway: the ``apigateway`` client for the twins (default: a new one in the table's region, made on
            first use).
        flush_seconds: the least time between two writes of this process's key uses (``flush``).
        clock: the wall clock (expiry, last use); monotonic: the cache's and the flush's interval clock.

    ``put_team`` of a team this registry has read (``get_team``, ``list_teams``) is conditional on the item being
    as it was read (its ``revision``, or its absence); a blind ``put_team`` writes unconditionally.
    """

    def __init__(self, *, table_name: str, client: Any = None, cache_seconds: float = 30.0,
                 api_gateway_unit: str | None = None, apigateway: Any = None,
                 flush_seconds: float = LAST_USED_FLUSH_SECONDS, clock: Callable[[], datetime] = utc_now,
                 monotonic: Callable[[], float] = time.monotonic):
        self.table_name = table_name
        self._db = client or boto3.client("dynamodb")
        self._cache_seconds = cache_seconds
        self.api_gateway_unit = api_gateway_unit
        self._apigw = apigateway
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._next_flush = 0.0
        self._used: dict[str, datetime] = {}  # key hash → latest use not yet flushed
        self._cache: dict[str, tuple[float, tuple[KeyRecord, Team]]] = {}
        self._lock = threading.Lock()
        self._revisions: dict[str, Any] = {}  # team id → revision read (None: none yet; _ABSENT: no item)

    @property
    def location(self) -> str:
        """Where the registry is, for messages: ``dynamodb://<table>`` and the client's region."""
        region = getattr(getattr(self._db, "meta", None), "region_name", None)
        return f"dynamodb://{self.table_name}" + (f" ({region})" if region else "")

    def lookup_key(self, secret: str) -> tuple[KeyRecord, Team] | None:
        digest = hash_key(secret)
        now = self._monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self._cache_seconds:
            # A cached key was usable when read; its expiry (absolute) holds whether it is cached or not.
            return hit[1] if hit[1][0].usable(self._clock()) else None
        found = self._lookup_hash(digest)
        if found is not None and self._cache_seconds > 0:
            # Only hits are cached: random keys from a scanner must not grow the cache (or hide a key created
            # a moment later in another container). The size bound keeps a container's memory flat regardless.
            with self._lock:
                if len(self._cache) >= MAX_CACHED_KEYS:
                    self._cache.clear()
                self._cache[digest] = (now, found)
        return found

    def _lookup_hash(self, digest: str) -> tuple[KeyRecord, Team] | None:
        item = self._get(f"key#{digest}")
        if item is None:
            return None
        record = _key_from(item)
        if not record.usable(self._clock()):
            return None
        team = self.get_team(item["team_id"])
        return None if team is None else (record, team)

    def get_team(self, team_id: str) -> Team | None:
        item = self._get(f"team#{team_id}")
        with self._lock:
            self._revisions[team_id] = _revision(item) if item else _ABSENT
        return _team_from(item) if item else None

    def put_team(self, team: Team) -> None:
        """Write the team's item whole (its history included).

        Raises:
            UserError: the team was read by this registry and has changed (or appeared) in the table since.
        """
        with self._lock:
            seen = self._revisions.get(team.team_id, _UNREAD)
        values = {**_team_values(team), REVISION: uuid.uuid4().hex}
        condition: dict[str, Any] = {}
        if seen is _ABSENT:
            condition = {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": {"#pk": PK}}
        elif seen is None:
            condition = {"ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(#rev)",
                         "ExpressionAttributeNames": {"#pk": PK, "#rev": REVISION}}
        elif seen is not _UNREAD:
            condition = {"ConditionExpression": "#rev = :rev", "ExpressionAttributeNames": {"#rev": REVISION},
                         "ExpressionAttributeValues": {":rev": {"S": str(seen)}}}
        try:
            self._db.put_item(TableName=self.table_name, Item=_to_item(values), **condition)
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            with self._lock:
                self._revisions.pop(team.team_id, None)
            raise UserError(f"team {team.team_id} changed in {self.location} after it was read (another command "
                            f"at the same time?); nothing was written: run the command again") from None
        with self._lock:
            self._revisions[team.team_id] = values[REVISION]
            self._cache.clear()  # a changed allowlist or limit applies at once in this process

    def list_teams(self) -> list[Team]:
        items = self._scan_kind("team")
        with self._lock:
            self._revisions.update({values["team_id"]: _revision(values) for values in items})
        return sorted((_team_from(values) for values in items), key=lambda t: t.team_id)

    def create_key(self, team_id: str, *, expires_at: datetime | None = None) -> tuple[KeyRecord, str]:
        """Create a key (same id/secret format as the local registry), optionally expiring at ``expires_at``, and
        with ``api_gateway_unit`` its API Gateway twin in the team's usage plan.

        Raises:
            KeyError: no such team. UserError: with ``api_gateway_unit``, the team has no usage plan.
        """
        if self.get_team(team_id) is None:
            raise KeyError(team_id)
        twin = self._plan_of(team_id, None)
        record, secret, values = self._new_key(team_id, expires_at, twin)
        try:
            self._db.put_item(TableName=self.table_name, Item=_to_item(values),
                              ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": PK})
        except BaseException:
            self._undo_twin(values)
            raise
        return record, secret

    def _plan_of(self, team_id: str, old: dict[str, Any] | None) -> tuple[str, str] | None:
        """``(unit, usage plan id)`` a new key's twin goes into: the old key's (rotation), else the team's plan in
        ``api_gateway_unit``, else none."""
        if old is not None and old.get("usage_plan_id"):
            return str(old.get("api_gateway_unit") or self.api_gateway_unit or ""), str(old["usage_plan_id"])
        if not self.api_gateway_unit:
            return None
        return self.api_gateway_unit, api_keys.find_usage_plan(self._api(), unit=self.api_gateway_unit,
                                                               team_id=team_id)

    def _new_key(self, team_id: str, expires_at: datetime | None,
                 twin: tuple[str, str] | None) -> tuple[KeyRecord, str, dict[str, Any]]:
        """A new key's record, secret and item; with a usage plan, its twin is created in API Gateway first (so
        the item names it, and a key is never in the table without the twin it was meant to have)."""
        key_id, secret = new_secret()
        record = KeyRecord(api_key_id=key_id, key_hash=hash_key(secret), team_id=team_id,
                           created_at=utc_iso(self._clock()),
                           expires_at=None if expires_at is None else utc_iso(expires_at))
        values: dict[str, Any] = {PK: f"key#{record.key_hash}", "kind": "key", "api_key_id": key_id,
                                  "team_id": team_id, "created_at": record.created_at, "revoked": False,
                                  "key_expires_at": record.expires_at}
        if twin is not None:
            unit, plan = twin
            values["api_gateway_key_id"] = api_keys.create_twin(self._api(), plan_id=plan, unit=unit,
                                                                team_id=team_id, api_key_id=key_id, secret=secret)
            values.update(usage_plan_id=plan, api_gateway_unit=unit or None)
            record = replace(record, api_gateway_key_id=values["api_gateway_key_id"])
        return record, secret, values

    def _undo_twin(self, values: dict[str, Any]) -> None:
        if values.get("api_gateway_key_id"):
            api_keys.delete_twin(self._api(), values["api_gateway_key_id"])

    def rotate_key(self, api_key_id: str, *, grace: timedelta,
                   expires_at: datetime | None = None) -> tuple[KeyRecord, str, KeyRecord]:
        """A new key for the same team (with a twin in the old key's usage plan if the old one has a twin, or
        with ``api_gateway_unit``), and the old one set to expire after ``grace``: one transaction, conditional on
        the old key being unrevoked and not yet rotated.

        Returns:
            The new record, its secret (shown once) and the old key's record as it now is.

        Raises:
            KeyError: no key with that id. UserError: it is revoked, expired or already rotated (also when
            another command revoked or rotated it at the same time).
        """
        item = self._key_item(api_key_id)
        if item is None:
            raise KeyError(api_key_id)
        old, now = _key_from(item), self._clock()
        problem = rotation_problem(old, now)
        if problem:
            raise UserError(problem)
        record, secret, values = self._new_key(old.team_id, expires_at, self._plan_of(old.team_id, item))
        after = rotated(old, new_key_id=record.api_key_id, now=now, grace=grace)
        try:
            self._db.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table_name, "Item": _to_item(values),
                         "ConditionExpression": "attribute_not_exists(#pk)",
                         "ExpressionAttributeNames": {"#pk": PK}}},
                {"Update": {"TableName": self.table_name, "Key": {PK: {"S": f"key#{old.key_hash}"}},
                            "UpdateExpression": "SET replaced_by = :new, key_expires_at = :until",
                            "ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(replaced_by) "
                                                   "AND (attribute_not_exists(revoked) OR revoked = :f)",
                            "ExpressionAttributeNames": {"#pk": PK},
                            "ExpressionAttributeValues": {":new": {"S": record.api_key_id},
                                                          ":until": {"S": str(after.expires_at)},
                                                          ":f": {"BOOL": False}}}},
            ])
        except ClientError as exc:
            self._undo_twin(values)
            if _code(exc) != "TransactionCanceledException":
                raise
            raise UserError(f"key {api_key_id} changed in {self.location} while it was being rotated (revoked or "
                            f"rotated by another command?); nothing was created: see `modelmeter keys list`") from None
        except BaseException:
            self._undo_twin(values)
            raise
        with self._lock:
            self._cache.pop(old.key_hash, None)
        return record, secret, after

    def list_keys(self, team_id: str | None = None) -> list[KeyRecord]:
        """Key records (never secrets), optionally of one team."""
        records = [_key_from(values) for values in self._scan_kind("key")
                   if team_id is None or values["team_id"] == team_id]
        return sorted(records, key=lambda r: r.created_at)

    def revoke_key(self, api_key_id: str) -> bool:
        """Revoke a key by its id, and disable its API Gateway twin if it has one; ``False`` if there is no such
        key. Revoking a revoked key again is harmless (and retries disabling a twin a failed call left enabled).

        Raises:
            UserError: the key is revoked in the table but its twin could not be disabled (names the twin).
        """
        item = self._key_item(api_key_id)
        if item is None:
            return False
        digest = str(item[PK]).split("#", 1)[1]
        self._db.update_item(TableName=self.table_name, Key={PK: {"S": item[PK]}},
                             UpdateExpression="SET revoked = :t", ExpressionAttributeValues={":t": {"BOOL": True}})
        with self._lock:
            self._cache.pop(digest, None)
        twin = item.get("api_gateway_key_id")
        if twin:
            try:
                api_keys.disable_twin(self._api(), str(twin))
            except (ClientError, UserError) as exc:
                raise UserError(f"key {api_key_id} is revoked in {self.location}, but its API Gateway key {twin} "
                                f"could not be disabled ({exc}): run the command again") from None
        return True

    def _key_item(self, api_key_id: str) -> dict[str, Any] | None:
        """The item of a key by its (public) id: a scan, as every admin operation on keys (the table is keyed by
        the secret's hash, which only a caller holding the secret can compute)."""
        return next((v for v in self._scan_kind("key") if v.get("api_key_id") == api_key_id), None)

    def _api(self) -> Any:
        if self._apigw is None:
            region = getattr(getattr(self._db, "meta", None), "region_name", None)
            self._apigw = boto3.client("apigateway", region_name=region)
        return self._apigw

    # --- last use -----------------------------------------------------------------------------------------------

    def record_use(self, record: KeyRecord) -> None:
        now = self._clock()
        with self._lock:
            self._used[record.key_hash] = now

    def flush(self, *, force: bool = False) -> int:
        """Write this process's key uses, one ``UpdateItem`` per key, at most once per ``flush_seconds`` unless
        ``force``; returns how many were written. Each write is conditional on the stored ``last_used_at`` being
        older (or absent) and on the key item existing, so another container's later use is never overwritten
        and no item is made for a key deleted meanwhile. A failed write is kept for the next flush (logged)."""
        now = self._monotonic()
        with self._lock:
            if not self._used or (not force and now < self._next_flush):
                return 0
            pending, self._used = self._used, {}
            self._next_flush = now + self.flush_seconds
        written = 0
        for digest, moment in pending.items():
            stamp = utc_iso(moment)
            try:
                self._db.update_item(
                    TableName=self.table_name, Key={PK: {"S": f"key#{digest}"}},
                    UpdateExpression="SET last_used_at = :t",
                    ConditionExpression="attribute_exists(#pk) AND "
                                        "(attribute_not_exists(last_used_at) OR last_used_at < :t)",
                    ExpressionAttributeNames={"#pk": PK}, ExpressionAttributeValues={":t": {"S": stamp}})
                written += 1
            except (ClientError, BotoCoreError) as exc:
                if isinstance(exc, ClientError) and _code(exc) == "ConditionalCheckFailedException":
                    continue  # a later use is already stored
                log.warning("could not write a key's last use (%s); kept for the next flush",
                            _code(exc) if isinstance(exc, ClientError) else type(exc).__name__)
                with self._lock:
                    self._used[digest] = max(moment, self._used.get(digest, moment))
        return written

    def _scan_kind(self, kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name, "FilterExpression": "#k = :kind",
            "ExpressionAttributeNames": {"#k": "kind"}, "ExpressionAttributeValues": {":kind": {"S": kind}},
        }
        while True:
            page = self._db.scan(**kwargs)
            found.extend(_from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _get(self, pk: str) -> dict[str, Any] | None:
        item = self._db.get_item(TableName=self.table_name, Key={PK: {"S": pk}}).get("Item")
        return _from_item(item) if item else None


#: The long-poll table's client: at most 1 s to connect and 2 s to read, two attempts (botocore's defaults: 60 s).
LONGPOLL_CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=2,
                                retries={"mode": "standard", "total_max_attempts": 2})


class DynamoLongPollStore:
    """Results of the seed's async flow in DynamoDB (implements :class:`ingest.ports.LongPollStore`).

    Args:
        table_name: the long-poll table (TTL enabled on ``expires_at``).
        client: a ``dynamodb`` client.
        clock: seconds since the epoch (tests move time).
    """

    def __init__(self, *, table_name: str, client: Any = None, clock: Any = time.time):
        self.table_name = table_name
        # Fail fast (as the spend counters do): a hanging table must not eat a worker's reserve or a start's time.
        self._db = client or boto3.client("dynamodb", config=LONGPOLL_CLIENT_CONFIG)
        self._clock = clock
        #: the client's timeouts and attempts: the worker bounds its long-poll writes by them (async_worker.py)
        self.client_config = getattr(getattr(self._db, "meta", None), "config", None)

    def start(self, request_id: str, *, team_id: str, ttl_seconds: int) -> None:
        expires = int(self._clock()) + int(ttl_seconds)
        try:
            self._db.put_item(TableName=self.table_name,
                              Item=_to_item({PK: request_id, "team_id": team_id, "status": "pending", TTL: expires}))
        except (ClientError, BotoCoreError) as exc:
            _raise_if_busy(exc)
            raise

    def complete(self, request_id: str, *, result: dict[str, Any]) -> None:
        # JSON text, not a DynamoDB map: results hold floats (which DynamoDB refuses) and the item stays one string.
        try:
            self._db.update_item(
                TableName=self.table_name, Key={PK: {"S": request_id}},
                UpdateExpression="SET #s = :done, #r = :result",
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames={"#s": "status", "#r": "result", "#pk": PK},
                ExpressionAttributeValues={":done": {"S": "done"}, ":result": {"S": json.dumps(result)}})
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            # Expired or never started: nobody can poll it any more. Its usage was billed when it finished.
            log.warning("long-poll request %s finished after its record expired; result dropped", request_id)

    def complete_pending(self, request_id: str, *, result: dict[str, Any], owner: str | None = None) -> bool:
        # The same conditional write as claim_run's (status = pending), so of the start failing the call and a
        # worker claiming it, exactly one wins, whichever order their writes reach the table in.
        token = owner or uuid.uuid4().hex
        return self._conditional_write(
            request_id, token=token, won_as="done", UpdateExpression="SET #s = :done, #r = :result, #o = :owner",
            ConditionExpression="#s = :pending", ExpressionAttributeNames={"#s": "status", "#r": "result"},
            ExpressionAttributeValues={":done": {"S": "done"}, ":pending": {"S": "pending"},
                                       ":result": {"S": json.dumps(result)}})

    def claim_run(self, request_id: str, *, team_id: str, owner: str | None = None) -> bool:
        # One conditional write: of any number of deliveries of one job, exactly one sees pending and wins.
        token = owner or uuid.uuid4().hex
        return self._conditional_write(
            request_id, token=token, won_as="running", UpdateExpression="SET #s = :running, #o = :owner",
            ConditionExpression="#s = :pending AND team_id = :team AND #ttl > :now",
            ExpressionAttributeNames={"#s": "status", "#ttl": TTL},
            ExpressionAttributeValues={":running": {"S": "running"}, ":pending": {"S": "pending"},
                                       ":team": {"S": team_id}, ":now": {"N": str(int(self._clock()))}})

    def _conditional_write(self, request_id: str, *, token: str, won_as: str, **update: Any) -> bool:
        """One conditional update that also stores ``token`` as the item's ``owner``: ``True`` if it applied.

        The client retries an attempt whose answer was lost (a read timeout after the table applied it); that
        retry fails its own condition. The item it then returns says who won: our token in the state we wrote
        means the lost first attempt was ours, so the caller is not told it lost a write it won."""
        update["ExpressionAttributeNames"] = {**update["ExpressionAttributeNames"], "#o": "owner"}
        update["ExpressionAttributeValues"] = {**update["ExpressionAttributeValues"], ":owner": {"S": token}}
        try:
            self._db.update_item(TableName=self.table_name, Key={PK: {"S": request_id}},
                                 ReturnValuesOnConditionCheckFailure="ALL_OLD", **update)
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            old = _from_item(exc.response["Item"]) if exc.response.get("Item") else {}
            if old.get("owner") == token and old.get("status") == won_as:
                log.info("long-poll request %s: a retried write found its own lost first attempt applied",
                         request_id)
                return True
            return False
        return True

    def claim(self, request_id: str, *, team_id: str) -> dict[str, Any] | None:
        now = int(self._clock())
        try:
            response = self._db.delete_item(
                TableName=self.table_name, Key={PK: {"S": request_id}},
                ConditionExpression="#s = :done AND team_id = :team AND #ttl > :now",
                ExpressionAttributeNames={"#s": "status", "#ttl": TTL},
                ExpressionAttributeValues={":done": {"S": "done"}, ":team": {"S": team_id},
                                           ":now": {"N": str(now)}},
                ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except BotoCoreError as exc:
            _raise_if_busy(exc)
            raise
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                _raise_if_busy(exc)
                raise
            return self._not_claimed(request_id, team_id=team_id, item=exc.response.get("Item"), now=now)
        old = _from_item(response["Attributes"]) if response.get("Attributes") else None
        if old is None:
            return None  # deleted between the condition and the delete by a concurrent claim: it won, not us
        self._leave_tombstone(request_id, team_id=team_id, expires=int(old[TTL]))
        if old.get("status") != "done" or "result" not in old:
            # What we deleted was the winner's tombstone, not a result: DynamoDB evaluates a condition and its
            # delete atomically, so this cannot happen there, but a store that does not serialise concurrent
            # writes to one item (moto's in-process backend) can interleave them. We did not win; the tombstone
            # is back, and the result was returned exactly once, by the winner.
            return None
        return json.loads(old["result"])

    def _not_claimed(self, request_id: str, *, team_id: str, item: dict[str, Any] | None,
                     now: int) -> dict[str, Any] | None:
        """Why the conditional delete failed: pending or already claimed → ``None``; anything else → NotFound."""
        values = _from_item(item) if item else None
        if values is None or values.get("team_id") != team_id or int(values.get(TTL, 0)) <= now:
            # Unknown, expired, or another team's: the same answer for all three, so ids cannot be probed.
            raise NotFound(f"unknown or expired request id {request_id!r}")
        return None

    def _leave_tombstone(self, request_id: str, *, team_id: str, expires: int) -> None:
        # Later (or slower concurrent) polls of a claimed id then see "no result" rather than "unknown id".
        try:
            self._db.put_item(TableName=self.table_name,
                              Item=_to_item({PK: request_id, "team_id": team_id, "status": "claimed", TTL: expires}),
                              ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": PK})
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                log.warning("could not mark long-poll request %s as claimed (%s)", request_id, _code(exc))


def _key_from(values: dict[str, Any]) -> KeyRecord:
    """A key item as a record (items registered by hand may lack the optional attributes)."""
    return KeyRecord(api_key_id=values["api_key_id"], key_hash=str(values[PK]).split("#", 1)[1],
                     team_id=values["team_id"], created_at=values["created_at"],
                     revoked=bool(values.get("revoked", False)), expires_at=values.get("key_expires_at"),
                     last_used_at=values.get("last_used_at"), replaced_by=values.get("replaced_by"),
                     api_gateway_key_id=values.get("api_gateway_key_id"))


def _revision(values: dict[str, Any]) -> str | None:
    revision = values.get(REVISION)
    return None if revision is None else str(revision)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# Codes a retry a moment later can fix: the caller gets 503 + Retry-After instead of a generic 500.
_TRANSIENT_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                              "InternalServerError", "ServiceUnavailable", "LimitExceededException"})


def _raise_if_busy(exc: ClientError | BotoCoreError) -> None:
    """A transient long-poll table error on the request path becomes 503 + Retry-After (not a generic 500)."""
    if isinstance(exc, ClientError) and _code(exc) not in _TRANSIENT_CODES:
        return
    log.warning("long-poll table unavailable (%s)", _code(exc) if isinstance(exc, ClientError) else type(exc).__name__)
    raise ServiceUnavailable("the gateway cannot reach its result store right now; retry shortly",
                             retry_after=1) from exc
