"""Price sheets: parsing with row-named errors, and the override rule that cuts existing intervals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pricing_catalog.catalog import Catalog
from pricing_catalog.model import CatalogError, PriceRow
from pricing_catalog.publish import import_sheet
from pricing_catalog.sheet import apply_sheet, read_sheet
from pricing_catalog.store import list_versions, load_catalog

HEADER = "model_id,dimension,price_usd,per,effective_from,effective_to,region,service_tier\n"
KEY = "acme.chat-v1:0"


def _base() -> Catalog:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [PriceRow(model=KEY, dimension=d, price_usd=Decimal(p), per=1000, effective_from=start, effective_to=None,
                     source="https://example.com/p")
            for d, p in (("input_tokens", "0.001"), ("output_tokens", "0.005"))]
    rows.append(PriceRow(model=KEY, dimension="input_tokens", price_usd=Decimal("0.0005"), per=1000,
                         effective_from=start, effective_to=None, source="https://example.com/p", service_tier="batch"))
    rows += [PriceRow(model="acme.image-v1:0", dimension="images", price_usd=Decimal(p), per=1, effective_from=start,
                      effective_to=None, source="https://example.com/p", image_quality=q, image_max_width=w,
                      image_max_height=w) for q, w, p in (("standard", 512, "0.01"), ("premium", 1024, "0.02"))]
    return Catalog(version="base", rows=rows)


def _spans(catalog: Catalog, model_id: str, dimension: str, *, region: str | None = None,
           tier: str = "on_demand") -> list[tuple[str, str | None, str]]:
    return [(i.effective_from.date().isoformat(), i.effective_to and i.effective_to.isoformat()[:16], str(i.price_usd))
            for i in catalog.prices_for(model_id=model_id, region=region, service_tier=tier)
            if i.dimension == dimension]


def test_a_bounded_sheet_row_cuts_a_hole_in_the_existing_interval(write_sheet) -> None:
    sheet = read_sheet(write_sheet(HEADER + f"{KEY},input_tokens,0.0009,1000,2026-01-01,2026-02-01,,\n"))
    merged = apply_sheet(_base(), sheet)
    assert _spans(merged, KEY, "input_tokens") == [
        ("2025-01-01", "2026-01-01T00:00", "0.001"), ("2026-01-01", "2026-02-01T00:00", "0.0009"),
        ("2026-02-01", None, "0.001")]
    # other dimensions and tiers are untouched
    assert _spans(merged, KEY, "output_tokens") == [("2025-01-01", None, "0.005")]
    assert _spans(merged, KEY, "input_tokens", tier="batch") == [("2025-01-01", None, "0.0005")]


def test_an_open_ended_sheet_row_ends_the_existing_price_where_it_starts(write_sheet) -> None:
    sheet = read_sheet(write_sheet(HEADER + f"{KEY},output_tokens,4,1000000,2026-11-25T12:00:00Z,,,\n"))
    assert _spans(apply_sheet(_base(), sheet), KEY, "output_tokens") == [
        ("2025-01-01", "2026-11-25T12:00", "0.005"), ("2026-11-25", None, "4")]


def test_a_sheet_row_covering_everything_replaces_the_price(write_sheet) -> None:
    sheet = read_sheet(write_sheet(HEADER + f"{KEY},input_tokens,0.002,1000,2020-01-01,,,\n"))
    assert _spans(apply_sheet(_base(), sheet), KEY, "input_tokens") == [("2020-01-01", None, "0.002")]


def test_a_region_row_adds_a_regional_price_without_cutting_the_all_regions_price(write_sheet) -> None:
    sheet = read_sheet(write_sheet(HEADER + f"{KEY},input_tokens,0.0011,1000,2026-01-01,,eu-west-1,\n"))
    merged = apply_sheet(_base(), sheet)
    assert _spans(merged, KEY, "input_tokens", region="us-east-1") == [("2025-01-01", None, "0.001")]
    assert _spans(merged, KEY, "input_tokens", region="eu-west-1") == [
        ("2025-01-01", "2026-01-01T00:00", "0.001"), ("2026-01-01", None, "0.0011")]


def test_a_batch_row_only_touches_the_batch_tier(write_sheet) -> None:
    sheet = read_sheet(write_sheet(HEADER + f"{KEY},input_tokens,0.0004,1000,2026-01-01,,,batch\n"))
    merged = apply_sheet(_base(), sheet)
    assert _spans(merged, KEY, "input_tokens", tier="batch") == [
        ("2025-01-01", "2026-01-01T00:00", "0.0005"), ("2026-01-01", None, "0.0004")]
    assert _spans(merged, KEY, "input_tokens") == [("2025-01-01", None, "0.001")]


def test_an_images_row_prices_every_size_and_quality_in_its_period(write_sheet) -> None:
    sheet = read_sheet(write_sheet(HEADER + "acme.image-v1:0,images,0.03,1,2026-01-01,,,\n"))
    merged = apply_sheet(_base(), sheet)
    for quality, size in (("standard", 512), ("premium", 1024)):
        intervals = merged.prices_for(model_id="acme.image-v1:0", region=None, service_tier="on_demand",
                                      image_width=size, image_height=size, image_quality=quality)
        assert [(i.effective_from.year, str(i.price_usd)) for i in intervals] == [
            (2025, "0.02" if quality == "premium" else "0.01"), (2026, "0.03")]


def test_a_new_profile_id_inherits_its_prices_and_overrides_only_the_sheet_dimension(write_sheet) -> None:
    # GIVEN a sheet pricing the us. profile's output tokens only
    sheet = read_sheet(write_sheet(HEADER + f"us.{KEY},output_tokens,0.006,1000,2026-01-01,,,\n"))
    merged = apply_sheet(_base(), sheet)
    # THEN the profile id is now an exact key, keeps the inherited input price, and the base id is unchanged
    assert merged.resolve(f"us.{KEY}") == f"us.{KEY}"
    assert _spans(merged, f"us.{KEY}", "input_tokens") == [("2025-01-01", None, "0.001")]
    assert _spans(merged, f"us.{KEY}", "output_tokens") == [
        ("2025-01-01", "2026-01-01T00:00", "0.005"), ("2026-01-01", None, "0.006")]
    assert _spans(merged, KEY, "output_tokens") == [("2025-01-01", None, "0.005")]
    assert _spans(merged, f"eu.{KEY}", "output_tokens") == [("2025-01-01", None, "0.005")]


def test_a_brand_new_model_gets_exactly_the_sheet_prices(write_sheet) -> None:
    sheet = read_sheet(write_sheet(HEADER + "my-sagemaker-endpoint,input_tokens,0.5,1000000,2026-01-01,,,\n"
                                   "my-sagemaker-endpoint,output_tokens,1.5,1000000,2026-01-01,,,\n"))
    merged = apply_sheet(_base(), sheet)
    assert _spans(merged, "my-sagemaker-endpoint", "input_tokens") == [("2026-01-01", None, "0.5")]
    assert _spans(merged, "my-sagemaker-endpoint", "output_tokens") == [("2026-01-01", None, "1.5")]


def test_blank_optional_columns_lines_and_a_bom_are_accepted(write_sheet) -> None:
    path = write_sheet("\ufeffmodel_id,dimension,price_usd,per,effective_from\n\n"
                       f"{KEY}, input_tokens , 0.25 ,1000000,2026-01-01\n")
    [row] = read_sheet(path)
    assert (row.line, row.row.price_usd, row.row.service_tier, row.row.region) == (3, Decimal("0.25"), "on_demand",
                                                                                   None)


def test_every_bad_row_is_named_and_nothing_else_is_accepted(write_sheet) -> None:
    # GIVEN a sheet with one good row and one bad row of each kind
    path = write_sheet(HEADER
                       + f"{KEY},input_tokens,0.001,1000,2026-01-01,,,\n"         # 2: good
                       + f"{KEY},output_tokens,-1,1000,2026-01-01,,,\n"           # 3: negative
                       + f"{KEY},reasoning_tokens,1,1000,2026-01-01,,,\n"         # 4: unknown dimension
                       + f"{KEY},output_tokens,1.2.3,1000,2026-01-01,,,\n"        # 5: not a number
                       + f"{KEY},output_tokens,0.1,100,2026-01-01,,,\n"           # 6: bad per
                       + f"{KEY},output_tokens,0.1,1000,01/02/2026,,,\n"          # 7: bad date
                       + f"{KEY},output_tokens,0.1,1000,2026-02-01,2026-01-01,,\n"  # 8: ends before it starts
                       + f"{KEY},output_tokens,0.1,1000,2026-01-01,,,express\n"   # 9: unknown tier
                       + f"{KEY},input_tokens,0.002,1000,2026-06-01,,,\n"         # 10: overlaps line 2
                       + f"{KEY},output_tokens,0.1,1000,2026-01-01,,,,extra\n"    # 11: too many values
                       + f"{KEY},output_tokens,NaN,1000,2026-01-01,,,\n")         # 12: not finite
    # WHEN reading it THEN every bad row is reported with its line, and the sheet is refused as a whole
    with pytest.raises(CatalogError) as err:
        read_sheet(path)
    lines = str(err.value).splitlines()
    assert lines == [
        "SHEET.csv:3: price_usd '-1' is negative: prices are ≥ 0",
        "SHEET.csv:4: unknown dimension 'reasoning_tokens': use one of input_tokens, output_tokens, "
        "cache_read_input_tokens, cache_write_input_tokens, images, input_images, cache_write_1h_input_tokens",
        "SHEET.csv:5: price_usd '1.2.3' is not a number: write a decimal such as 0.25",
        "SHEET.csv:6: per '100' must be one of 1, 1000, 1000000",
        "SHEET.csv:7: effective_from '01/02/2026' is not a date: write YYYY-MM-DD or 2025-01-31T12:00:00Z",
        "SHEET.csv:8: effective_to 2026-01-01 is not after effective_from: the end is exclusive",
        "SHEET.csv:9: unknown service_tier 'express': use one of on_demand, batch, flex, priority, provisioned "
        "or leave it blank",
        "SHEET.csv:11: more values than columns",
        "SHEET.csv:12: price_usd 'NaN' is not a finite number",
        "SHEET.csv:10: overlaps line 2 for acme.chat-v1:0 input_tokens (every region, on_demand) from "
        "2026-06-01T00:00:00+00:00: end line 2 (effective_to) where this one starts",
        "SHEET.csv: refused (10 bad row(s)); nothing was published",
    ]


@pytest.mark.parametrize("header, expected", [
    ("model_id,dimension,price,per,effective_from\n", "SHEET.csv:1: unknown column(s) price; missing column(s) "
                                                      "price_usd"),
    ("model_id,dimension,price_usd,per\n", "SHEET.csv:1: missing column(s) effective_from"),
    ("model_id,model_id,dimension,price_usd,per,effective_from\n", "SHEET.csv:1: column(s) model_id appear twice"),
    ("", "SHEET.csv:1: empty sheet"),
])
def test_bad_headers_are_refused(write_sheet, header: str, expected: str) -> None:
    with pytest.raises(CatalogError) as err:
        read_sheet(write_sheet(header))
    assert str(err.value).startswith(expected)


def test_a_sheet_without_rows_is_refused(write_sheet) -> None:
    with pytest.raises(CatalogError, match="the sheet has no price rows; nothing was published"):
        read_sheet(write_sheet(HEADER))


def test_nothing_is_published_when_the_sheet_is_bad(write_sheet, lake) -> None:
    bad = write_sheet(HEADER + f"{KEY},input_tokens,-1,1000,2026-01-01,,,\n")
    with pytest.raises(CatalogError, match="SHEET.csv:2: price_usd '-1' is negative"):
        import_sheet(lake=lake, sheet=bad)
    # not even the built-in catalog got auto-published
    assert list_versions(lake=lake) == []
    assert lake.list_files("pricing", suffix="") == []


def test_import_publishes_a_new_version_over_the_latest(write_sheet, lake) -> None:
    # GIVEN a lake whose latest version is the built-in catalog
    first = load_catalog(lake=lake)
    sheet = write_sheet(HEADER + "anthropic.claude-3-haiku-20240307-v1:0,input_tokens,0.2,1000000,"
                                 "2026-11-25T12:00:00Z,,,\n")
    # WHEN a sheet is imported
    version = import_sheet(lake=lake, sheet=sheet, note="finance: negotiated Haiku price")
    # THEN a second version exists, is the latest, and carries the override from noon on
    versions = list_versions(lake=lake)
    assert [v.version for v in versions] == [first.version, version]
    assert versions[-1].note == "finance: negotiated Haiku price"
    assert versions[-1].source.startswith("sheet SHEET.csv (sha256 ") and first.version in versions[-1].source
    latest = load_catalog(lake=lake)
    assert latest.version == version
    spans = _spans(latest, "anthropic.claude-3-haiku-20240307-v1:0", "input_tokens", region="us-east-1")
    assert spans == [("2024-03-13", "2026-11-25T12:00", "0.00025"), ("2026-11-25", None, "0.2")]
    # AND the first version still prices as before
    old = load_catalog(lake=lake, version=first.version)
    assert _spans(old, "anthropic.claude-3-haiku-20240307-v1:0", "input_tokens") == [("2024-03-13", None, "0.00025")]


def test_a_region_typo_is_refused(write_sheet) -> None:
    with pytest.raises(CatalogError, match=r"SHEET.csv:2: region 'us-east1' is not an AWS region name"):
        read_sheet(write_sheet(HEADER + f"{KEY},input_tokens,0.001,1000,2026-01-01,,us-east1,\n"))


def test_an_upper_case_id_overrides_the_existing_key(write_sheet) -> None:
    sheet = read_sheet(write_sheet(HEADER + f"{KEY.upper()},input_tokens,0.002,1000,2026-01-01,,,\n"))
    merged = apply_sheet(_base(), sheet)
    assert merged.models == _base().models
    assert _spans(merged, KEY, "input_tokens") == [("2025-01-01", "2026-01-01T00:00", "0.001"),
                                                   ("2026-01-01", None, "0.002")]


def test_a_unit_price_no_model_has_is_refused_with_the_likely_fix(write_sheet) -> None:
    # GIVEN a sheet where finance wrote $15 per 1 token (meant: per 1,000,000) and $500 per image
    path = write_sheet(HEADER
                       + f"{KEY},output_tokens,15,1,2026-01-01,,,\n"
                       + f"{KEY},output_tokens,1000,1000000,2026-01-01,,,\n"  # $1,000 per million: the limit, kept
                       + "acme.image-v1,images,500,1,2026-01-01,,,\n")
    # WHEN reading it THEN the two rows above the limits are named, with the limit and what to check
    with pytest.raises(CatalogError) as err:
        read_sheet(path)
    assert str(err.value).splitlines() == [
        "SHEET.csv:2: price_usd 15 per 1 is 15 USD per token, above the limit of 0.001 USD per token "
        "(is `per` right? token prices are usually per 1000000)",
        "SHEET.csv:4: price_usd 500 per 1 is 500 USD per image, above the limit of 100 USD per image",
        "SHEET.csv: refused (2 bad row(s)); nothing was published",
    ]
