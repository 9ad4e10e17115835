"""Shared fixtures of the pricing tests: the built-in catalog, a temporary lake, small YAML catalogs."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from common.lake import Lake
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
