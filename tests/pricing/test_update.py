"""`modelmeter pricing update`: the shipped catalog published again with the lake's price sheets laid over it, and
`modelmeter transform`'s warning when the lake's newest version was built from older shipped prices.

An upgrade of modelmeter is simulated by shipping a copy of a small built-in catalog with one price changed
(``shipped`` points the loader's data folder at it).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from common.constants import PRICING_CATALOG
from modelmeter.cli import main
from pricing_catalog import Catalog, interval_at, list_versions, load_catalog
from pricing_catalog.loader import load_builtin
from pricing_catalog.publish import stale_version
from pricing_catalog.store import read_manifest
from tests.pricing.conftest import SHIPPED

HEADER = "model_id,dimension,price_usd,per,effective_from,effective_to,region,service_tier\n"
LLAMA = "meta.llama3-8b-instruct-v1:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
#: The upgrade: Llama 3 8B's shipped input price changes (from 0.0003 to 0.00022 per 1,000 tokens).
UPGRADE = SHIPPED.replace('input_tokens: "0.0003", output_tokens: "0.0006"',
                          'input_tokens: "0.00022", output_tokens: "0.0006"')
#: Finance's override: Llama 3 8B input at 0.50 per million tokens from 2026-01-01.
OVERRIDE = HEADER + f"{LLAMA},input_tokens,0.50,1000000,2026-01-01,,,\n"
SEED = Path(__file__).parent / "seed" / "models.json"


def _per_1000(catalog: Catalog, model: str, dimension: str, day: str, region: str | None = None) -> Decimal | None:
    intervals = catalog.prices_for(model_id=model, region=region, service_tier="on_demand")
    interval = interval_at(intervals, dimension=dimension, instant=datetime.fromisoformat(day).replace(tzinfo=UTC))
    return None if interval is None else (interval.price_usd * 1000 / interval.per).normalize()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_update_keeps_an_earlier_sheets_override_after_the_shipped_data_changes(
        lake, shipped, write_sheet, capsys) -> None:
    # GIVEN a lake on the shipped catalog with finance's override of Llama's input price imported
    assert UPGRADE != SHIPPED
    shipped()
    sheet = write_sheet(OVERRIDE)
    status, out, _ = _run(capsys, "pricing", "import", str(sheet), "--lake", lake.uri)
    assert status == 0
    sheet_version = out.strip()
    # WHEN modelmeter is upgraded (one shipped price changed) and `pricing update` runs
    shipped(UPGRADE)
    status, out, err = _run(capsys, "pricing", "update", "--lake", lake.uri, "--note", "upgrade")
    # THEN a new version's id is alone on stdout, naming on stderr the sheet laid over it again
    assert status == 0
    version = out.strip()
    assert out == version + "\n" and version == list_versions(lake=lake)[-1].version
    assert err.strip() == (f"published {version}: the shipped catalog ({load_builtin().version}) with the lake's "
                           f"price sheets laid over it again, in order: SHEET.csv ({sheet_version})")
    catalog = load_catalog(lake=lake)
    # AND the override survives in its period, the new shipped price applies before it, the rest is unchanged
    assert _per_1000(catalog, LLAMA, "input_tokens", "2026-06-01") == Decimal("0.0005")
    assert _per_1000(catalog, LLAMA, "input_tokens", "2025-06-01") == Decimal("0.00022")
    assert _per_1000(catalog, LLAMA, "output_tokens", "2026-06-01") == Decimal("0.0006")
    assert _per_1000(catalog, HAIKU, "input_tokens", "2026-06-01") == Decimal("0.00025")
    # AND the version records what it was built from; the version before it still has the old price
    manifest = read_manifest(lake=lake, version=version)
    assert manifest["builtin_digest"] == load_builtin().content_digest and manifest["sheet"] is None
    assert manifest["note"] == "upgrade"
    before = load_catalog(lake=lake, version=sheet_version)
    assert _per_1000(before, LLAMA, "input_tokens", "2025-06-01") == Decimal("0.0003")


def test_update_is_a_no_op_with_a_message_when_nothing_changed(lake, shipped, write_sheet, capsys) -> None:
    # GIVEN a lake on the shipped catalog with a sheet: nothing to do
    shipped()
    assert _run(capsys, "pricing", "import", str(write_sheet(OVERRIDE)), "--lake", lake.uri)[0] == 0
    versions = list_versions(lake=lake)
    status, out, err = _run(capsys, "pricing", "update", "--lake", lake.uri)
    assert (status, out) == (0, "")
    assert err.strip() == (f"nothing to update: {versions[-1].version} already is the shipped catalog "
                           f"({load_builtin().version}) with the lake's price sheets laid over it "
                           f"(SHEET.csv ({versions[-1].version}))")
    # WHEN the same data is shipped again from another folder (new files, same content): still nothing
    shipped()
    assert _run(capsys, "pricing", "update", "--lake", lake.uri)[:2] == (0, "")
    # AND after an upgrade, the first update publishes and the second has nothing to do
    shipped(UPGRADE)
    assert _run(capsys, "pricing", "update", "--lake", lake.uri)[1] != ""
    status, out, err = _run(capsys, "pricing", "update", "--lake", lake.uri)
    assert (status, out) == (0, "") and err.startswith("nothing to update: ")
    assert len(list_versions(lake=lake)) == len(versions) + 1


def test_update_of_an_empty_lake_publishes_the_shipped_catalog(lake, shipped, capsys) -> None:
    shipped()
    status, out, _ = _run(capsys, "pricing", "update", "--lake", lake.uri)
    assert status == 0 and out.strip() == list_versions(lake=lake)[0].version
    assert load_catalog(lake=lake).content_digest == load_builtin().content_digest


def test_update_lays_seed_and_csv_sheets_over_again_in_order(lake, shipped, write_sheet, tmp_path, capsys) -> None:
    # GIVEN the seed's prices from December, then a CSV sheet for Llama in us-east-1 from January
    shipped()
    seed = tmp_path / "models.json"
    shutil.copy(SEED, seed)
    assert _run(capsys, "pricing", "import-seed", str(seed), "--effective-from", "2026-12-01",
                "--lake", lake.uri)[0] == 0
    january = write_sheet(HEADER + f"{LLAMA},input_tokens,0.45,1000000,2027-01-01,,us-east-1,\n", name="jan.csv")
    assert _run(capsys, "pricing", "import", str(january), "--lake", lake.uri)[0] == 0
    # WHEN modelmeter is upgraded and the catalog updated
    shipped(UPGRADE)
    status, _, err = _run(capsys, "pricing", "update", "--lake", lake.uri)
    assert status == 0 and "in order: models.json (" in err and "), jan.csv (" in err
    catalog = load_catalog(lake=lake)
    # THEN both sheets apply again, the later over the earlier, and the upgrade everywhere else
    assert _per_1000(catalog, LLAMA, "input_tokens", "2026-12-15", region="us-east-1") == Decimal("0.0004")
    assert _per_1000(catalog, LLAMA, "input_tokens", "2027-02-01", region="us-east-1") == Decimal("0.00045")
    assert _per_1000(catalog, LLAMA, "input_tokens", "2026-12-15", region="us-west-2") == Decimal("0.00022")
    assert _per_1000(catalog, "anthropic.claude-v2:1", "input_tokens", "2026-12-15", region="us-east-1") == Decimal(
        "0.008")


def test_a_sheet_imported_before_sheets_were_kept_survives_the_update(lake, shipped, write_sheet, capsys) -> None:
    # GIVEN a lake written before versions kept their sheet and recorded their built-in data
    shipped()
    assert _run(capsys, "pricing", "import", str(write_sheet(OVERRIDE)), "--lake", lake.uri)[0] == 0
    for info in list_versions(lake=lake):
        folder = Path(lake.path(PRICING_CATALOG, f"version={info.version}"))
        manifest = json.loads((folder / "manifest.json").read_text())
        del manifest["sheet"], manifest["builtin_digest"]
        (folder / "manifest.json").write_text(json.dumps(manifest))
        (folder / "sheet.parquet").unlink(missing_ok=True)
    assert stale_version(lake=lake) is None  # followed back to the built-in version under it: the shipped data
    # WHEN modelmeter is upgraded
    shipped(UPGRADE)
    assert stale_version(lake=lake) == list_versions(lake=lake)[-1].version
    status, _, err = _run(capsys, "pricing", "update", "--lake", lake.uri)
    # THEN the sheet is recovered from its version and laid over the new shipped catalog
    assert status == 0 and "in order: SHEET.csv (" in err
    catalog = load_catalog(lake=lake)
    assert _per_1000(catalog, LLAMA, "input_tokens", "2026-06-01") == Decimal("0.0005")
    assert _per_1000(catalog, LLAMA, "input_tokens", "2025-06-01") == Decimal("0.00022")
    assert stale_version(lake=lake) is None
    assert _run(capsys, "pricing", "update", "--lake", lake.uri)[1] == ""


def test_transform_warns_when_the_newest_version_is_older_than_the_shipped_catalog(lake, shipped, capsys) -> None:
    day = ["transform", "--from", "2026-11-20", "--to", "2026-11-20", "--lake", lake.uri]
    # GIVEN a lake priced by the shipped catalog: no warning
    shipped()
    status, _, err = _run(capsys, *day)
    assert status == 0 and "pricing update" not in err
    newest = list_versions(lake=lake)[-1].version
    # WHEN modelmeter is upgraded: the transform still prices with the lake's version, and says so in one line
    shipped(UPGRADE)
    status, out, err = _run(capsys, *day)
    assert status == 0 and f"price version {newest};" in out
    warnings = [line for line in err.splitlines() if "modelmeter pricing update" in line]
    assert warnings == [f"warning: the lake's newest price version {newest} was built from older built-in prices "
                        f"than this modelmeter ships; `modelmeter pricing update` publishes them with the lake's "
                        f"price sheets laid over again"]
    # AND after `pricing update` the warning is gone
    assert _run(capsys, "pricing", "update", "--lake", lake.uri)[0] == 0
    status, _, err = _run(capsys, *day)
    assert status == 0 and "pricing update" not in err


def test_a_version_read_back_has_the_content_digest_of_what_was_published(lake, shipped) -> None:
    shipped()
    builtin = load_builtin()
    assert load_catalog(lake=lake).content_digest == builtin.content_digest
    assert builtin.content_digest != Catalog(version="x", rows=builtin.rows[1:]).content_digest
