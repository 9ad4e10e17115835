"""The fleet-wide spend counters in DynamoDB (implements :class:`ingest.spend.SpendStore`): what every Lambda
container of a unit sees of a team's month-to-date spend, daily tokens and alerts.

A table of its own (``MODELMETER_SPEND_TABLE``; ``infra/constructs/spend_controls.py``), never the tenant table: a
deploy seeds team items and must never touch a counter, and the registry's scans never read one. One string
partition key ``pk`` and the TTL attribute ``expires_at``, like the gateway's other tables. One item per team and
budget period holds everything the gateway counts for it:

- ``pk``: ``spend#<team_id>#<period>`` (period: the fiscal month's first day, ``2026-11-01``);
- ``team_id``, ``period``: the same, as attributes (``teams`` filters on ``period``);
- ``spend_pico``: month-to-date spend, whole pico-dollars (``ADD``; ``set_spend`` replaces it);
- ``requests``: calls counted in the period (``ADD``);
- ``day_tokens#<day>``, ``day_requests#<day>``: tokens and calls of one local day of the period (``ADD``);
- ``alerted``: number set, the thresholds (percent) already alerted in the period; ``alerted_at#<threshold>``: when;
- ``expires_at``: epoch seconds, ``retention_days`` after the period starts (TTL).

Why one item: ``add`` is then one ``UpdateItem`` with ``ADD`` returning the new values, atomic for all four
counters (DynamoDB applies an update expression to an item as one write), and ``read`` one strongly consistent
``GetItem``. A day of the reporting calendar lies in exactly one of its fiscal months, so its counters live in that
period's item (at most 31 days × 2 attributes). ``first_alert`` is one conditional ``UpdateItem`` of the same item
(``ADD alerted :t`` only if ``NOT contains(alerted, :t)``): DynamoDB evaluates the condition and the write atomically,
so of any number of concurrent callers exactly one gets ``True``; being on the same item, it needs no transaction
(which concurrent ``add``\\ s would cancel) and ``alerts`` is a read of it.

Every DynamoDB or network failure is :class:`ingest.spend.SpendStoreError` (the guard then refuses block-mode teams
and serves alert-mode ones); failures are counted for the gateway's ``SpendStoreErrors`` metric (:meth:`take_errors`).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from common.constants import DYNAMO_PARTITION_KEY as PK
from common.constants import DYNAMO_TTL_ATTRIBUTE as TTL
from ingest.spend import SpendStoreError, SpendTotals

#: The store sits on the request path (a read before a call, an add after it): fail fast rather than hang a request
#: on an unreachable endpoint; botocore's standard retries cover a throttled or briefly failing call.
CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 3})
#: How long a period's item is kept after the period starts (DynamoDB's TTL sweep deletes it later).
DEFAULT_RETENTION_DAYS = 400
SPEND = "spend_pico"
REQUESTS = "requests"
ALERTED = "alerted"


def period_pk(team_id: str, period: str) -> str:
    """The partition key of a team's item for one budget period."""
    return f"spend#{team_id}#{period}"


