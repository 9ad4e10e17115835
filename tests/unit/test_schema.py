"""Usage event schema v1: the parser, the value rules, and the artefacts derived from FIELDS."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pyarrow as pa
import pytest

from common import contracts as schema
from common.contracts import EventError, parse_event, value_problems

DOCS_SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "usage_event.schema.json"


def event(**overrides):
    base = {
        "schema_version": 1, "event_id": "e-1", "request_id": "r-1", "event_time": "2026-11-25T13:45:01.123Z",
        "team_id": "search", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0", "operation": "chat",
        "status": "ok", "input_tokens": 12, "output_tokens": 30,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_a_minimal_event_parses_and_optional_fields_take_their_defaults():
    row = parse_event(event())

    assert row["event_time"] == datetime(2026, 11, 25, 13, 45, 1, 123000, tzinfo=UTC)
    assert row["cache_read_input_tokens"] == 0
    assert row["token_source"] == "exact"
    assert row["streaming"] is False
    assert row["service_tier"] == "on_demand"
    assert row["region"] is None
    assert set(row) == set(schema.FIELD_NAMES)


def test_every_problem_of_an_event_is_reported_at_once():
    with pytest.raises(EventError) as err:
        parse_event(event(team_id=..., input_tokens="12", streaming="yes", event_time="yesterday"))

    assert err.value.problems == [
        "event_time 'yesterday' is not an ISO-8601 instant",
        "team_id is missing",
        "input_tokens must be an integer, got a string '12'",
        "streaming must be true or false, got a string 'yes'",
    ]


@pytest.mark.parametrize(("obj", "problem"), [
    ([1, 2], "an event must be a JSON object, got an array"),
    (event(schema_version=...), "schema_version is missing"),
    (event(schema_version=2), "unknown schema_version 2 (this reader knows 1)"),
    (event(team_id=None), "team_id is null"),
    (event(team_id="  "), "team_id is empty"),
    (event(event_time="2026-11-25T13:45:01"), "event_time '2026-11-25T13:45:01' has no time zone; write it in UTC "
                                              "with a trailing Z"),
    (event(output_tokens=2**63), "output_tokens 9223372036854775808 is out of range"),
    (event(output_tokens=1.5), "output_tokens must be an integer, got a number 1.5"),
])
def test_structural_problems_are_named_precisely(obj, problem):
    with pytest.raises(EventError) as err:
        parse_event(obj)

    assert problem in err.value.problems


def test_whole_floats_are_accepted_as_integers_and_unknown_fields_ignored():
    row = parse_event(event(input_tokens=12.0, producer_extra={"x": 1}))

    assert row["input_tokens"] == 12 and isinstance(row["input_tokens"], int)
    assert "producer_extra" not in row


def test_value_rules_catch_negatives_bad_enums_and_future_times():
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    row = parse_event(event(input_tokens=-5, status="fine",
                            event_time=schema.format_time(now + timedelta(days=1, minutes=1))))

    assert value_problems(row, now=now) == [
        "status 'fine' is not one of ok, client_error, upstream_error, throttled, unknown",
        "input_tokens -5 is negative",
        "event_time 2026-11-26T12:01:00.000Z is more than a day in the future",
    ]
    assert value_problems(parse_event(event()), now=now) == []


def test_value_rules_refuse_counts_no_single_request_has():
    row = parse_event(event(output_tokens=schema.MAX_TOKENS_PER_EVENT + 1, image_count=schema.MAX_IMAGES_PER_EVENT))

    assert value_problems(row) == [f"output_tokens {schema.MAX_TOKENS_PER_EVENT + 1} is more than "
                                   f"{schema.MAX_TOKENS_PER_EVENT} (no single request has that many)"]


def test_a_parsed_row_round_trips_through_json_and_arrow():
    row = parse_event(event(image_count=2, image_width=1024, image_height=1024, image_quality="premium"))

    table = pa.Table.from_pylist([row], schema=schema.arrow_schema())
    again = parse_event(json.loads(schema.to_json(table.to_pylist()[0])))

    assert again == row


def test_derived_artefacts_agree_with_fields():
    arrow = schema.arrow_schema()
    glue = schema.glue_columns()
    sql = schema.sql_columns()

    assert arrow.names == [c["name"] for c in glue] == [n for n, _ in sql] == list(schema.FIELD_NAMES)
    assert [arrow.field(n).nullable for n in schema.REQUIRED] == [False] * len(schema.REQUIRED)
    assert dict(sql)["event_time"] == "TIMESTAMP WITH TIME ZONE"
    assert dict((c["name"], c["type"]) for c in glue)["streaming"] == "boolean"


def test_the_published_json_schema_is_current_and_agrees_with_the_parser():
    # GIVEN the JSON Schema exported to docs/ (regenerate with `python -m common.contracts > docs/…`)
    published = json.loads(DOCS_SCHEMA.read_text())
    assert published == schema.json_schema(), "docs/usage_event.schema.json is stale: regenerate it"
    validator = jsonschema.Draft202012Validator(published)

    # THEN it accepts what the parser accepts and refuses what the parser refuses
    assert not list(validator.iter_errors(event()))
    for bad in (event(team_id=...), event(schema_version=2), event(input_tokens="1"), event(status="fine")):
        assert list(validator.iter_errors(bad)), bad
