"""`modelmeter pricing import-seed models.json`: the seed guidance's price file as a price sheet over the catalog.

The fixture ``seed/models.json`` is cut from the real file (``seed/README.md`` says where its shape comes from).
Most tests ship a small controlled catalog (``shipped``) so the differences are exact whatever prices are added
to the real built-in data; one imports over the real built-in data.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from modelmeter.cli import main
from pricing_catalog import Catalog, interval_at, list_versions, load_catalog
from pricing_catalog.seed import read_seed
from pricing_catalog.store import read_sheet_rows

FIXTURE = Path(__file__).parent / "seed" / "models.json"
DAY = "2026-12-01"
START = datetime(2026, 12, 1, tzinfo=UTC)
BEFORE = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)


@pytest.fixture()
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.json"
    shutil.copy(FIXTURE, path)
    return path


def _price(catalog: Catalog, model: str, region: str | None, dimension: str, at: datetime,
           **image: object) -> Decimal | None:
    """The price in force, per 1,000 tokens or per image."""
    intervals = catalog.prices_for(model_id=model, region=region, service_tier="on_demand", **image)  # type: ignore
    interval = interval_at(intervals, dimension=dimension, instant=at)
    return None if interval is None else (interval.price_usd * 1000 / interval.per if dimension != "images"
                                          else interval.price_usd).normalize()


def _import(seed: Path, lake, capsys) -> tuple[int, str, str]:
    status = main(["pricing", "import-seed", str(seed), "--effective-from", DAY, "--lake", lake.uri])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_seed_file_reads_as_one_row_per_price_in_its_region(seed_file) -> None:
    sheet = read_seed(seed_file, effective_from=START)
    rows = {(r.row.model, r.row.region, r.row.dimension, r.row.image_max_width, r.row.image_quality): r
            for r in sheet.rows}
    # text: input and output per 1,000 tokens, in the region that lists them, on demand from the day on
    claude = rows[("anthropic.claude-v2:1", "us-east-1", "input_tokens", None, None)].row
    assert (claude.price_usd, claude.per, claude.effective_from, claude.effective_to, claude.service_tier) == (
        Decimal("0.008"), 1000, START, None, "on_demand")
    assert claude.source == "seed models.json:5" and rows[("anthropic.claude-v2:1", "us-east-1", "input_tokens",
                                                           None, None)].line == 5
    # embeddings: input only (the seed writes output_cost 0)
    assert ("amazon.titan-embed-text-v1", "us-east-1", "output_tokens", None, None) not in rows
    # images: 512x512 is a size class, `larger` any size, by quality
    assert rows[("stability.stable-diffusion-xl-v1", "us-east-1", "images", 512, "premium")].row.price_usd == Decimal(
        "0.036")
    larger = rows[("stability.stable-diffusion-xl-v1", "us-east-1", "images", None, "standard")].row
    assert (larger.price_usd, larger.per, larger.image_max_height) == (Decimal("0.036"), 1, None)
    # 5 text models × 2 + 1 embeddings + 1 image model × 4 ; 2 embeddings ; 2 × 2 + 1 + 4
    assert len(sheet.rows) == 15 + 2 + 9
    # the seed's "<model>-image" pseudo-id is skipped, and said so once with its regions
    assert sheet.skipped == ["skipped amazon.titan-embed-image-v1-image (us-east-1, eu-west-1): the seed's id for "
                             "image inputs of amazon.titan-embed-image-v1, priced per 1,000 tokens of the image's "
                             "base64 text; modelmeter never records it"]


def test_import_seed_publishes_a_version_that_prices_a_legacy_model(seed_file, lake, shipped, capsys) -> None:
    # GIVEN a lake on the shipped catalog, which has no price for the legacy anthropic.claude-v2:1
    shipped()
    base = load_catalog(lake=lake)
    assert base.resolve("anthropic.claude-v2:1") is None
    # WHEN the seed's price file is imported from December 1st
    status, out, err = _import(seed_file, lake, capsys)
    # THEN the new version's id is alone on stdout, and it is the latest, keeping the sheet's rows
    assert status == 0
    version = out.strip()
    assert out == version + "\n" and [v.version for v in list_versions(lake=lake)] == [base.version, version]
    catalog = load_catalog(lake=lake)
    assert catalog.version == version
    assert len(read_sheet_rows(lake=lake, version=version)) == 26
    # AND the legacy model is priced in the region the seed lists, from the effective date on
    assert _price(catalog, "anthropic.claude-v2:1", "us-east-1", "input_tokens", START) == Decimal("0.008")
    assert _price(catalog, "anthropic.claude-v2:1", "us-east-1", "output_tokens", START) == Decimal("0.024")
    assert _price(catalog, "anthropic.claude-v2:1", "us-east-1", "input_tokens", BEFORE) is None
    assert _price(catalog, "anthropic.claude-v2:1", "eu-west-1", "input_tokens", START) is None
    # AND a catalog model's seed price wins in the seed's regions only, from its date
    assert _price(catalog, "meta.llama3-8b-instruct-v1:0", "us-east-1", "input_tokens", START) == Decimal("0.0004")
    assert _price(catalog, "meta.llama3-8b-instruct-v1:0", "us-east-1", "input_tokens", BEFORE) == Decimal("0.0003")
    assert _price(catalog, "meta.llama3-8b-instruct-v1:0", "us-west-2", "input_tokens", START) == Decimal("0.0003")
    # AND images by the seed's buckets: up to 512 x 512, and larger (any size above), by quality
    sdxl = "stability.stable-diffusion-xl-v1"
    assert _price(catalog, sdxl, "us-east-1", "images", START, image_width=512, image_height=512) == Decimal("0.018")
    assert _price(catalog, sdxl, "us-east-1", "images", START, image_width=1024, image_height=1024,
                  image_quality="premium") == Decimal("0.072")
    titan = "amazon.titan-image-generator-v1"
    assert _price(catalog, titan, "eu-west-1", "images", START, image_width=1024, image_height=1024) == Decimal("0.011")
    assert _price(catalog, titan, "us-east-1", "images", START, image_width=1024, image_height=1024) == Decimal("0.01")


def test_import_seed_reports_the_prices_that_differ_from_the_catalog(seed_file, lake, shipped, capsys) -> None:
    shipped()
    status, _, err = _import(seed_file, lake, capsys)
    assert status == 0
    lines = err.splitlines()
    assert lines[0] == ("models.json: 19 price(s) differ from the catalog on 2026-12-01 (12 where it has none); "
                        "tokens per 1,000, images per image:")
    table = [line.split() for line in lines[1:21]]
    assert table[0] == ["model", "region", "dimension", "seed", "catalog"]
    assert ["meta.llama3-8b-instruct-v1:0", "us-east-1", "input_tokens", "0.0004", "0.0003"] in table
    assert ["meta.llama3-8b-instruct-v1:0", "eu-west-1", "output_tokens", "0.00065", "0.0006"] in table
    assert ["anthropic.claude-v2:1", "us-east-1", "input_tokens", "0.008", "none"] in table
    assert ["amazon.titan-image-generator-v1", "eu-west-1", "images", "larger", "premium", "0.013", "0.012"] in table
    assert ["cohere.embed-multilingual-v3", "ap-southeast-1", "input_tokens", "0.0001", "none"] in table
    # prices equal to the catalog's are not listed (Claude 3 Haiku, Titan embeddings, Cohere Embed English)
    assert not [row for row in table if row[0] in ("anthropic.claude-3-haiku-20240307-v1:0",
                                                   "amazon.titan-embed-text-v1", "cohere.embed-english-v3")]
    assert lines[21].startswith("note: skipped amazon.titan-embed-image-v1-image (us-east-1, eu-west-1)")
    assert len(lines) == 22


def test_the_seed_wins_over_the_real_builtin_catalog_where_it_lists_a_price(seed_file, lake, capsys) -> None:
    # GIVEN the real shipped catalog; WHEN the seed file is imported
    status, out, _ = _import(seed_file, lake, capsys)
    assert status == 0
    catalog = load_catalog(lake=lake, version=out.strip())
    # THEN every price of the file is the one in force in its region from the effective date
    for item in read_seed(seed_file, effective_from=START).rows:
        r = item.row
        image = {} if r.dimension != "images" else {
            "image_width": r.image_max_width or 1024, "image_height": r.image_max_height or 1024,
            "image_quality": r.image_quality}
        got = _price(catalog, r.model, r.region, r.dimension, START, **image)
        assert got == (r.price_usd * 1000 / r.per if r.dimension != "images" else r.price_usd).normalize(), r


def test_a_second_import_is_laid_over_the_first(seed_file, lake, shipped, capsys) -> None:
    shipped()
    assert _import(seed_file, lake, capsys)[0] == 0
    later = seed_file.read_text().replace('"anthropic.claude-v2:1": {"input_cost": 0.00800',
                                          '"anthropic.claude-v2:1": {"input_cost": 0.00700')
    seed_file.write_text(later)
    assert main(["pricing", "import-seed", str(seed_file), "--effective-from", "2027-01-01", "--lake", lake.uri]) == 0
    err = capsys.readouterr().err
    assert "models.json: 1 price(s) differ from the catalog on 2027-01-01 (0 where it has none)" in err
    catalog = load_catalog(lake=lake)
    assert _price(catalog, "anthropic.claude-v2:1", "us-east-1", "input_tokens", START) == Decimal("0.008")
    assert _price(catalog, "anthropic.claude-v2:1", "us-east-1", "input_tokens",
                  datetime(2027, 1, 1, tzinfo=UTC)) == Decimal("0.007")


CLAUDE = '"anthropic.claude-v2:1": {"input_cost": 0.00800, "output_cost": 0.02400}'
CLAUDE_PATH = '$["us-east-1"].text["anthropic.claude-v2:1"]'


@pytest.mark.parametrize(("old", "new", "line", "expected"), [
    (CLAUDE, CLAUDE.replace("0.00800", '"0.008"'), 5,
     f'{CLAUDE_PATH}.input_cost: "0.008" is not a number: write the price as a JSON number, e.g. 0.008'),
    (CLAUDE, CLAUDE.replace("0.00800", "-0.008"), 5, f"{CLAUDE_PATH}.input_cost: -0.008 is negative: prices are ≥ 0"),
    (CLAUDE, CLAUDE.replace("0.00800", "0.0000000000001"), 5,
     f"{CLAUDE_PATH}.input_cost: 1E-13 has more than 12 decimals (the lake keeps 12)"),
    (CLAUDE, CLAUDE.replace("0.00800", "5"), 5,
     f"{CLAUDE_PATH}.input_cost: input_cost 5 per 1000 is 0.005 USD per token, above the limit of 0.001 USD per "
     f"token (is `per` right? token prices are usually per 1000000)"),
    (CLAUDE, CLAUDE.replace('"output_cost"', '"outputcost"'), 5,
     f"{CLAUDE_PATH}.outputcost: unknown key 'outputcost': allowed are input_cost, output_cost"),
    (CLAUDE, CLAUDE.replace(', "output_cost": 0.02400', ""), 5,
     f"{CLAUDE_PATH}.output_cost: missing (required: input_cost, output_cost)"),
    (CLAUDE, CLAUDE + ",\n            " + CLAUDE.replace("0.00800", "0.009"), 6,
     f"{CLAUDE_PATH}: key 'anthropic.claude-v2:1' appears twice in the same object: keep one"),
    ('"ap-southeast-1": {', '"ap-southeast-one": {', 27,
     '$["ap-southeast-one"]: region \'ap-southeast-one\' is not an AWS region name such as us-east-1 (leave it '
     'blank for every region)'),
    ('"standard": 0.018', '"standard": true', 17,
     '$["us-east-1"].image["stability.stable-diffusion-xl-v1"]["512x512"].standard: true is not a number: write '
     'the price as a JSON number, e.g. 0.008'),
    ('"image": {}\n    },', '"images": {}\n    },', 33,
     '$["ap-southeast-1"].images: unknown key \'images\': allowed are text, embeddings, image'),
    ('"image": {}\n    },', '"image": []\n    },', 33,
     '$["ap-southeast-1"].image: expected an object {…}, got list []'),
])
def test_a_bad_seed_file_exits_1_naming_line_and_json_path_and_publishes_nothing(
        seed_file, lake, capsys, old: str, new: str, line: int, expected: str) -> None:
    text = FIXTURE.read_text()
    assert old in text
    seed_file.write_text(text.replace(old, new, 1))
    status, out, err = _import(seed_file, lake, capsys)
    # THEN exit 1, nothing on stdout, the problem named by line and JSON path, and no version at all
    assert status == 1 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith("modelmeter pricing import-seed: models.json:")
    lines[0] = lines[0].removeprefix("modelmeter pricing import-seed: ")
    assert f"models.json:{line}: {expected}" in lines, lines
    assert lines[-1].endswith("nothing was published")
    assert list_versions(lake=lake) == []


def test_not_json_and_a_missing_file_exit_1(seed_file, lake, capsys, tmp_path) -> None:
    seed_file.write_text(FIXTURE.read_text().replace('"text": {},', '"text": {}'))
    status, out, err = _import(seed_file, lake, capsys)
    assert status == 1 and out == ""
    assert err.startswith("modelmeter pricing import-seed: models.json:29: not valid JSON: Expecting ',' delimiter")
    seed_file.write_text(json.dumps({"us-east-1": {"text": {}, "embeddings": {}, "image": {}}, "eu-west-1": "x"}))
    status, _, err = _import(seed_file, lake, capsys)
    assert status == 1 and 'models.json:1: $["eu-west-1"]: expected an object {…}, got str "x"' in err
    assert main(["pricing", "import-seed", str(tmp_path / "nope.json"), "--effective-from", DAY,
                 "--lake", lake.uri]) == 1
    assert capsys.readouterr().err.strip() == f"modelmeter pricing import-seed: {tmp_path / 'nope.json'}: no such file"
    assert list_versions(lake=lake) == []


def test_the_effective_date_is_required_and_must_be_a_date(seed_file, lake, capsys) -> None:
    for extra in ([], ["--effective-from", "December"]):
        with pytest.raises(SystemExit) as exit_:
            main(["pricing", "import-seed", str(seed_file), "--lake", lake.uri, *extra])
        assert exit_.value.code == 2
    assert "'December' is not a date" in capsys.readouterr().err
