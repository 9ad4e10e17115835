"""Time-based prices (pricing_catalog/data/time_based/): per model unit or instance per hour, by date, commitment
and region; a strict file whose every problem names its line."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
import yaml

from pricing_catalog import CatalogError, load_catalog, load_time_prices
from pricing_catalog.time_prices import DATA_FILE, PROVISIONED, SAGEMAKER, TERMS, read_time_prices

NOV = datetime(2026, 11, 10, tzinfo=UTC)
SCHEMA = DATA_FILE.parents[2] / "time_based.schema.json"


def _price(kind: str, key: str, region: str = "us-east-1", commitment: str | None = None,
           at: datetime = NOV) -> Decimal | None:
    found = load_time_prices().hourly_price(kind=kind, key=key, region=region, commitment=commitment, at=at)
    return None if found is None else found.price_usd


def test_the_shipped_file_loads_with_decimal_prices_regions_sources_and_matches_its_schema() -> None:
    prices = load_time_prices()
    assert prices.version.startswith("time-") and len(prices.prices) >= 30
    for p in prices.prices:
        assert isinstance(p.price_usd, Decimal) and 0 < p.price_usd < 1000
        assert p.term in TERMS[p.kind] and p.region and p.effective_from.tzinfo is not None
        assert p.source.startswith("https://aws.amazon.com/") and (p.copy or "").startswith("https://github.com/")
        assert p.checked is not None
    text = DATA_FILE.read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../../time_based.schema.json"
    jsonschema.validate(yaml.safe_load(text), json.loads(SCHEMA.read_text()))


def test_provisioned_keys_are_catalog_models() -> None:
    catalog = load_catalog()
    keys = {p.key for p in load_time_prices().prices if p.kind == PROVISIONED}
    assert keys and all(catalog.resolve(k) == k for k in keys)


@pytest.mark.parametrize(("key", "region", "commitment", "at", "expected"), [
    # Claude 2.0 / 2.1 (one row of AWS's table): commitments, regions, the model's context-window variants
    ("anthropic.claude-v2:1", "us-east-1", "one_month", NOV, "63.00"),
    ("anthropic.claude-v2:1:200k", "us-east-1", "six_months", NOV, "35.00"),
    ("anthropic.claude-v2:0:100k", "us-east-1", "no_commitment", NOV, "70.00"),
    ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2:1:18k", "us-east-1", "one_month", NOV, "63.00"),
    ("anthropic.claude-v2:1", "eu-central-1", "one_month", NOV, "79.00"),
    ("anthropic.claude-v2:1", "ap-northeast-1", "six_months", NOV, "48.00"),
    # by date: the no-commitment price is documented from 2025-02-28 only; the 1-month one from 2024-04-22
    ("anthropic.claude-v2:1", "us-east-1", "no_commitment", datetime(2025, 2, 27, 23, 59, tzinfo=UTC), None),
    ("anthropic.claude-v2:1", "us-east-1", "no_commitment", datetime(2025, 2, 28, tzinfo=UTC), "70.00"),
    ("anthropic.claude-v2:1", "us-east-1", "one_month", datetime(2024, 4, 21, tzinfo=UTC), None),
    # a price is never applied to another region or term
    ("anthropic.claude-v2:1", "eu-west-1", "one_month", NOV, None),
    ("anthropic.claude-v2:1", "ap-northeast-1", "no_commitment", NOV, None),
    ("amazon.titan-embed-text-v1", "us-east-1", "no_commitment", NOV, None),
    ("amazon.titan-text-express-v1:0:8k", "us-east-1", "one_month", NOV, "18.40"),
    ("cohere.command-text-v14:7:4k", "us-east-1", "six_months", NOV, "23.77"),
    ("stability.stable-diffusion-xl-v1:0", "us-east-1", "one_month", NOV, "49.86"),
    # no price read: unpriced, never a neighbour's
    ("anthropic.claude-3-haiku-20240307-v1:0", "us-east-1", "one_month", NOV, None),
    ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123", "us-east-1", "one_month", NOV, None),
])
def test_provisioned_throughput_resolves_by_model_date_commitment_and_region(key, region, commitment, at,
                                                                             expected) -> None:
    assert _price(PROVISIONED, key, region, commitment, at) == (None if expected is None else Decimal(expected))


def test_sagemaker_instances_resolve_by_type_in_any_case_and_region_only() -> None:
    assert _price(SAGEMAKER, "ml.g5.xlarge") == Decimal("1.4084")
    assert _price(SAGEMAKER, "ML.G5.2XLARGE") == Decimal("1.515")
    assert _price(SAGEMAKER, "ml.g5.12xlarge") == Decimal("7.09")
    assert _price(SAGEMAKER, "ml.m5.xlarge") == Decimal("0.23")
    assert _price(SAGEMAKER, "ml.g5.xlarge", region="us-west-2") is None
    assert _price(SAGEMAKER, "ml.g5.4xlarge") is None
    price = load_time_prices().hourly_price(kind=SAGEMAKER, key="ml.g5.xlarge", region="us-east-1", at=NOV)
    assert price is not None and price.unit == "USD per instance per hour"


def test_a_wrong_request_is_an_error_not_a_silent_none() -> None:
    prices = load_time_prices()
    with pytest.raises(CatalogError, match="commitment None of provisioned throughput must be one of"):
        prices.hourly_price(kind=PROVISIONED, key="anthropic.claude-v2:1", region="us-east-1", at=NOV)
    with pytest.raises(CatalogError, match="SageMaker instances have no commitment"):
        prices.hourly_price(kind=SAGEMAKER, key="ml.g5.xlarge", region="us-east-1", commitment="one_month", at=NOV)
    with pytest.raises(CatalogError, match="unknown time-based kind"):
        prices.hourly_price(kind="gpu", key="x", region="us-east-1", at=NOV)
    with pytest.raises(CatalogError, match="timezone-aware"):
        prices.hourly_price(kind=SAGEMAKER, key="ml.g5.xlarge", region="us-east-1", at=datetime(2026, 11, 10))


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hourly.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


ENTRY = 'region: us-east-1, source: "https://example.com/p", checked: "2026-12-02"'


def test_a_price_change_is_a_new_dated_entry_and_splits_at_its_instant(tmp_path) -> None:
    path = _file(tmp_path, f"""
        provisioned_throughput:
          acme.model-v1:
            prices:
              - {{effective_from: "2026-01-01", effective_to: "2026-11-15T12:00:00Z", one_month: "10.00", {ENTRY}}}
              - {{effective_from: "2026-11-15T12:00:00Z", one_month: "8.00", {ENTRY}}}
        """)
    prices = read_time_prices(path)
    before = datetime(2026, 11, 15, 11, 59, 59, tzinfo=UTC)
    assert prices.hourly_price(kind=PROVISIONED, key="acme.model-v1", region="us-east-1", commitment="one_month",
                               at=before).price_usd == Decimal("10.00")
    assert prices.hourly_price(kind=PROVISIONED, key="acme.model-v1", region="us-east-1", commitment="one_month",
                               at=datetime(2026, 11, 15, 12, tzinfo=UTC)).price_usd == Decimal("8.00")
    assert len(prices.intervals(kind=PROVISIONED, key="acme.model-v1", region="us-east-1",
                                commitment="one_month")) == 2


@pytest.mark.parametrize(("body", "message"), [
    (f'{{effective_from: "2026-01-01", one_month: 10.5, {ENTRY}}}', r"hourly.yaml:4: .*one_month.*quoted"),
    (f'{{effective_from: "2026-01-01", one_month: "10", monthly: "1", {ENTRY}}}', r"hourly.yaml:4: .*unknown key"),
    ('{effective_from: "2026-01-01", one_month: "10", source: "https://e.com", checked: "2026-12-02"}',
     r"hourly.yaml:4: .*region.*missing"),
    (f'{{effective_from: "2026-01-01", {ENTRY}}}', r"hourly.yaml:4: .*no price"),
    (f'{{effective_from: "2026-01-01", one_month: "20000", {ENTRY}}}', r"hourly.yaml:4: .*above 1000 USD per hour"),
])
def test_a_bad_time_price_file_names_its_line(tmp_path, body, message) -> None:
    path = _file(tmp_path, f"""
        provisioned_throughput:
          acme.model-v1:
            prices:
              - {body}
        """)
    with pytest.raises(CatalogError, match=message):
        read_time_prices(path)


def test_overlapping_prices_of_one_term_and_region_are_refused(tmp_path) -> None:
    path = _file(tmp_path, f"""
        provisioned_throughput:
          acme.model-v1:
            prices:
              - {{effective_from: "2026-01-01", one_month: "1", {ENTRY}}}
              - {{effective_from: "2026-06-01", one_month: "2", {ENTRY}}}
              - {{effective_from: "2026-06-01", six_months: "2", {ENTRY}}}
        """)
    with pytest.raises(CatalogError, match=r"hourly.yaml:5: prices of acme.model-v1 \(one_month, us-east-1\) "
                                           r"overlap from 2026-06-01 with the entry on line 4"):
        read_time_prices(path)


def test_a_repeated_key_is_refused_not_last_wins(tmp_path) -> None:
    path = _file(tmp_path, """
        sagemaker_instances:
          ml.g5.xlarge:
            prices: []
          ml.g5.xlarge:
            prices: []
        """)
    with pytest.raises(CatalogError, match=r"hourly.yaml:4: .*`ml.g5.xlarge` appears twice \(first on line 2\)"):
        read_time_prices(path)
