"""The fast path (rules proven from footer statistics, the few rows needed whole fetched in one pass) gives exactly
the tables of the SQL models run plainly over every row (``transforms/reference.py``), and its proofs are sound."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.constants import QUARANTINE_EVENTS, RAW_EVENTS
from common.contracts import BY_NAME, arrow_schema
from common.lake import Lake
from tests.transform.conftest import DAY, IMAGE_MODEL, MIDNIGHT, NOON, NOW, UNKNOWN_MODEL, event, read_table
from transforms import reference, run
from transforms.inputs import find_inputs
from transforms.proofs import prove, scan_sql
from transforms.rules import ColumnStats, Rule, rules


def _bad_value(rule: Rule) -> Any:
    """A value of ``rule.column`` that breaks ``rule`` (and, being one value, usually only it)."""
    if rule.check == "present":
        return None
    if rule.check == "not_empty":
        return ""
    if rule.check in ("known_version", "allowed"):
        return 7 if rule.check == "known_version" else "bogus"
    if rule.check == "minimum":
        return rule.low - 1
    if rule.check == "maximum":
        return rule.high + 1
    if rule.check == "not_future":
        return NOW + timedelta(days=3)
    assert rule.check == "in_partition", rule
    return MIDNIGHT - timedelta(hours=1)


def _write(lake: Lake, rows: list[dict[str, Any]], name: str, *, row_group_size: int | None = None,
           types: dict[str, pa.DataType] | None = None) -> None:
    schema = pa.schema([pa.field(f.name, (types or {}).get(f.name, f.type)) for f in arrow_schema()])
    path = lake.path(RAW_EVENTS, f"dt={DAY.isoformat()}", "hour=09", name)
    lake.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)


@pytest.fixture
def messy_lake(lake: Lake) -> Lake:
    """A day with a row breaking each rule, re-deliveries, a conflicting copy, a superseded crash placeholder,
    events both sides of the noon price change, an unpriced model, a cast column, and clean row groups."""
    rule_list = rules(day=DAY, now=NOW)
    bad = [event(**{r.column: _bad_value(r)}) for r in rule_list if r.check != "null"]
    morning = [event(event_time=MIDNIGHT + timedelta(hours=h, minutes=m), input_tokens=1000 + m)
               for h in (2, 11) for m in range(30)]
    afternoon = [event(event_time=NOON + timedelta(hours=1, minutes=m), output_tokens=m) for m in range(30)]
    images = [event(model_id=IMAGE_MODEL, operation="image", image_count=2, input_tokens=0, output_tokens=0,
                    image_width=1024, image_height=1024, image_quality="standard") for _ in range(5)]
    unpriced = [event(model_id=UNKNOWN_MODEL, provider="sagemaker", region=None) for _ in range(5)]
    placeholder = event(status="unknown", token_source="estimated")
    real = {**placeholder, "status": "ok", "token_source": "exact"}
    conflict = {**morning[3], "output_tokens": 999}
    # clean rows in row groups of 20: the footer proves every rule for most of them
    _write(lake, morning + afternoon + images + unpriced, "clean.parquet", row_group_size=20)
    _write(lake, bad + [placeholder], "bad.parquet")
    _write(lake, morning[:10] + [conflict, real], "redelivered.parquet")
    # a producer that stored input_tokens as text: its rows are cast, so statistics prove nothing there
    text = [{**event(), "input_tokens": "1500"}, {**event(), "input_tokens": "15k"}]
    _write(lake, text, "text.parquet", types={"input_tokens": pa.string()})
    return lake


def _transform_and_reference(lake: Lake, catalog, tmp_path) -> tuple[run.Manifest, duckdb.DuckDBPyConnection]:
    manifest = run.transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW, threads=2)
    con = run.connect(threads=2)
    inputs = find_inputs(lake=lake, day=DAY, workdir=tmp_path)
    reference.build(con, inputs=inputs, day=DAY, now=NOW, catalog=catalog)
    return manifest, con


@pytest.mark.parametrize("writer_core", [False, True], ids=["all-threads", "writer-core"])
def test_the_fast_path_writes_exactly_the_tables_of_the_models_run_plainly(messy_lake, catalog, tmp_path,
                                                                           monkeypatch, writer_core):
    # GIVEN a messy day, and a GX sample of one row per file (the default would take every row of these small
    # files into the suspects, and the row-by-row check would go untested)
    monkeypatch.setattr(run, "GX_SAMPLE_ROWS_PER_FILE", 1)
    # (and, in one run, the wide pass of a day of many batches: DuckDB with a thread fewer beside the writer)
    monkeypatch.setattr(run, "SHARED_CORES_BATCHES", 0 if writer_core else 10**9)
    # WHEN it is transformed, and the plain models are run over every row of the same files
    manifest, con = _transform_and_reference(messy_lake, catalog, tmp_path)
    # THEN both curated tables and the quarantine are the same rows, to the last decimal and word
    for table, ref in (("usage_cost", "ref_usage_cost"), ("team_model_daily", "ref_team_model_daily")):
        written = f"select * from read_parquet('{manifest.outputs[table]}', hive_partitioning = false)"
        assert reference.except_both_ways(con, written, f"select * from {ref}") == (0, 0), table
    refused = read_table(messy_lake, QUARANTINE_EVENTS).drop_columns(["quarantined_at"])
    con.register("refused", refused)
    columns = ", ".join(refused.column_names)
    assert reference.except_both_ways(con, "select * from refused", f"select {columns} from ref_quarantine") == (0, 0)
    # and the day really had every kind of case in it
    c = manifest.counts
    assert c["quarantined"] == len([r for r in rules(day=DAY, now=NOW) if r.check != "null"]) + 1
    assert c["duplicate_conflicts"] == 1 and c["superseded_placeholders"] == 1 and c["duplicates"] == 12
    assert 0 < c["unpriced"] < c["written"]
    prices = con.execute(f"select distinct event_time >= '{NOON.isoformat()}'::timestamptz, "
                         "(input_cost * 1000000 / input_tokens)::decimal(10, 4) from ref_usage_cost "
                         "where model_id = 'acme.text-v1' and input_tokens > 0").fetchall()
    assert sorted(prices) == [(False, Decimal("3.0000")), (True, Decimal("2.5000"))]  # the noon price change
    assert manifest.validation["agrees_with_staging"] is True
    con.close()


def test_statistics_prove_clean_row_groups_and_every_other_rule_is_checked_row_by_row(messy_lake, catalog):
    # GIVEN the messy day's files; WHEN their footers are read and the rules applied to them
    inputs = find_inputs(lake=messy_lake, day=DAY, workdir=messy_lake.base)
    rule_list = rules(day=DAY, now=NOW)
    proofs = prove(inputs.files, rule_list)
    # THEN the clean file's row groups prove the bounded rules (no row of them is read for those)
    by_name = {f.path.rsplit("/", 1)[1]: i for i, f in enumerate(inputs.files)}
    assert "output_tokens_not_negative" not in proofs.unproven[by_name["clean.parquet"]]
    assert proofs.proven_row_groups["output_tokens_not_too_large"] >= 6
    # every rule some row group breaks (bad.parquet breaks all) is checked row by row, and so is the cast rule of
    # the file stored with another type
    assert set(proofs.rules_row_by_row) == {r.name for r in rule_list}
    assert "values_cast_exactly" in proofs.unproven[by_name["text.parquet"]]
    assert "values_cast_exactly" not in proofs.unproven[by_name["clean.parquet"]]


def test_a_rule_proven_by_statistics_is_one_the_bounds_allow_no_row_to_break():
    by_name = {r.name: r for r in rules(day=DAY, now=NOW)}
    tokens, version = by_name["input_tokens_not_negative"], by_name["schema_version_known"]
    provider, team = by_name["provider_allowed"], by_name["team_id_present"]
    partition, cast = by_name["event_time_in_partition"], by_name["values_cast_exactly"]
    assert tokens.proven_by(ColumnStats(10, 0, 0, 5)) and not tokens.proven_by(ColumnStats(10, 0, -1, 5))
    assert tokens.proven_by(ColumnStats(10, 10)) and not tokens.proven_by(ColumnStats(10, 2))  # no bounds
    assert version.proven_by(ColumnStats(3, 0, 1, 1)) and not version.proven_by(ColumnStats(3, 0, 1, 2))
    assert provider.proven_by(ColumnStats(3, 0, "bedrock", "bedrock"))
    assert not provider.proven_by(ColumnStats(3, 0, "bedrock", "simulator"))  # both allowed, but what between?
    assert team.proven_by(ColumnStats(3, 0, "a", "b")) and not team.proven_by(ColumnStats(3, 1, "a", "b"))
    assert partition.proven_by(ColumnStats(2, 0, MIDNIGHT, NOON))
    assert not partition.proven_by(ColumnStats(2, 0, MIDNIGHT, MIDNIGHT + timedelta(days=1)))  # the end is out
    assert cast.proven_by(ColumnStats(4, 4)) and not cast.proven_by(None)
    assert all(r.proven_by(ColumnStats(0, 0)) for r in by_name.values())  # an empty row group breaks nothing
    assert BY_NAME["token_source"].default == "exact"  # defaults are applied before proving (transforms/proofs.py)


def test_the_suspects_pass_spells_each_allowed_set_rule_so_it_breaks_for_exactly_the_rows_problem_sql_does():
    # GIVEN every allowed-set rule and, per column, each allowed value, values outside the set and NULL
    con = duckdb.connect()
    allowed = [r for r in rules(day=DAY, now=NOW) if r.check == "allowed"]
    assert allowed and all(r.values for r in allowed)
    for rule in allowed:
        values = [*rule.values, "", "other", "it's", rule.values[0].upper() + "x", None]
        con.execute(f"create or replace table t as select unnest(?::varchar[]) as {rule.column}", [values])
        # WHEN the row-by-row check of stg_suspects (scan_sql) and the rule's own SQL are evaluated over them
        rows = con.execute(f"select {rule.column}, ({rule.problem_sql}), ({scan_sql(rule)}) from t").fetchall()
        # THEN both are true, false or NULL (no problem) for the same rows, and the scan has no NOT IN list
        assert [(v, p) for v, p, _ in rows] == [(v, q) for v, _, q in rows], rule.name
        assert sum(bool(p) for _, p, _ in rows) == 4 and [p for v, p, _ in rows if v is None] == [None]
        assert " not in " not in scan_sql(rule)
    others = [r for r in rules(day=DAY, now=NOW) if r.check != "allowed"]
    assert all(scan_sql(r) == r.problem_sql for r in others)  # every other rule is read as written
