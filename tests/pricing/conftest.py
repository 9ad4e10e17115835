"""Shared fixtures of the pricing tests: the built-in catalog, a temporary lake, small YAML catalogs, shipped data."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from common.lake import Lake
from pricing_catalog import loader
from pricing_catalog.catalog import Catalog
from pricing_catalog.loader import load_builtin

SOURCE = "https://aws.amazon.com/bedrock/pricing/"


@pytest.fixture(scope="session")
def builtin() -> Catalog:
    return load_builtin()


@pytest.fixture()
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake")


@pytest.fixture()
def write_data(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML price files into a fresh data folder and return the folder."""
    folder = tmp_path / "data"
    folder.mkdir()

    def write(name: str = "test.yaml", text: str = "", **more: str) -> Path:
        (folder / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        for extra_name, extra_text in more.items():
            (folder / f"{extra_name}.yaml").write_text(textwrap.dedent(extra_text).lstrip(), encoding="utf-8")
        return folder

    return write


@pytest.fixture()
def write_sheet(tmp_path: Path) -> Callable[[str], Path]:
    """Write a price sheet (CSV) and return its path."""

    def write(text: str, name: str = "SHEET.csv") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


#: A small built-in catalog the seed and update tests control (the shipped data moves as prices are added).
SHIPPED = """\
provider: test
models:
  anthropic.claude-3-haiku-20240307-v1:0:
    prices:
      - {effective_from: "2024-03-13", per: 1000, input_tokens: "0.00025", output_tokens: "0.00125",
         source: "https://aws.amazon.com/bedrock/pricing/", checked: "2026-11-25"}
  meta.llama3-8b-instruct-v1:0:
    prices:
      - {effective_from: "2024-04-23", per: 1000, input_tokens: "0.0003", output_tokens: "0.0006",
         source: "https://aws.amazon.com/bedrock/pricing/", checked: "2026-11-25"}
  amazon.titan-embed-text-v1:
    prices:
      - {effective_from: "2023-09-28", per: 1000, input_tokens: "0.0001",
         source: "https://aws.amazon.com/bedrock/pricing/", checked: "2026-11-25"}
  cohere.embed-english-v3:
    prices:
      - {effective_from: "2023-11-13", per: 1000, input_tokens: "0.0001",
         source: "https://aws.amazon.com/bedrock/pricing/", checked: "2026-11-25"}
  amazon.titan-image-generator-v1:
    prices:
      - {effective_from: "2023-11-29", per: 1, source: "https://aws.amazon.com/bedrock/pricing/", checked: "2026-11-25",
         images: [{quality: standard, max_width: 512, max_height: 512, price: "0.008"},
                  {quality: premium, max_width: 512, max_height: 512, price: "0.01"},
                  {quality: standard, max_width: 1024, max_height: 1024, price: "0.01"},
                  {quality: premium, max_width: 1024, max_height: 1024, price: "0.012"}]}
"""


@pytest.fixture()
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Make ``text`` (YAML) the built-in price data this modelmeter "ships"; call again to ship an upgrade."""
    count = 0

    def ship(text: str = SHIPPED) -> Path:
        nonlocal count
        count += 1
        folder = tmp_path / f"shipped-{count}"
        folder.mkdir()
        (folder / "test.yaml").write_text(text, encoding="utf-8")
        monkeypatch.setattr(loader, "DATA_DIR", folder)
        return folder

    return ship
