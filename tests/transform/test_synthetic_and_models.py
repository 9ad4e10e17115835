"""The synthetic generator's promises, the manifest counts on its output, and the SQL models' derivations."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from common.constants import RAW_EVENTS
from common.contracts import CURATED_TABLES as TABLES
from common.contracts import FIELDS, arrow_schema
from common.contracts import curated_arrow_schema as curated_schema
from modelmeter.synthetic import INVALID_KINDS, generate
from pricing_catalog import PriceInterval
from sql import models
from tests.transform.conftest import DAY, NOW
from transforms.prices import unit_pico
from transforms.rules import rules
from transforms.run import connect, transform_day


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from common.lake import Lake

    lake = Lake.open(tmp_path_factory.mktemp("synthetic") / "lake")
    summary = generate(lake=lake, n=20_000, days=1, start=DAY, teams=12, models=18, duplicate_rate=0.01,
                       invalid_rate=0.005, seed=3, now=NOW)
    return lake, summary


def test_generator_writes_the_raw_layout_with_exact_redeliveries(generated):
    lake, summary = generated
    assert summary.rows == 20_000 and summary.duplicates == 200
    assert sum(summary.invalid.values()) == round(19_800 * 0.005) and set(summary.invalid) == set(INVALID_KINDS)
    files = lake.list_files(RAW_EVENTS, f"dt={DAY}")
    assert files and all("/hour=" in f for f in files)
    table = pq.read_table(files[0])
    assert table.schema.names == arrow_schema().names
    uuid.UUID(table["event_id"][0].as_py(), version=4)
    redelivered = [f for f in files if f.endswith("-redelivery.parquet")]
    assert sum(pq.read_metadata(f).num_rows for f in redelivered) == summary.duplicates


def test_manifest_counts_match_what_was_generated(generated, catalog):
    lake, summary = generated
    # WHEN the generated day is transformed (with the small test catalog: most models are unpriced there)
    manifest = transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW)
    c = manifest.counts
    # THEN every count is what the generator put in
    assert c["read"] == summary.rows
    assert c["quarantined"] == sum(summary.invalid.values())
    assert c["duplicates"] == summary.duplicates
    assert c["written"] == summary.expected_written == c["valid"] - c["duplicates"]
    assert c["unpriced"] == c["written"] - c["priced"]
    assert manifest.validation["agrees_with_staging"] is True


def test_curated_files_follow_the_table_schemas(generated, catalog):
    lake, _ = generated
    manifest = transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW)
    for table in TABLES:
        written = pq.read_schema(manifest.outputs[table])
        expected = curated_schema(table)
        assert written.names == expected.names
        assert [written.field(n).type for n in written.names] == [expected.field(n).type for n in expected.names]


def test_every_model_renders_and_rules_cover_the_schema():
    rule_names = {r.name for r in rules(day=DAY, now=NOW)}
    for f in FIELDS:
        if f.required:
            assert f"{f.name}_present" in rule_names
        if f.allowed:
            assert f"{f.name}_allowed" in rule_names
        if f.minimum is not None:
            assert f"{f.name}_not_negative" in rule_names
    for name in models.model_names():
        params = {key: "1" for key in models.placeholders(name)}
        assert "{{" not in models.render(name, **params)
    with pytest.raises(KeyError, match="price_version"):
        models.render("marts/usage_cost_pico")


@pytest.mark.parametrize("count,price,per", [
    (1, "3.00", 1_000_000), (123_457, "0.25", 1_000_000), (999_999_999, "75.00", 1_000_000),
    (3, "0.00025", 1_000), (7, "0.04", 1), (1, "0.035", 1_000_000), (0, "15.00", 1_000_000),
])
def test_duckdb_money_matches_python_decimal(count, price, per):
    con = connect(threads=1)
    interval = PriceInterval(dimension="input_tokens", price_usd=Decimal(price), per=per,
                             effective_from=datetime(2025, 1, 1, tzinfo=UTC), effective_to=None, source="test")
    sql = models.render_sql(f"select mm_pico_to_money({count}::bigint * {unit_pico(interval)}::bigint)")
    [(got,)] = con.execute(sql).fetchall()
    assert got == (Decimal(count) * Decimal(price) / per).quantize(Decimal("1e-12"))
    assert con.execute("select current_setting('TimeZone')").fetchone()[0] == "UTC"


def test_generator_is_deterministic(tmp_path):
    from common.lake import Lake

    a = generate(lake=Lake.open(tmp_path / "a"), n=500, start=date(2026, 1, 5), seed=9,
                 now=datetime(2026, 1, 6, tzinfo=UTC))
    b = generate(lake=Lake.open(tmp_path / "b"), n=500, start=date(2026, 1, 5), seed=9,
                 now=datetime(2026, 1, 6, tzinfo=UTC))
    ta = pq.read_table(a.files[0])
    tb = pq.read_table(b.files[0])
    assert ta.equals(tb) and a.invalid == b.invalid
