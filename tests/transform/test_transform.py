"""The transform, day by day: dedupe, quarantine, pricing, unpriced rows, idempotence, exact sums, manifests."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from common.constants import CURATED_USAGE_COST, QUARANTINE_EVENTS
from common.contracts import MAX_IMAGES_PER_EVENT, MAX_TOKENS_PER_EVENT, value_problems
from tests.transform.conftest import (
    DAY,
    IMAGE_MODEL,
    IMAGE_PRICE,
    MIDNIGHT,
    NEW_INPUT_PRICE,
    NOON,
    NOW,
    PER,
    TEXT_PRICES,
    UNKNOWN_MODEL,
    event,
    quarantine,
    team_model_daily,
    usage_cost,
    write_raw,
)
from transforms.run import transform_day

TWELVE = Decimal("1e-12")


def _run(lake, catalog):
    return transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW, threads=2)


def test_a_redelivered_event_is_counted_once(lake, catalog):
    # GIVEN one event delivered twice (two files, as a Firehose retry does) and one delivered once
    twice, once = event(), event()
    write_raw(lake, [twice, once])
    write_raw(lake, [twice])
    # WHEN the day is transformed
    manifest = _run(lake, catalog)
    # THEN usage_cost holds each event once and the manifest counts the dropped copy
    assert sorted(r["event_id"] for r in usage_cost(lake)) == sorted([twice["event_id"], once["event_id"]])
    assert manifest.counts["duplicates"] == 1
    assert manifest.counts["read"] == 3 and manifest.counts["written"] == 2


def test_every_bad_row_is_quarantined_with_its_reason(lake, catalog):
    # GIVEN one good row and one row per kind of bad value
    bad = {
        "unknown schema_version 2": event(schema_version=2),
        "input_tokens -5 is negative": event(input_tokens=-5),
        "team_id is missing": event(team_id=None),
        "team_id is empty": event(team_id=""),
        "is more than a day in the future": event(event_time=NOW + timedelta(days=2)),
        "provider 'azure' is not one of": event(provider="azure"),
        "status 'fine' is not one of": event(status="fine"),
        "service_tier 'gold' is not one of": event(service_tier="gold"),
        "is not in partition dt=2026-11-20": event(event_time=MIDNIGHT - timedelta(minutes=1)),
    }
    good = event()
    write_raw(lake, [good, *bad.values()])
    # WHEN the day is transformed
    manifest = _run(lake, catalog)
    # THEN each bad row is in quarantine with its reason, the good one is curated, and GX agrees with the SQL
    reasons = {r["event_id"]: r["reason"] for r in quarantine(lake)}
    for expected, row in bad.items():
        assert expected in reasons[row["event_id"]], (expected, reasons[row["event_id"]])
    assert [r["event_id"] for r in usage_cost(lake)] == [good["event_id"]]
    assert manifest.counts["quarantined"] == len(bad)
    assert manifest.validation["agrees_with_staging"] is True
    assert "team_id_present" in manifest.validation["failed"] and "provider_allowed" in manifest.validation["failed"]
    rows = {r["event_id"]: r for r in quarantine(lake)}
    assert all(r["stage"] == "transform" and r["source_file"].endswith(".parquet") and r["source_line"] >= 1
               for r in rows.values())
    assert json.loads(rows[bad["status 'fine' is not one of"]["event_id"]]["raw"])["status"] == "fine"


def test_value_reasons_are_worded_as_ingest_words_them(lake, catalog):
    # GIVEN rows that break common.contracts.value_problems' enum and minimum rules
    rows = [event(provider="azure"), event(output_tokens=-3), event(image_quality="ultra")]
    write_raw(lake, rows)
    _run(lake, catalog)
    reasons = {r["event_id"]: r["reason"] for r in quarantine(lake)}
    # THEN the transform's reason is exactly ingest's sentence for the same row
    for row in rows:
        assert reasons[row["event_id"]] == "; ".join(value_problems(row, now=NOW))


def test_an_absurd_count_is_quarantined_and_the_largest_allowed_one_priced_exactly(lake, catalog):
    # GIVEN a producer bug (10^15 tokens, 10^5 images: their cost would overflow 64-bit pico-dollars) beside the
    # largest counts the schema allows, and an ordinary event
    absurd_tokens = event(input_tokens=10**15)
    absurd_images = event(model_id=IMAGE_MODEL, operation="image", input_tokens=0, output_tokens=0,
                          image_count=10**5)
    largest = event(input_tokens=MAX_TOKENS_PER_EVENT, output_tokens=MAX_TOKENS_PER_EVENT,
                    cache_read_input_tokens=MAX_TOKENS_PER_EVENT, cache_write_input_tokens=MAX_TOKENS_PER_EVENT)
    ordinary = event()
    write_raw(lake, [absurd_tokens, absurd_images, largest, ordinary])
    # WHEN the day is transformed (it used to stop on a DuckDB overflow, writing nothing for the day)
    manifest = _run(lake, catalog)
    # THEN the two absurd rows are set aside with their reason, and the others are priced to the pico-dollar
    reasons = {r["event_id"]: r["reason"] for r in quarantine(lake)}
    assert reasons == {
        absurd_tokens["event_id"]: f"input_tokens {10**15} is more than {MAX_TOKENS_PER_EVENT} "
                                   "(no single request has that many)",
        absurd_images["event_id"]: f"image_count {10**5} is more than {MAX_IMAGES_PER_EVENT} "
                                   "(no single request has that many)",
    }
    assert manifest.counts["quarantined"] == 2 and manifest.validation["agrees_with_staging"] is True
    costs = {r["event_id"]: r["total_cost"] for r in usage_cost(lake)}
    assert costs[largest["event_id"]] == MAX_TOKENS_PER_EVENT * sum(TEXT_PRICES.values()) / PER  # 22,050 USD
    assert set(costs) == {largest["event_id"], ordinary["event_id"]}


def test_a_corrupt_file_is_set_aside_and_the_others_processed(lake, catalog, capsys):
    # GIVEN a good file and a truncated one in the same day
    good = event()
    write_raw(lake, [good])
    broken = write_raw(lake, [event() for _ in range(50)], name="truncated.parquet")
    data = open(broken, "rb").read()
    open(broken, "wb").write(data[: len(data) // 2])
    # WHEN the day is transformed
    manifest = _run(lake, catalog)
    # THEN the broken file is named on stderr, in the manifest and in quarantine; the good row is curated
    assert "truncated.parquet" in capsys.readouterr().err
    assert [f["path"] for f in manifest.unreadable_files] == [broken]
    assert [r["event_id"] for r in usage_cost(lake)] == [good["event_id"]]
    [row] = [r for r in quarantine(lake) if r["source_file"] == broken]
    assert row["reason"].startswith("unreadable Parquet file")


def test_unpriced_events_are_kept_counted_and_listed(lake, catalog):
    write_raw(lake, [event(model_id=UNKNOWN_MODEL), event(model_id=UNKNOWN_MODEL), event()])
    manifest = _run(lake, catalog)
    rows = [r for r in usage_cost(lake) if r["model_id"] == UNKNOWN_MODEL]
    assert len(rows) == 2
    assert all(r["priced"] is False and r["total_cost"] is None and r["input_cost"] is None for r in rows)
    assert manifest.counts["unpriced"] == 2
    assert manifest.unpriced_models == [{"model_id": UNKNOWN_MODEL, "events": 2}]
    daily = {r["model_id"]: r for r in team_model_daily(lake)}
    assert daily[UNKNOWN_MODEL]["unpriced_invocations"] == 2 and daily[UNKNOWN_MODEL]["total_cost"] == 0


def test_price_change_at_noon_splits_the_day_exactly(lake, catalog):
    # GIVEN the same call just before and exactly at 12:00 UTC, when the input price changes
    before = event(event_time=NOON - timedelta(milliseconds=1), input_tokens=123_457, output_tokens=0)
    at_noon = event(event_time=NOON, input_tokens=123_457, output_tokens=0)
    write_raw(lake, [before], hour=11)
    write_raw(lake, [at_noon], hour=12)
    _run(lake, catalog)
    costs = {r["event_id"]: r["input_cost"] for r in usage_cost(lake)}
    # THEN each is priced by the price in force at its event_time, to the last decimal
    assert costs[before["event_id"]] == Decimal(123_457) * TEXT_PRICES["input_tokens"] / PER
    assert costs[at_noon["event_id"]] == Decimal(123_457) * NEW_INPUT_PRICE / PER
    assert sum(r["total_cost"] for r in team_model_daily(lake)) == (
        Decimal(123_457) * (TEXT_PRICES["input_tokens"] + NEW_INPUT_PRICE) / PER)


def _expected_cost(row) -> Decimal:
    input_price = TEXT_PRICES["input_tokens"] if row["event_time"] < NOON else NEW_INPUT_PRICE
    if row["model_id"] == IMAGE_MODEL:
        return row["image_count"] * IMAGE_PRICE
    total = Decimal(row["input_tokens"]) * input_price
    for dim in ("output_tokens", "cache_read_input_tokens", "cache_write_input_tokens"):
        total += Decimal(row[dim]) * TEXT_PRICES[dim]
    return (total / PER).quantize(TWELVE, rounding=ROUND_HALF_UP)


def test_costs_are_exact_and_both_tables_sum_to_the_same_cent(lake, catalog):
    # GIVEN 400 events over the day with odd token counts, cache use and images
    rows = []
    for i in range(400):
        t = MIDNIGHT + timedelta(seconds=i * 211 + 7)
        if i % 10 == 0:
            rows.append(event(event_time=t, model_id=IMAGE_MODEL, operation="image", input_tokens=0,
                              output_tokens=0, image_count=1 + i % 4, image_width=1024, image_height=1024,
                              image_quality="standard", team_id=f"team-{i % 3}"))
        else:
            rows.append(event(event_time=t, input_tokens=i * 7919 % 100_003, output_tokens=i * 31 % 4099,
                              cache_read_input_tokens=i * 13 % 2000, cache_write_input_tokens=i % 7,
                              team_id=f"team-{i % 3}"))
    for hour in range(24):
        write_raw(lake, [r for r in rows if r["event_time"].hour == hour], hour=hour)
    _run(lake, catalog)
    curated = usage_cost(lake)
    # THEN every event's cost equals Python's Decimal arithmetic, and the rollup sums to the same total exactly
    by_id = {r["event_id"]: r for r in rows}
    for r in curated:
        assert r["total_cost"] == _expected_cost(by_id[r["event_id"]]), r
        assert r["total_cost"] == r["input_cost"] + r["output_cost"] + r["cache_read_cost"] + r["cache_write_cost"] \
            + r["image_cost"]
    daily = team_model_daily(lake)
    assert sum(r["total_cost"] for r in curated) == sum(r["total_cost"] for r in daily)
    assert sum(r["invocations"] for r in daily) == len(curated) == 400
    assert {r["price_version"] for r in curated} == {catalog.version}


def test_a_rerun_gives_identical_tables_and_keeps_ingest_quarantine(lake, catalog):
    # GIVEN a day with a duplicate, a bad row and an ingest quarantine file beside the transform's
    dup = event()
    write_raw(lake, [dup, event(), event(input_tokens=-1)])
    write_raw(lake, [dup])
    ingest_file = lake.write_parquet(_empty_quarantine(), QUARANTINE_EVENTS, f"dt={DAY}", "ingest-x.parquet")
    _run(lake, catalog)
    first = (usage_cost(lake), team_model_daily(lake), _strip_time(quarantine(lake)))
    # WHEN it runs again
    _run(lake, catalog)
    # THEN the tables are the same, each partition is one file, and ingest's file is still there
    assert (usage_cost(lake), team_model_daily(lake), _strip_time(quarantine(lake))) == first
    assert len(lake.list_files(CURATED_USAGE_COST, f"dt={DAY}")) == 1
    assert lake.exists(ingest_file[len(lake.base) + 1:])


def _empty_quarantine():
    from common.contracts import quarantine_arrow_schema

    return quarantine_arrow_schema().empty_table()


def _strip_time(rows):
    return sorted(({k: v for k, v in r.items() if k != "quarantined_at"} for r in rows), key=str)


def test_a_late_file_is_included_on_rerun(lake, catalog):
    write_raw(lake, [event(), event()])
    assert _run(lake, catalog).counts["written"] == 2
    # GIVEN a file that arrived after the first run
    late = event(event_time=MIDNIGHT + timedelta(hours=23, minutes=59))
    write_raw(lake, [late], hour=23)
    manifest = _run(lake, catalog)
    assert manifest.counts["written"] == 3 and manifest.counts["files"] == 2
    assert late["event_id"] in {r["event_id"] for r in usage_cost(lake)}


def test_an_empty_day_writes_empty_tables(lake, catalog):
    manifest = _run(lake, catalog)
    assert manifest.counts["read"] == 0 and manifest.counts["written"] == 0
    assert usage_cost(lake) == [] and team_model_daily(lake) == []


def test_the_manifest_is_written_to_the_lake(lake, catalog):
    write_raw(lake, [event(), event(model_id=UNKNOWN_MODEL)])
    manifest = _run(lake, catalog)
    saved = json.loads(open(manifest.path).read())
    assert saved["counts"] == manifest.counts and saved["price_version"] == catalog.version
    assert saved["input_files"][0]["rows"] == 2
    assert set(saved["outputs"]) == {"usage_cost", "team_model_daily"}
    assert "/runs/transform/dt=2026-11-20/" in manifest.path


def test_transform_range_runs_each_day_with_the_published_catalog(lake):
    from transforms.run import transform_range

    # GIVEN two days of traffic on a model of the built-in catalog
    haiku = "anthropic.claude-3-haiku-20240307-v1:0"
    write_raw(lake, [event(model_id=haiku)])
    write_raw(lake, [event(model_id=haiku, event_time=MIDNIGHT + timedelta(days=1, hours=2))], hour=2,
              day=DAY + timedelta(days=1))
    seen = []
    # WHEN both days run, with a progress callback
    manifests = transform_range(lake=lake, date_from=DAY, date_to=DAY + timedelta(days=1), now=NOW,
                                progress=lambda day, m: seen.append((day, m.counts["written"])))
    # THEN each day is priced by the same published version and reported as it finishes
    assert seen == [(DAY, 1), (DAY + timedelta(days=1), 1)]
    assert len({m.price_version for m in manifests}) == 1
    assert usage_cost(lake)[0]["priced"] is True
