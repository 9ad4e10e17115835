"""The day's curated tables and quarantine straight from the SQL models' definitions: the yardstick of the fast path.

``transforms/run.py`` gets the same tables faster (rules proven from footer statistics, the few rows needed whole
fetched in one pass, the pyarrow writer). This module runs the models as they are written, over every row of
``stg_usage_events``, with no proof, no shortcut and no Python writer: every rule's SQL over every row, the
duplicate candidates from the model itself, ``usage_cost`` and ``team_model_daily`` by the marts
(``mm_pico_to_money`` in SQL). ``tests/transform/test_fast_path.py`` and ``bench/transform.py --check`` compare the
two with ``EXCEPT ALL`` both ways. Not used by the transform itself.
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import pyarrow as pa

from common.contracts import FIELD_NAMES
from sql import models
from transforms.inputs import DayInputs, event_columns_sql, raw_view_sql
from transforms.prices import PriceSource, price_table
from transforms.rules import PLACEHOLDER_STATUS, invalid_sql, reason_sql, rules

#: Relations :func:`build` leaves on the connection: the curated tables and the quarantine rows of the day.
RELATIONS = ("ref_usage_cost", "ref_team_model_daily", "ref_quarantine")


def build(con: duckdb.DuckDBPyConnection, *, inputs: DayInputs, day: date, now: datetime,
          catalog: PriceSource) -> None:
    """Create :data:`RELATIONS` (temp tables) on ``con`` for the day's readable ``inputs``."""
    rule_list = rules(day=day, now=now)
    con.execute(f"create or replace temp view raw_day as {raw_view_sql(inputs.files)}")
    con.execute("create or replace temp view stg_usage_events as "
                + models.render("staging/stg_usage_events", event_columns=event_columns_sql()))
    con.execute("create or replace temp table stg_invalid as "
                + models.render("staging/stg_invalid", invalid=invalid_sql(rule_list)))
    con.execute("create or replace temp table stg_invalid_ids as " + models.render("staging/stg_invalid_ids"))
    con.execute("create or replace temp view stg_valid_events as " + models.render("staging/stg_valid_events"))
    con.execute("create or replace temp table stg_duplicate_candidates as " + models.render(
        "staging/stg_duplicate_candidates", content_columns=", ".join(f"{c} := {c}" for c in FIELD_NAMES)))
    con.execute("create or replace temp table stg_duplicates as " + models.render(
        "staging/stg_duplicates", placeholder_status=models.literal(PLACEHOLDER_STATUS)))
    lookups = con.execute(models.render("staging/stg_price_combos")).fetch_arrow_table().to_pylist()
    con.register("prices", price_table(catalog=catalog, lookups=lookups, day=day))
    con.execute("create or replace temp view usage_cost_pico as "
                + models.render("marts/usage_cost_pico", price_version=models.literal(catalog.version)))
    con.execute("create or replace temp table ref_usage_cost as " + models.render("marts/usage_cost"))
    con.execute("create or replace temp view usage_cost_day as select * from ref_usage_cost")
    con.execute("create or replace temp table ref_team_model_daily as " + models.render("marts/team_model_daily"))
    _quarantine(con, inputs, rule_list)


def _quarantine(con: duckdb.DuckDBPyConnection, inputs: DayInputs, rule_list: list) -> None:
    """``ref_quarantine``: every invalid row with its reasons and every conflicting copy, ``source_file`` as the
    file's lake path (as the transform's quarantine file has it)."""
    con.register("input_files", pa.table({"source_file": pa.array(range(len(inputs.files)), pa.int32()),
                                          "path": pa.array([f.path for f in inputs.files], pa.string())}))
    invalid = models.render("staging/stg_quarantine", reason=reason_sql(rule_list),
                            raw_columns=", ".join(f"{c} := {c}" for c in FIELD_NAMES))
    differing = ", ".join(f"case when d.{c} is distinct from k.{c} then '{c}' end" for c in FIELD_NAMES)
    conflicts = models.render("staging/stg_duplicate_conflicts", differing=f"concat_ws(', ', {differing})",
                              raw_columns=", ".join(f"{c} := d.{c}" for c in FIELD_NAMES))
    con.execute(f"""create or replace temp table ref_quarantine as
        select q.event_id, q.event_time, q.team_id, q.reason, q.stage, f.path as source_file, q.source_line, q.raw
        from (select * from ({invalid}) union all select * from ({conflicts})) as q
        inner join input_files as f on f.source_file = q.source_file""")


def except_both_ways(con: duckdb.DuckDBPyConnection, a: str, b: str) -> tuple[int, int]:
    """Rows of query ``a`` not in ``b`` and of ``b`` not in ``a``, duplicates counted (``EXCEPT ALL``)."""
    one = con.execute(f"select count(*) from (select * from ({a}) except all select * from ({b}))").fetchone()
    two = con.execute(f"select count(*) from (select * from ({b}) except all select * from ({a}))").fetchone()
    return int(one[0]) if one else -1, int(two[0]) if two else -1
