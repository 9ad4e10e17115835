"""Shared setup of the transform tests: a small test catalog, raw-event writers and readers of the curated tables.

The catalog is built with the pricing package's own API (``Catalog`` of ``PriceRow``s) so the prices are known
exactly: ``acme.text-v1``'s input price changes at 12:00 UTC on ``DAY``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.constants import CURATED_TEAM_MODEL_DAILY, CURATED_USAGE_COST, QUARANTINE_EVENTS, RAW_EVENTS
from common.contracts import arrow_schema
from common.lake import Lake
from pricing_catalog import Catalog, PriceRow

DAY = date(2026, 11, 20)
MIDNIGHT = datetime(2026, 11, 20, tzinfo=UTC)
NOON = MIDNIGHT + timedelta(hours=12)
#: The run's clock: the morning after DAY (so an event three days ahead is "in the future").
NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)

TEXT_MODEL = "acme.text-v1"
IMAGE_MODEL = "acme.image-v1"
UNKNOWN_MODEL = "sm-endpoint-nobody-priced"
#: (dimension, price_usd, per) of TEXT_MODEL before noon; after noon input_tokens costs NEW_INPUT_PRICE.
TEXT_PRICES = {"input_tokens": Decimal("3.00"), "output_tokens": Decimal("15.00"),
               "cache_read_input_tokens": Decimal("0.30"), "cache_write_input_tokens": Decimal("3.75")}
NEW_INPUT_PRICE = Decimal("2.50")
IMAGE_PRICE = Decimal("0.04")
PER = 1_000_000


def _row(dimension: str, price: Decimal, per: int, start: datetime, end: datetime | None, model: str) -> PriceRow:
    return PriceRow(model=model, dimension=dimension, price_usd=price, per=per, effective_from=start,
                    effective_to=end, source="https://example.com/test-prices")


def build_catalog(version: str = "test-v1") -> Catalog:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [_row(d, p, PER, start, NOON if d == "input_tokens" else None, TEXT_MODEL) for d, p in TEXT_PRICES.items()]
    rows.append(_row("input_tokens", NEW_INPUT_PRICE, PER, NOON, None, TEXT_MODEL))
    rows.append(_row("images", IMAGE_PRICE, 1, start, None, IMAGE_MODEL))
    return Catalog(version=version, rows=rows)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return build_catalog()


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake.open(tmp_path / "lake")


def event(**fields: Any) -> dict[str, Any]:
    """A valid schema-v1 row (as the raw Parquet holds it), with ``fields`` overriding."""
    row: dict[str, Any] = {
        "schema_version": 1, "event_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4()),
        "event_time": MIDNIGHT + timedelta(hours=9), "team_id": "team-a", "api_key_id": "key-a",
        "business_unit": "retail", "provider": "bedrock", "region": "us-east-1", "model_id": TEXT_MODEL,
        "operation": "chat", "status": "ok", "http_status": 200, "input_tokens": 1000, "output_tokens": 200,
        "cache_read_input_tokens": 0, "cache_write_input_tokens": 0, "image_count": 0, "image_width": None,
        "image_height": None, "image_quality": None, "token_source": "exact", "streaming": False,
        "service_tier": "on_demand", "latency_ms": 850,
    }
    row.update(fields)
    return row


def write_raw(lake: Lake, rows: list[dict[str, Any]], *, name: str | None = None, hour: int = 9,
              day: date = DAY) -> str:
    """Write rows as one raw Parquet file of ``dt=day/hour=HH`` (no validation: bad rows land as Firehose's would)."""
    nullable = pa.schema([f.with_nullable(True) for f in arrow_schema()])  # as a foreign producer may write
    table = pa.Table.from_pylist(rows, schema=nullable)
    name = name or f"modelmeter-usage-1-{uuid.uuid4()}.parquet"
    return lake.write_parquet(table, RAW_EVENTS, f"dt={day.isoformat()}", f"hour={hour:02d}", name)


def read_table(lake: Lake, prefix: str, day: date = DAY) -> pa.Table:
    files = lake.list_files(prefix, f"dt={day.isoformat()}")
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})


def usage_cost(lake: Lake, day: date = DAY) -> list[dict[str, Any]]:
    return sorted(read_table(lake, CURATED_USAGE_COST, day).to_pylist(), key=lambda r: r["event_id"])


def team_model_daily(lake: Lake, day: date = DAY) -> list[dict[str, Any]]:
    return read_table(lake, CURATED_TEAM_MODEL_DAILY, day).to_pylist()


def quarantine(lake: Lake, day: date = DAY) -> list[dict[str, Any]]:
    return read_table(lake, QUARANTINE_EVENTS, day).to_pylist()


@pytest.fixture(scope="session", autouse=True)
def _gx_imported_once():
    """Import Great Expectations once per session (~4 s), before the first transform runs."""
    from transforms import validate

    validate._import_gx()
