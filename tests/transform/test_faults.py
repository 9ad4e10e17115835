"""Faults the transform must survive without losing or inventing money: values that do not cast to the contract
type, conflicting copies of one event, crash placeholders, and temporary files a killed writer left behind."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.schema import arrow_schema
from modelmeter.constants import RAW_EVENTS
from modelmeter.lake import Lake
from tests.transform.conftest import DAY, NOW, PER, TEXT_PRICES, event, quarantine, usage_cost
from transforms.inputs import InputFile, raw_view_sql
from transforms.run import transform_day


def _run(lake, catalog):
    return transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW, threads=2)


def _write_foreign(lake: Lake, rows: list[dict], types: dict[str, pa.DataType], name: str) -> str:
    """A raw file as a foreign producer may write it: the contract's columns, but ``types`` stored otherwise."""
    schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in arrow_schema()])
    path = lake.path(RAW_EVENTS, f"dt={DAY.isoformat()}", "hour=09", name)
    lake.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_a_value_that_does_not_cast_is_quarantined_not_billed_as_zero(lake, catalog):
    # GIVEN a producer that wrote input_tokens as text and output_tokens as floats
    exact, k_suffix, decimal_text, absent = (event(input_tokens="1200"), event(input_tokens="12k"),
                                             event(input_tokens="12.5"), event(input_tokens=None))
    whole, fraction = event(output_tokens=200.0), event(output_tokens=200.5)
    text_file = _write_foreign(lake, [exact, k_suffix, decimal_text, absent], {"input_tokens": pa.string()},
                               "a.parquet")
    _write_foreign(lake, [whole, fraction], {"output_tokens": pa.float64()}, "b.parquet")
    # WHEN the day is transformed
    manifest = _run(lake, catalog)
    # THEN each value that does not cast exactly makes its row invalid, named with its column and value
    reasons = {r["event_id"]: r for r in quarantine(lake)}
    assert {k: r["reason"] for k, r in reasons.items()} == {
        k_suffix["event_id"]: "input_tokens: '12k' is not a valid integer",
        decimal_text["event_id"]: "input_tokens: '12.5' is not a valid integer",  # DuckDB alone would bill 13
        fraction["event_id"]: "output_tokens: 200.5 is not a valid integer",
    }
    assert reasons[k_suffix["event_id"]]["source_file"] == text_file
    assert reasons[k_suffix["event_id"]]["source_line"] == 2
    assert manifest.counts["valid"] == 3 and manifest.counts["quarantined"] == 3
    assert manifest.validation["rule_counts"] == {"values_cast_exactly": 3}
    assert manifest.validation["agrees_with_staging"] is True  # GX's suite has the same rule
    # AND the values that cast exactly are billed as the numbers they spell; an absent one takes the default
    curated = {r["event_id"]: r for r in usage_cost(lake)}
    assert curated[exact["event_id"]]["input_tokens"] == 1200
    assert curated[exact["event_id"]]["input_cost"] == 1200 * TEXT_PRICES["input_tokens"] / PER
    assert curated[absent["event_id"]]["input_tokens"] == 0
    assert curated[whole["event_id"]]["output_tokens"] == 200


def test_a_file_of_the_contract_types_is_read_without_casts():
    # the clean path: no try_cast and no cast check, only a NULL cast_problems column
    file = InputFile(path="p", local_path="/x.parquet", rows=1, schema=arrow_schema())
    sql = raw_view_sql([file])
    assert "try_cast" not in sql and "cast(null as varchar) as cast_problems" in sql
