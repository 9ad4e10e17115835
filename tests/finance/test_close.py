"""Close, reopen, restate and the journal: a booked period never moves, corrections are deltas in the next open
period, the organisation is dated, and the journal balances to the invoice."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from common.constants import CURATED_USAGE_COST, DYNAMO_PARTITION_KEY
from common.contracts import COST_COLUMNS, UNALLOCATED, curated_arrow_schema
from common.lake import Lake
from finance.close import next_open_period, status
from finance.cur import import_export
from ingest.dynamo import DynamoTenantRegistry
from ingest.tenants import LocalTenantRegistry
from modelmeter.cli import main
from modelmeter.simulated_bill import line, write_cur
from pricing_catalog.store import list_versions
from sql.config import ReportingConfig
from sql.render import connect
from tests.fixture_lake import TEAMS

from .conftest import LLAMA, PERIOD, SONNET, START, month_bill

NEXT = "2026-12"
LEDGER = """central_account: "2450-AI-RECOVERY"
unallocated_cost_center: CC-PLATFORM
cost_centers:
  CC-1001: "6110"
  CC-2002: "6120"
  CC-3003: "6130"
  CC-9009: "6190"
  CC-PLATFORM: "6100"
"""


@dataclass
class Books:
    root: Path
    lake: Path
    tenants: Path
    base: list[dict]

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main([*args, "--lake", str(self.lake), *(["--tenants", str(self.tenants)]
                                                       if args[0] not in ("billing",) else [])])
        out, err = capsys.readouterr()
        return code, out, err

    def bill(self, lines: list[dict], name: str) -> None:
        folder = self.root / name
        write_cur(lines, folder / "export-00001.parquet")
        import_export(lake=Lake.open(self.lake), paths=[str(folder)])

    def rows(self, capsys: pytest.CaptureFixture[str], period: str = PERIOD) -> list[dict]:
        code, out, err = self.run(capsys, "chargeback", "--period", period, "--format", "json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def books(finance_lake, tmp_path: Path) -> Books:
    """A copy of the fixture lake with a registry of its teams, November's bill imported, and a ledger file."""
    lake = tmp_path / "lake"
    shutil.copytree(finance_lake.root / "lake", lake)
    tenants = tmp_path / "tenants.json"
    registry = LocalTenantRegistry(tenants)
    for team in TEAMS:
        registry.put_team(team)
    (tmp_path / "ledger.yaml").write_text(LEDGER)
    base = month_bill(finance_lake, discounted_model=SONNET, bypass_model=LLAMA, credit=Decimal("-2.50"))
    b = Books(root=tmp_path, lake=lake, tenants=tenants, base=base)
    b.bill(base, "bill-1")
    return b


