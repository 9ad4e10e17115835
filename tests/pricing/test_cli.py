"""`modelmeter pricing import` and `modelmeter pricing list` end to end through modelmeter.cli.main."""

from __future__ import annotations

import re

from modelmeter.cli import main
from pricing_catalog import list_versions, load_catalog

HEADER = "model_id,dimension,price_usd,per,effective_from,effective_to,region,service_tier\n"
VERSION_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ-[0-9a-f]{6}$")


def test_import_prints_the_new_version_alone_and_list_shows_it(write_sheet, lake, capsys) -> None:
    # GIVEN a price sheet
    sheet = write_sheet(HEADER + "amazon.nova-pro-v1:0,input_tokens,0.7,1000000,2026-11-25T12:00:00Z,,,\n")
    # WHEN it is imported through the command line
    status = main(["pricing", "import", str(sheet), "--lake", lake.uri, "--note", "finance Q4"])
    out, err = capsys.readouterr()
    # THEN the version id is printed alone on stdout, and it is the latest catalog
    assert status == 0 and err == ""
    version = out.strip()
    assert VERSION_RE.match(version) and out == version + "\n"
    assert load_catalog(lake=lake).version == version
    # AND `pricing list` shows the built-in version, then the new one marked latest with its note
    assert main(["pricing", "list", "--lake", lake.uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["version", "created"]
    assert len(lines) == 3 and "built-in catalog" in lines[1]
    assert lines[2].startswith(version) and lines[2].endswith("finance Q4  (latest)")


def test_a_bad_sheet_exits_1_names_the_row_and_publishes_nothing(write_sheet, lake, capsys) -> None:
    sheet = write_sheet(HEADER + "amazon.nova-pro-v1:0,input_tokens,0.7,1000000,2026-01-01,,,\n"
                                 "amazon.nova-pro-v1:0,input_tokens,-0.7,1000000,2027-01-01,,,\n")
    assert main(["pricing", "import", str(sheet), "--lake", lake.uri]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0] == "modelmeter pricing import: SHEET.csv:3: price_usd '-0.7' is negative: prices are ≥ 0"
    assert "nothing was published" in err
    assert list_versions(lake=lake) == []


def test_a_missing_sheet_exits_1(lake, tmp_path, capsys) -> None:
    assert main(["pricing", "import", str(tmp_path / "nope.csv"), "--lake", lake.uri]) == 1
    assert capsys.readouterr().err.strip() == f"modelmeter pricing import: {tmp_path / 'nope.csv'}: no such file"


def test_list_on_an_empty_lake_publishes_and_shows_the_builtin_catalog(lake, capsys) -> None:
    assert main(["pricing", "list", "--lake", lake.uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].endswith("built-in catalog  (latest)")
    assert VERSION_RE.match(lines[1].split()[0])


def test_the_cli_module_does_not_shadow_the_publish_function() -> None:
    import importlib

    import pricing_catalog

    importlib.import_module("pricing_catalog.publish")  # what modelmeter.cli does
    assert pricing_catalog.publish.__module__ == "pricing_catalog.store"
    assert callable(pricing_catalog.publish)


def test_the_documented_example_sheet_imports(lake, capsys) -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "docs" / "price_sheet.example.csv"
    assert main(["pricing", "import", str(example), "--lake", lake.uri, "--note", "example"]) == 0
    version = capsys.readouterr().out.strip()
    catalog = load_catalog(lake=lake)
    assert catalog.version == version
    assert catalog.resolve("sm-endpoint-support-llm") == "sm-endpoint-support-llm"
    assert {i.dimension for i in catalog.prices_for(model_id="anthropic.claude-sonnet-4-20250514-v1:0",
                                                    region="us-east-1", service_tier="batch")} == {
        "input_tokens", "output_tokens"}