class DynamoSpendStore:
    """:class:`ingest.spend.SpendStore` on a DynamoDB table (layout: the module's docstring).

    Args:
        table_name: the counters table.
        client: a ``dynamodb`` client (default: a new one with :data:`CLIENT_CONFIG`'s short timeouts).
        retention_days: a period's item expires (TTL) this many days after the period starts.
        clock: the wall clock of ``alerted_at``.
    """

    def __init__(self, *, table_name: str, client: Any = None, retention_days: int = DEFAULT_RETENTION_DAYS,
                 clock: Any = None):
        self.table_name = table_name
        self._db = client or boto3.client("dynamodb", config=CLIENT_CONFIG)
        self.retention_days = retention_days
        self._clock = clock or (lambda: datetime.now(UTC))
        self._errors = 0
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return f"dynamodb://{self.table_name}"

    def take_errors(self) -> int:
        """Failures since the last call (each raised :class:`SpendStoreError`), for a metric; resets the count."""
        with self._lock:
            count, self._errors = self._errors, 0
        return count

    # --- the protocol ------------------------------------------------------------------------------------------

    def read(self, team_id: str, *, period: str, day: str) -> SpendTotals:
        names = {"#s": SPEND, "#r": REQUESTS, "#dt": _day_tokens(day), "#dr": _day_requests(day)}
        response = self._call("read", "get_item", TableName=self.table_name, Key=_key(team_id, period),
                              ConsistentRead=True, ProjectionExpression="#s, #r, #dt, #dr",
                              ExpressionAttributeNames=names)
        item = response.get("Item") or {}
        return SpendTotals(*(_int(item.get(name)) for name in names.values()))

    def add(self, team_id: str, *, period: str, day: str, spend_pico: int, tokens: int,
            requests: int = 1) -> SpendTotals:
        names = {"#s": SPEND, "#r": REQUESTS, "#dt": _day_tokens(day), "#dr": _day_requests(day), **_ID_NAMES}
        response = self._call(
            "update", "update_item", TableName=self.table_name, Key=_key(team_id, period),
            UpdateExpression="ADD #s :s, #r :r, #dt :t, #dr :r SET " + _ID_SET,
            ExpressionAttributeNames=names, ExpressionAttributeValues={
                ":s": _n(spend_pico), ":r": _n(requests), ":t": _n(tokens), **self._id_values(team_id, period)},
            # ALL_NEW, a small item: UPDATED_NEW would do in DynamoDB, but moto returns only the values that changed
            # under UPDATED_NEW, and an ADD of 0 (a refused call costs nothing) changes none.
            ReturnValues="ALL_NEW")
        new = response.get("Attributes") or {}
        return SpendTotals(*(_int(new.get(names[k])) for k in ("#s", "#r", "#dt", "#dr")))

    def set_spend(self, team_id: str, *, period: str, spend_pico: int) -> None:
        self._call("update", "update_item", TableName=self.table_name, Key=_key(team_id, period),
                   UpdateExpression="SET #s = :s, " + _ID_SET,
                   ExpressionAttributeNames={"#s": SPEND, **_ID_NAMES},
                   ExpressionAttributeValues={":s": _n(spend_pico), **self._id_values(team_id, period)})

    def first_alert(self, team_id: str, *, period: str, threshold: int) -> bool:
        try:
            self._db.update_item(
                TableName=self.table_name, Key=_key(team_id, period),
                UpdateExpression="ADD #a :set SET #at = :now, " + _ID_SET,
                ConditionExpression="attribute_not_exists(#a) OR NOT contains(#a, :t)",
                ExpressionAttributeNames={"#a": ALERTED, "#at": f"alerted_at#{int(threshold)}", **_ID_NAMES},
                ExpressionAttributeValues={
                    ":set": {"NS": [str(int(threshold))]}, ":t": _n(threshold),
                    ":now": {"S": self._clock().astimezone(UTC).isoformat(timespec="milliseconds")},
                    **self._id_values(team_id, period)})
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False  # another process (or an earlier call) raised it: exactly one delivers
            raise self._failed("update", exc) from exc
        except BotoCoreError as exc:
            raise self._failed("update", exc) from exc
        return True

    def alerts(self, team_id: str, *, period: str) -> tuple[int, ...]:
        response = self._call("read", "get_item", TableName=self.table_name, Key=_key(team_id, period),
                              ConsistentRead=True, ProjectionExpression="#a",
                              ExpressionAttributeNames={"#a": ALERTED})
        raised = (response.get("Item") or {}).get(ALERTED, {}).get("NS", [])
        return tuple(sorted(int(t) for t in raised))

    def teams(self, *, period: str) -> tuple[str, ...]:
        # An operator's listing (``modelmeter budget show``), never on the request path: a scan of a small table
        # (one item per team and period, expired by TTL). The gateway's role has no Scan.
        found: set[str] = set()
        kwargs: dict[str, Any] = {
            "TableName": self.table_name, "FilterExpression": "#p = :p AND begins_with(#pk, :prefix)",
            "ProjectionExpression": "team_id", "ExpressionAttributeNames": {"#p": "period", "#pk": PK},
            "ExpressionAttributeValues": {":p": {"S": period}, ":prefix": {"S": "spend#"}}}
        while True:
            page = self._call("read", "scan", **kwargs)
            found.update(item["team_id"]["S"] for item in page.get("Items", []) if "team_id" in item)
            if "LastEvaluatedKey" not in page:
                return tuple(sorted(found))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def close(self) -> None:
        """Nothing to release: the client's connections close with the process."""

    # --- helpers ------------------------------------------------------------------------------------------------

    def _id_values(self, team_id: str, period: str) -> dict[str, Any]:
        return {":team": {"S": team_id}, ":period": {"S": period}, ":exp": _n(self._expires(period))}

    def _expires(self, period: str) -> int:
        try:
            start = date.fromisoformat(period)
        except ValueError:
            raise SpendStoreError(f"spend store {self.location}: {period!r} is not a period key (YYYY-MM-DD)") from None
        return int(datetime.combine(start + timedelta(days=self.retention_days), time(), tzinfo=UTC).timestamp())

    def _call(self, what: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._db, operation)(**kwargs)
            return result
        except (ClientError, BotoCoreError) as exc:
            raise self._failed(what, exc) from exc

    def _failed(self, what: str, exc: Exception) -> SpendStoreError:
        with self._lock:
            self._errors += 1
        reason = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        return SpendStoreError(f"spend store {self.location}: cannot {what} ({reason})")


# The item's identity, written by every update (so an item created by any of them carries it, and its TTL).
_ID_NAMES = {"#team": "team_id", "#period": "period", "#exp": TTL}
_ID_SET = "#team = :team, #period = :period, #exp = :exp"


def _key(team_id: str, period: str) -> dict[str, Any]:
    return {PK: {"S": period_pk(team_id, period)}}


def _day_tokens(day: str) -> str:
    return f"day_tokens#{day}"


def _day_requests(day: str) -> str:
    return f"day_requests#{day}"


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def _int(value: dict[str, str] | None) -> int:
    return int(value["N"]) if value else 0


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
