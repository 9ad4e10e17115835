"""The strict loader of pricing_catalog/data/*.yaml: Decimal prices, clear errors naming file, entry and line."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
import yaml

from common.contracts import DIMENSIONS
from pricing_catalog.catalog import Catalog
from pricing_catalog.loader import DATA_DIR, load_builtin
from pricing_catalog.model import CatalogError

GOOD = """
    provider: test
    models:
      acme.model-v1:0:
        name: Acme
        prices:
          - {effective_from: "2025-01-01", per: 1000, input_tokens: "0.001", output_tokens: "0.002",
             source: "https://example.com/p", checked: "2026-11-25"}
"""


def test_builtin_catalog_loads_with_decimal_prices_sources_and_dates(builtin: Catalog) -> None:
    assert len(builtin.models) >= 25
    assert builtin.version.startswith("builtin-")
    for row in builtin.rows:
        assert isinstance(row.price_usd, Decimal)
        assert row.dimension in DIMENSIONS
        assert row.source.startswith("https://")
        assert row.checked is not None
        assert row.effective_from.tzinfo is not None


def test_builtin_version_is_stable_for_the_same_data() -> None:
    assert load_builtin().version == load_builtin().version


def test_every_data_file_matches_the_published_json_schema() -> None:
    schema = json.loads((DATA_DIR.parent / "schema.json").read_text())
    files = sorted(DATA_DIR.glob("*.yaml"))
    assert files
    for path in files:
        first_line = path.read_text().splitlines()[0]
        assert first_line == "# yaml-language-server: $schema=../schema.json", path.name
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_batch_factor_derives_the_batch_tier_from_on_demand(builtin: Catalog) -> None:
    on_demand = {i.dimension: i.price_usd for i in builtin.prices_for(
        model_id="anthropic.claude-3-haiku-20240307-v1:0", region=None, service_tier="on_demand")}
    batch = {i.dimension: i.price_usd for i in builtin.prices_for(
        model_id="anthropic.claude-3-haiku-20240307-v1:0", region=None, service_tier="batch")}
    assert batch == {"input_tokens": on_demand["input_tokens"] / 2, "output_tokens": on_demand["output_tokens"] / 2}
    assert batch["input_tokens"] == Decimal("0.000125")


def test_a_small_valid_file_loads(write_data) -> None:
    catalog = load_builtin(data_dir=write_data(text=GOOD))
    assert catalog.models == ["acme.model-v1:0"]
    assert {r.dimension: r.price_usd for r in catalog.rows} == {"input_tokens": Decimal("0.001"),
                                                                "output_tokens": Decimal("0.002")}


@pytest.mark.parametrize("value, hint", [("0.001", "quoted string, e.g. '0.001'"), ("3", "quoted string, e.g. '3'")])
def test_unquoted_numbers_are_refused_with_the_file_model_and_line(write_data, value: str, hint: str) -> None:
    folder = write_data(text=GOOD.replace('input_tokens: "0.001"', f"input_tokens: {value}"))
    with pytest.raises(CatalogError) as err:
        load_builtin(data_dir=folder)
    message = str(err.value)
    assert message.startswith("test.yaml: model `acme.model-v1:0` price entry 1 (line 6)")
    assert hint in message and "floats lose cents" in message


@pytest.mark.parametrize("old, new, expected", [
    ("per: 1000,", "per: 10,", "per 10 must be one of 1, 1000, 1000000"),
    ('source: "https://example.com/p",', 'source: "http://example.com/p",', "source must be the https:// URL"),
    ('input_tokens: "0.001",', 'input_tokens: "-0.001",', "input_tokens '-0.001' is negative"),
    ('input_tokens: "0.001",', 'input_tokens: "x",', "input_tokens 'x' is not a number"),
    ('input_tokens: "0.001",', 'input_tokens: "0.0000000000001",', "has more than 12 decimals: use a larger `per`"),
    ('effective_from: "2025-01-01",', 'effective_from: "2025-01-01T10:00:00",',
     "effective_from '2025-01-01T10:00:00' has no time zone: add Z"),
    (', checked: "2026-11-25"', "", "missing checked"),
    ('input_tokens: "0.001",', 'inptu_tokens: "0.001",', "unknown key(s) inptu_tokens"),
    ("per: 1000,", "service_tier: express, per: 1000,", "service_tier 'express' must be one of"),
])
def test_bad_entries_are_refused_with_a_fix(write_data, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(CatalogError, match="test.yaml: model `acme.model-v1:0` price entry 1") as err:
        load_builtin(data_dir=write_data(text=GOOD.replace(old, new)))
    assert expected in str(err.value)


def test_overlapping_periods_are_refused_naming_the_model_and_period(write_data) -> None:
    # GIVEN two prices for the same model and dimension, the first open-ended, the second starting later
    text = GOOD + """\
          - {effective_from: "2025-06-01", per: 1000, input_tokens: "0.0005",
             source: "https://example.com/p", checked: "2026-11-25"}
    """
    # WHEN loading THEN the overlap is named, with the dates and how to fix it
    with pytest.raises(CatalogError) as err:
        load_builtin(data_dir=write_data(text=text))
    assert str(err.value) == (
        "test.yaml: prices for `acme.model-v1:0` input_tokens (on_demand) overlap between 2025-06-01 and open end: "
        "end the earlier price (effective_to) where the later one starts")


def test_a_price_change_with_touching_periods_loads(write_data) -> None:
    text = GOOD.replace('per: 1000, input', 'effective_to: "2025-06-01", per: 1000, input') + """\
          - {effective_from: "2025-06-01", per: 1000, input_tokens: "0.0005", output_tokens: "0.002",
             source: "https://example.com/p", checked: "2026-11-25"}
    """
    catalog = load_builtin(data_dir=write_data(text=text))
    assert len(catalog.rows) == 4


def test_duplicate_keys_are_refused(write_data) -> None:
    text = GOOD + """\
      acme.model-v1:0:
        prices: []
    """
    with pytest.raises(CatalogError, match=r"test.yaml: line 8: `acme.model-v1:0` appears twice .*first on line 3"):
        load_builtin(data_dir=write_data(text=text))


def test_a_model_in_two_files_is_refused(write_data) -> None:
    folder = write_data(text=GOOD, other=GOOD)
    with pytest.raises(CatalogError, match=r"test.yaml: model `acme.model-v1:0` is also in other.yaml"):
        load_builtin(data_dir=folder)


def test_image_prices_must_be_per_image(write_data) -> None:
    text = """
        provider: test
        models:
          acme.image-v1:
            prices:
              - {effective_from: "2025-01-01", per: 1000, images: [{price: "0.04"}],
                 source: "https://example.com/p", checked: "2026-11-25"}
    """
    with pytest.raises(CatalogError, match="image prices are per image: set per: 1"):
        load_builtin(data_dir=write_data(text=text))


def test_invalid_yaml_names_the_file(write_data) -> None:
    with pytest.raises(CatalogError, match="test.yaml: not valid YAML"):
        load_builtin(data_dir=write_data(text="models: [unclosed\n"))


def test_an_empty_data_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no \\*.yaml price files"):
        load_builtin(data_dir=tmp_path)


def test_a_region_typo_is_refused(write_data) -> None:
    text = GOOD.replace("per: 1000,", "region: us-east1, per: 1000,")
    with pytest.raises(CatalogError, match="price entry 1 \\(line 6\\): region 'us-east1' is not an AWS region name"):
        load_builtin(data_dir=write_data(text=text))


def test_overlapping_image_prices_name_the_size_class(write_data) -> None:
    text = """
        provider: test
        models:
          acme.image-v1:
            prices:
              - {effective_from: "2025-01-01", per: 1, images: [{quality: premium, max_width: 512, max_height: 512,
                 price: "0.04"}], source: "https://example.com/p", checked: "2026-11-25"}
              - {effective_from: "2025-03-01", per: 1, images: [{quality: premium, max_width: 512, max_height: 512,
                 price: "0.03"}], source: "https://example.com/p", checked: "2026-11-25"}
    """
    with pytest.raises(CatalogError, match=r"`acme.image-v1` images \[premium, up to 512x512\] \(on_demand\) overlap "
                                           r"between 2025-03-01 and open end"):
        load_builtin(data_dir=write_data(text=text))


def test_the_largest_allowed_event_at_the_highest_allowed_prices_fits_64_bit_pico_dollars() -> None:
    # The transform computes costs as BIGINT pico-dollars: the event schema's per-event maxima and the catalog's
    # unit-price limits, defined apart, must together keep an event's total cost below 2^63.
    from common.contracts import BY_NAME, COUNT_FIELDS, DIMENSION_OF
    from pricing_catalog.model import MAX_UNIT_PRICE_USD

    assert set(DIMENSION_OF) == set(COUNT_FIELDS) and set(DIMENSION_OF.values()) == set(MAX_UNIT_PRICE_USD)
    worst = sum(BY_NAME[f].maximum * MAX_UNIT_PRICE_USD[d] * 10**12 for f, d in DIMENSION_OF.items())
    assert worst < 2**63