def _reprice_usage(lake: Path, factor: int, version: str) -> None:
    """What a transform re-run at another price version does to the curated usage: new costs, a new version."""
    schema = curated_arrow_schema("usage_cost")
    for path in sorted((lake / CURATED_USAGE_COST).rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        for r in rows:
            r["price_version"] = version
            for c in (*COST_COLUMNS, "total_cost"):
                if r.get(c) is not None:
                    r[c] = r[c] * factor
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _view(lake: Path, period: str) -> list[tuple]:
    con = connect(lake=Lake.open(lake), config=ReportingConfig())
    return con.execute("select line_type, corrects_period, cost_center, team_id, chargeback_cost, period_status "
                       "from chargeback_of_record where billing_period = ? order by all", [period]).fetchall()


def _sum(rows: list[dict], column: str = "chargeback_cost") -> Decimal:
    return sum((Decimal(r[column]) for r in rows), Decimal(0))


def test_a_closed_period_does_not_move(books: Books, capsys) -> None:
    # GIVEN November charged back and closed
    charged = books.rows(capsys)
    code, _, err = books.run(capsys, "close", "--period", PERIOD)
    assert code == 0 and f"billing period {PERIOD} closed at chargeback version 1" in err
    assert "not final" in err  # the simulated bill has no invoice id: closing is allowed, and said
    closed_view = _view(books.lake, PERIOD)
    # WHEN prices change (the usage re-priced), AWS restates the bill, and a team moves back into November
    _reprice_usage(books.lake, 2, "fixture-v2")
    books.bill([*books.base, line(period=PERIOD, start=START, usage_type="USE1-Guardrail-TextUnits", amount=4,
                                  cost=9.75, pricing_unit="Units")], "bill-2")
    registry = LocalTenantRegistry(books.tenants)
    registry.put_team(registry.get_team("team-beta").moved("CC-9009", effective_from=date(2026, 11, 1)))
    # THEN the chargeback, its view and its versions are what was closed
    again = books.rows(capsys)
    assert again == charged
    assert _view(books.lake, PERIOD) == closed_view
    assert all(r[5] == "closed" for r in closed_view)
    code, out, _ = books.run(capsys, "chargeback", "--period", PERIOD, "--versions", "--format", "json")
    assert [(v["version"], v["of_record"]) for v in json.loads(out)] == [(1, True)]
    # AND closing twice is one clear error
    code, _, err = books.run(capsys, "close", "--period", PERIOD)
    assert code == 1 and "is already closed (version 1" in err


def test_restatement_deltas_are_exact_and_land_in_the_next_open_period(books: Books, capsys) -> None:
    # GIVEN November closed, then re-priced, restated by AWS (+$9.75 of guardrails) and a team moved into it
    closed = books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    _reprice_usage(books.lake, 2, "fixture-v2")
    books.bill([*books.base, line(period=PERIOD, start=START, usage_type="USE1-Guardrail-TextUnits", amount=4,
                                  cost=9.75, pricing_unit="Units")], "bill-2")
    registry = LocalTenantRegistry(books.tenants)
    registry.put_team(registry.get_team("team-beta").moved("CC-9009", effective_from=date(2026, 11, 1)))
    # AND December's own bill (guardrails nobody metered)
    books.bill([line(period=NEXT, start=START.replace(month=12), usage_type="USE1-Guardrail-TextUnits", amount=2,
                     cost=3.10, pricing_unit="Units")], "bill-dec")
    # WHEN November is restated
    code, out, err = books.run(capsys, "restate", "--period", PERIOD, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    # THEN per cost centre × team: closed, restated, delta; the deltas sum exactly to restated − closed
    assert _sum(rows, "closed_cost") == _sum(closed)
    assert _sum(rows, "delta") == _sum(rows, "restated_cost") - _sum(rows, "closed_cost")
    assert _sum(rows, "restated_cost") - _sum(rows, "closed_cost") == Decimal("9.75")  # what AWS added
    moved = {(r["cost_center"], r["team_id"]): Decimal(r["delta"]) for r in rows}
    beta_closed = next(Decimal(r["chargeback_cost"]) for r in closed if r["team_id"] == "team-beta")
    assert moved[("CC-2002", "team-beta")] == -beta_closed  # the move: out of CC-2002 …
    assert moved[("CC-9009", "team-beta")] > 0               # … into CC-9009
    assert f"posted as adjustment lines into {NEXT} (labelled {PERIOD})" in err
    # AND November stays closed and unmoved; December shows its own rows plus the labelled adjustment lines
    assert books.rows(capsys) == closed
    december = books.rows(capsys, NEXT)
    own = [r for r in december if r["line_type"] == "charge"]
    adjustments = [r for r in december if r["line_type"] == "adjustment"]
    assert _sum(own) == Decimal("3.10")  # December's own rows still sum to December's invoice
    assert {r["corrects_period"] for r in adjustments} == {PERIOD}
    assert _sum(adjustments) == _sum(rows, "delta")
    assert {r["rules"] for r in adjustments} == {f"{PERIOD}-r1"}
    view = _view(books.lake, NEXT)
    assert {(r[0], r[1]) for r in view} == {("charge", None), ("adjustment", PERIOD)}
    # AND a second restatement counts what was already posted (nothing moved: nothing posted)
    code, out, err = books.run(capsys, "restate", "--period", PERIOD, "--format", "json")
    assert code == 0 and "nothing moved" in err
    again = json.loads(out)
    assert _sum(again, "delta") == 0 and _sum(again, "adjusted_before") == _sum(rows, "delta")
    # AND every version stays readable: the closed run and two restatements
    code, out, _ = books.run(capsys, "chargeback", "--period", PERIOD, "--versions", "--format", "json")
    listed = json.loads(out)
    assert [(v["version"], v["purpose"], v["of_record"]) for v in listed] == [
        (1, "chargeback", True), (2, "restatement", False), (3, "restatement", False)]
    assert listed[1]["restates_version"] == 1 and listed[1]["price_versions"] == ["fixture-v2"]


def test_restating_posts_past_closed_periods_and_an_open_period_cannot_be_restated(books: Books, capsys) -> None:
    code, _, err = books.run(capsys, "restate", "--period", PERIOD)
    assert code == 1 and "no chargeback stored" in err
    books.rows(capsys)
    code, _, err = books.run(capsys, "restate", "--period", PERIOD)
    assert code == 1 and f"billing period {PERIOD} is open" in err
    books.bill([line(period=NEXT, start=START.replace(month=12), usage_type="USE1-Guardrail-TextUnits", amount=2,
                     cost=3.10, pricing_unit="Units")], "bill-dec")
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    books.rows(capsys, NEXT)
    assert books.run(capsys, "close", "--period", NEXT)[0] == 0
    assert next_open_period(lake=Lake.open(books.lake), period=PERIOD) == "2027-01"


def test_reopen_needs_a_reason_is_recorded_and_is_refused_once_corrections_are_booked(books: Books, capsys) -> None:
    books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    code, _, err = books.run(capsys, "close", "--period", PERIOD, "--reopen")
    assert code == 1 and "--reopen needs --reason" in err
    code, _, err = books.run(capsys, "close", "--period", PERIOD, "--reopen", "--reason", "late credit from AWS")
    assert code == 0 and "reopened" in err
    state = status(lake=Lake.open(books.lake), period=PERIOD)
    assert not state.closed and state.event["reason"] == "late credit from AWS" and state.event["by"]
    # open again: a chargeback run makes a new version, closing freezes that one
    books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    assert status(lake=Lake.open(books.lake), period=PERIOD).version == 2
    # once a restatement is posted, reopening would count it twice: refused
    _reprice_usage(books.lake, 3, "fixture-v3")
    assert books.run(capsys, "restate", "--period", PERIOD)[0] == 0
    code, _, err = books.run(capsys, "close", "--period", PERIOD, "--reopen", "--reason", "again")
    assert code == 1 and f"its restatements {PERIOD}-r1 (in {NEXT}) are posted" in err


def test_a_dated_move_leaves_earlier_periods_where_they_were(books: Books, capsys) -> None:
    # GIVEN team-beta moves from CC-2002 to CC-9009 in the middle of November (from the 15th)
    code, _, err = books.run(capsys, "tenants", "add", "team-beta", "--cost-center", "CC-9009", "--from",
                             "2026-11-15")
    assert code == 0 and "earlier days stay with cost centre CC-2002" in err
    # THEN November's chargeback charges each cost centre for its side of the move, the bill still exact
    rows = books.rows(capsys)
    beta = {r["cost_center"]: r for r in rows if r["team_id"] == "team-beta"}
    assert set(beta) == {"CC-2002", "CC-9009"}
    con = connect(lake=Lake.open(books.lake), config=ReportingConfig())
    by_side = dict(con.execute("""select usage_date >= date '2026-11-15', sum(total_cost) from usage_local
                                  where team_id = 'team-beta' and provider in ('bedrock', 'sagemaker')
                                  and usage_date < date '2026-12-01' group by 1""").fetchall())
    assert Decimal(beta["CC-2002"]["metered_list_cost"]) == by_side.get(False, Decimal(0))
    assert Decimal(beta["CC-9009"]["metered_list_cost"]) == by_side.get(True, Decimal(0))
    # AND the views put each day with the cost centre in force on it
    days = con.execute("""select distinct usage_date < date '2026-11-15', cost_center from usage_local
                          where team_id = 'team-beta' order by 1""").fetchall()
    assert days == [(False, "CC-9009"), (True, "CC-2002")]


def test_a_move_from_the_next_month_keeps_the_closed_month(books: Books, capsys) -> None:
    books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    assert books.run(capsys, "tenants", "add", "team-beta", "--cost-center", "CC-9009", "--from",
                     "2026-12-01")[0] == 0
    assert books.run(capsys, "close", "--period", PERIOD, "--reopen", "--reason", "check the move")[0] == 0
    rows = books.rows(capsys)  # a new run, with the dated organisation: November is still CC-2002's
    assert {r["cost_center"] for r in rows if r["team_id"] == "team-beta"} == {"CC-2002"}


def _journal(books: Books, capsys, period: str = PERIOD) -> tuple[int, list[dict], str]:
    out = books.root / f"journal-{period}.csv"
    code, _, err = books.run(capsys, "export", "journal", "--period", period, "--out", str(out))
    lines = list(csv.DictReader(io.StringIO(out.read_text()))) if out.exists() else []
    return code, lines, err


def test_the_journal_balances_and_equals_the_invoice(books: Books, capsys) -> None:
    rows = books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    code, lines, err = _journal(books, capsys)
    assert code == 0, err
    assert list(lines[0]) == ["period", "line_type", "corrects_period", "account", "cost_center", "debit", "credit",
                              "currency", "memo", "fiscal_month"]
    assert {x["fiscal_month"] for x in lines} == {"2026-11-01"}  # calendar months, booked into November
    debits = sum(Decimal(x["debit"] or 0) for x in lines)
    credits = sum(Decimal(x["credit"] or 0) for x in lines)
    invoice = _sum(rows)
    assert debits == credits
    own = [x for x in lines if x["cost_center"]]
    assert sum(Decimal(x["debit"]) for x in own) == invoice
    # one line per cost centre, the unallocated row on the configured cost centre, the credit to the central one
    assert sorted(x["cost_center"] for x in own) == ["CC-1001", "CC-2002", "CC-3003", "CC-PLATFORM"]
    platform = next(x for x in own if x["cost_center"] == "CC-PLATFORM")
    assert platform["account"] == "6100" and UNALLOCATED in platform["memo"] and f"chargeback {PERIOD} v1" in \
        platform["memo"]
    central = [x for x in lines if not x["cost_center"]]
    assert [x["account"] for x in central] == ["2450-AI-RECOVERY"]
    # DESIGN.md: debits = credits = the in-scope invoice total (a cost centre that nets negative: a negative debit)
    assert debits == credits == invoice
    assert all(Decimal(x["credit"] or 0) >= 0 for x in lines)


def test_the_journal_books_adjustment_lines_apart_and_names_missing_accounts(books: Books, capsys) -> None:
    books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    _reprice_usage(books.lake, 2, "fixture-v2")
    books.bill([line(period=NEXT, start=START.replace(month=12), usage_type="USE1-Guardrail-TextUnits", amount=2,
                     cost=3.10, pricing_unit="Units")], "bill-dec")
    assert books.run(capsys, "restate", "--period", PERIOD)[0] == 0
    books.rows(capsys, NEXT)
    code, lines, err = _journal(books, capsys, NEXT)
    assert code == 0, err
    assert "is open, so this journal is a preview" in err
    charge = [x for x in lines if x["line_type"] == "charge"]
    adjustment = [x for x in lines if x["line_type"] == "adjustment"]
    assert sum(Decimal(x["debit"] or 0) - Decimal(x["credit"] or 0) for x in charge if x["cost_center"]) == \
        Decimal("3.10")
    assert {x["corrects_period"] for x in adjustment} == {PERIOD}
    assert sum(Decimal(x["debit"] or 0) for x in adjustment) == sum(Decimal(x["credit"] or 0) for x in adjustment)
    # a cost centre with no GL account is named; nothing is written
    (books.root / "ledger.yaml").write_text(LEDGER.replace('  CC-3003: "6130"\n', ""))
    (books.root / f"journal-{NEXT}.csv").unlink()
    code, lines, err = _journal(books, capsys, NEXT)
    assert code == 1 and "no GL account for cost centre CC-3003" in err and lines == []
    (books.root / "ledger.yaml").write_text("central_account: x\nsurprise: 1\n")
    code, _, err = _journal(books, capsys, NEXT)
    assert code == 1 and "ledger.yaml:2: unknown key 'surprise'" in err and "`unallocated_cost_center` is required" \
        in err
    # an unquoted account number is a YAML number (0610 is octal 392): refused, naming the line
    (books.root / "ledger.yaml").write_text(LEDGER.replace('CC-1001: "6110"', "CC-1001: 0610"))
    code, _, err = _journal(books, capsys, NEXT)
    assert code == 1 and "`cost_centers` maps a cost centre to its GL account, each quoted" in err


def test_a_transform_of_a_closed_period_says_the_record_stays(books: Books, capsys) -> None:
    books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    code = main(["transform", "--from", "2026-11-20", "--to", "2026-11-20", "--lake", str(books.lake)])
    err = capsys.readouterr().err
    assert code == 0 and f"billing period {PERIOD} is closed (chargeback version 1)" in err


def test_a_linked_accounts_charges_go_where_its_rule_says(books: Books, capsys) -> None:
    # GIVEN a business unit's own linked account with Bedrock usage nobody metered, and a rule for that account
    before = books.rows(capsys)
    other = line(period=PERIOD, start=START, usage_type="USE1-Guardrail-TextUnits", amount=3, cost=4.20,
                 pricing_unit="Units")
    other["line_item_usage_account_id"] = "222233334444"
    books.bill([*books.base, other], "bill-2")
    (books.root / "allocation.yaml").write_text("rules:\n  - name: retail-account\n    source: {account: "
                                                "\"2222*\"}\n    method: fixed\n    targets: {CC-3003: 100}\n")
    # THEN that account's charge is the business unit's cost centre's, and nothing of it is unallocated
    rows = books.rows(capsys)
    west = next(r for r in rows if r["cost_center"] == "CC-3003")
    assert Decimal(west["allocated_shared_cost"]) == Decimal("4.20") and west["rules"] == "retail-account"
    unallocated = [Decimal(next(r for r in run if r["team_id"] == UNALLOCATED)["allocated_shared_cost"])
                   for run in (before, rows)]
    assert unallocated[0] == unallocated[1]


def test_against_the_dynamodb_registry_a_dated_move_leaves_the_closed_month(books: Books, capsys,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the organisation in the deployed tenant table (moto), not the local file
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(TableName="tenants", BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": DYNAMO_PARTITION_KEY, "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": DYNAMO_PARTITION_KEY, "KeyType": "HASH"}])
        books.tenants = "dynamodb://tenants"  # type: ignore[assignment]
        for team in TEAMS:
            assert books.run(capsys, "tenants", "add", team.team_id, "--cost-center", team.cost_center)[0] == 0
        # WHEN November is charged back and closed, then team-beta moves from December on (and, by mistake,
        # a move is dated back into the closed November)
        november = books.rows(capsys)
        assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
        assert books.run(capsys, "tenants", "add", "team-beta", "--cost-center", "CC-9009", "--from",
                         "2026-12-01")[0] == 0
        # THEN the closed month does not move, and the registry keeps the dated history
        assert books.rows(capsys) == november
        beta = DynamoTenantRegistry(table_name="tenants", client=client).get_team("team-beta")
        assert [beta.cost_center_on(date(2026, 11, 30)), beta.cost_center_on(date(2026, 12, 1))] == [
            "CC-2002", "CC-9009"]
        # AND a fresh run of the reopened month still charges November to the cost centre in force then
        assert books.run(capsys, "close", "--period", PERIOD, "--reopen", "--reason", "recheck")[0] == 0
        again = books.rows(capsys)
        assert {r["cost_center"] for r in again if r["team_id"] == "team-beta"} == {"CC-2002"}
        assert _sum(again) == _sum(november)


def test_the_views_list_period_states_and_every_version_with_its_inputs(books: Books, capsys) -> None:
    books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    _reprice_usage(books.lake, 2, "fixture-v2")
    assert books.run(capsys, "restate", "--period", PERIOD)[0] == 0
    con = connect(lake=Lake.open(books.lake), config=ReportingConfig())
    state = con.execute("select period_status, closed_version, last_action, last_event_by from period_status "
                        "where billing_period = ?", [PERIOD]).fetchall()
    assert state == [("closed", 1, "close", status(lake=Lake.open(books.lake), period=PERIOD).event["by"])]
    listed = con.execute("""select version, purpose, restates_version, bool_and(of_record), min(price_versions),
                                   bool_or(cur_final), count(distinct cur_snapshot), sum(chargeback_cost)
                            from chargeback_versions where billing_period = ? group by all order by version""",
                         [PERIOD]).fetchall()
    assert [row[:5] for row in listed] == [(1, "chargeback", None, True, "fixture-2026-11"),
                                           (2, "restatement", 1, False, "fixture-v2")]
    assert all(row[5] is False and row[6] == 1 for row in listed)  # the simulated bill is not final
    assert listed[0][7] == listed[1][7]  # the bill did not change: both versions add up to it


def test_budget_burn_keeps_one_row_per_team_and_month_after_a_move(books: Books, capsys) -> None:
    assert books.run(capsys, "tenants", "add", "team-alpha", "--cost-center", "CC-9009", "--from",
                     "2026-11-15")[0] == 0
    con = connect(lake=Lake.open(books.lake), config=ReportingConfig())
    rows = con.execute("""select fiscal_month_start, cost_center, spend_to_date from budget_burn
                          where team_id = 'team-alpha' order by 1""").fetchall()
    spent = dict(con.execute("""select fiscal_month_start, sum(total_cost) from chargeback_monthly
                                where team_id = 'team-alpha' group by 1""").fetchall())
    assert len(rows) == len({r[0] for r in rows})  # one row per month, not one per side of the move
    assert all(spend == spent[month] for month, _cc, spend in rows)
    assert all(cc == "CC-9009" for _m, cc, _s in rows)  # the cost centre of the month's latest usage


def test_a_restatement_that_cannot_finish_or_is_a_dry_run_changes_nothing(books: Books, capsys) -> None:
    books.rows(capsys)
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    con = connect(lake=Lake.open(books.lake), config=ReportingConfig())
    before = (con.execute("select count(*), sum(total_cost) from usage_cost").fetchall(),
              con.execute("select sum(billed_cost) from reconciliation_summary").fetchall())
    books.bill([*books.base, line(period=PERIOD, start=START, usage_type="USE1-Guardrail-TextUnits", amount=4,
                                  cost=9.75, pricing_unit="Units")], "bill-2")
    # a dry run that would have to re-price, bad rules, an unknown price version, a month without raw events
    code, _, err = books.run(capsys, "restate", "--period", PERIOD, "--price-version", "fixture-2026-11",
                             "--dry-run")
    assert code == 1 and "--dry-run cannot re-price" in err
    code, _, err = books.run(capsys, "restate", "--period", PERIOD, "--rules", str(books.root / "nope.yaml"))
    assert code == 1 and "no such rules file" in err
    code, _, err = books.run(capsys, "restate", "--period", PERIOD, "--price-version", "no-such-version")
    assert code == 1 and "no catalog version 'no-such-version'" in err
    published = list_versions(lake=Lake.open(books.lake))[-1].version
    code, _, err = books.run(capsys, "restate", "--period", PERIOD, "--price-version", published)
    assert code == 1 and "no raw events any more" in err  # the fixture lake has curated usage only
    code, _, err = books.run(capsys, "restate", "--period", PERIOD, "--dry-run")
    assert code == 0 and "dry run: nothing stored or posted" in err
    # THEN the curated usage and the closed month's reconciliation are as they were
    con = connect(lake=Lake.open(books.lake), config=ReportingConfig())
    assert (con.execute("select count(*), sum(total_cost) from usage_cost").fetchall(),
            con.execute("select sum(billed_cost) from reconciliation_summary").fetchall()) == before


@pytest.mark.parametrize("move_day", [6, 15, 24, 30])
def test_a_move_splits_the_moved_teams_cents_and_leaves_every_other_row_alone(books: Books, capsys,
                                                                              move_day: int) -> None:
    unmoved = {r["team_id"]: Decimal(r["chargeback_cost"]) for r in books.rows(capsys)}
    assert books.run(capsys, "tenants", "add", "team-beta", "--cost-center", "CC-9009", "--from",
                     f"2026-11-{move_day:02d}")[0] == 0
    moved: dict[str, Decimal] = {}
    for r in books.rows(capsys):
        moved[r["team_id"]] = moved.get(r["team_id"], Decimal(0)) + Decimal(r["chargeback_cost"])
    assert moved == unmoved  # per team, to the cent: the split only divides team-beta's own cents


def test_a_period_closed_with_tax_in_scope_is_restated_with_it(books: Books, capsys) -> None:
    books.bill([*books.base, line(period=PERIOD, start=START, usage_type="", amount=0, cost=0.17, line_type="Tax",
                                  operation="", pricing_unit="", region=None)], "bill-tax")
    code, out, err = books.run(capsys, "chargeback", "--period", PERIOD, "--include-tax", "--format", "json")
    assert code == 0, err
    assert books.run(capsys, "close", "--period", PERIOD)[0] == 0
    code, out, err = books.run(capsys, "restate", "--period", PERIOD, "--format", "json")
    assert code == 0 and "restated with them too" in err
    assert _sum(json.loads(out), "delta") == 0  # nothing changed: the tax is not "restated" away


def test_closing_a_version_computed_on_an_older_bill_says_so(books: Books, capsys) -> None:
    books.rows(capsys)
    books.bill([*books.base, line(period=PERIOD, start=START, usage_type="USE1-Guardrail-TextUnits", amount=4,
                                  cost=9.75, pricing_unit="Units")], "bill-2")
    code, _, err = books.run(capsys, "close", "--period", PERIOD)
    assert code == 0 and "is newer: `modelmeter restate" in err
