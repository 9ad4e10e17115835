"""SqliteSpendStore keeps the spend-store contract (tests/spend_contract.py), as DynamoSpendStore does against moto."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.spend import SpendStore, SqliteSpendStore
from tests.spend_contract import SpendStoreContract


class TestSqliteSpendStoreContract(SpendStoreContract):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> Callable[[], SpendStore]:
        return lambda: SqliteSpendStore(tmp_path / "spend.sqlite")

    @pytest.fixture
    def broken_store(self, tmp_path: Path) -> SpendStore:
        # opened, then its file replaced by a folder: every later connection fails
        path = tmp_path / "spend.sqlite"
        store = SqliteSpendStore(path)
        store.close()
        for leftover in path.parent.glob("spend.sqlite*"):
            os.remove(leftover)
        path.mkdir()
        return store
