"""The contract every :class:`ingest.spend.SpendStore` keeps, as one test class each store's test module binds.

A binding subclasses :class:`SpendStoreContract` and provides two fixtures:

- ``open_store``: a callable returning a new handle on one shared store, as another gateway process would open it
  (its own connection or client); the test closes what it opens.
- ``broken_store``: a handle on a store that cannot be reached (every call raises ``SpendStoreError``).

Bound by ``tests/gateway/test_spend_contract.py`` (SQLite) and ``tests/aws/test_spend_dynamo.py`` (DynamoDB, moto).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ingest.spend import PICO_PER_USD, SpendStore, SpendStoreError, SpendTotals

NOV, DEC = "2026-11-01", "2026-12-01"
DAY1, DAY2 = "2026-11-24", "2026-11-25"
THREADS = 8
ADDS_PER_THREAD = 25

OpenStore = Callable[[], SpendStore]


class SpendStoreContract:
    """What the gateway relies on: exact sums, new totals from each add, exactly-once alerts, fleet-wide."""

    @pytest.fixture
    def store(self, open_store: OpenStore) -> Iterator[SpendStore]:
        store = open_store()
        yield store
        store.close()

    def test_a_team_with_nothing_counted_reads_zeros(self, store: SpendStore) -> None:
        assert store.read("search", period=NOV, day=DAY1) == SpendTotals(0, 0, 0, 0)
        assert store.alerts("search", period=NOV) == ()
        assert store.teams(period=NOV) == ()

    def test_add_returns_the_new_totals_with_this_addition_and_read_agrees(self, store: SpendStore) -> None:
        first = store.add("search", period=NOV, day=DAY1, spend_pico=1_500_000, tokens=120)
        second = store.add("search", period=NOV, day=DAY1, spend_pico=2_500_000, tokens=30, requests=2)
        assert first == SpendTotals(spend_pico=1_500_000, period_requests=1, day_tokens=120, day_requests=1)
        assert second == SpendTotals(spend_pico=4_000_000, period_requests=3, day_tokens=150, day_requests=3)
        assert store.read("search", period=NOV, day=DAY1) == second

    def test_spend_adds_up_over_the_period_and_tokens_per_day(self, store: SpendStore) -> None:
        store.add("search", period=NOV, day=DAY1, spend_pico=7, tokens=100)
        totals = store.add("search", period=NOV, day=DAY2, spend_pico=5, tokens=40)
        assert totals == SpendTotals(spend_pico=12, period_requests=2, day_tokens=40, day_requests=1)
        assert store.read("search", period=NOV, day=DAY1).day_tokens == 100

    def test_a_refused_call_counts_a_request_and_no_money(self, store: SpendStore) -> None:
        store.add("search", period=NOV, day=DAY1, spend_pico=9, tokens=3)
        assert store.add("search", period=NOV, day=DAY1, spend_pico=0, tokens=0) == SpendTotals(9, 2, 3, 2)

    def test_teams_and_periods_are_counted_apart(self, store: SpendStore) -> None:
        store.add("search", period=NOV, day=DAY1, spend_pico=10, tokens=1)
        store.add("data-science", period=NOV, day=DAY1, spend_pico=20, tokens=2)
        store.add("search", period=DEC, day="2026-12-01", spend_pico=30, tokens=3)
        assert store.read("search", period=NOV, day=DAY1) == SpendTotals(10, 1, 1, 1)
        assert store.read("data-science", period=NOV, day=DAY1) == SpendTotals(20, 1, 2, 1)
        assert store.read("search", period=DEC, day="2026-12-01") == SpendTotals(30, 1, 3, 1)
        assert store.teams(period=NOV) == ("data-science", "search")
        assert store.teams(period=DEC) == ("search",)

    def test_money_is_exact_in_whole_pico_dollars(self, store: SpendStore) -> None:
        # $9 million and one pico-dollar: beyond a float's 53 bits, still exact
        big = 9_000_000 * PICO_PER_USD
        store.add("search", period=NOV, day=DAY1, spend_pico=big, tokens=0)
        assert store.add("search", period=NOV, day=DAY1, spend_pico=1, tokens=0).spend_pico == big + 1

    def test_set_spend_replaces_the_periods_spend_and_later_adds_go_on_from_it(self, store: SpendStore) -> None:
        store.add("search", period=NOV, day=DAY1, spend_pico=1_000, tokens=10)
        store.set_spend("search", period=NOV, spend_pico=800)
        assert store.read("search", period=NOV, day=DAY1) == SpendTotals(800, 1, 10, 1)
        assert store.add("search", period=NOV, day=DAY1, spend_pico=50, tokens=0).spend_pico == 850
        # a correction for a team the gateway never counted (events from elsewhere) creates its figure
        store.set_spend("batch", period=NOV, spend_pico=123)
        assert store.read("batch", period=NOV, day=DAY1).spend_pico == 123
        assert "batch" in store.teams(period=NOV)

    def test_each_threshold_alerts_once_per_team_and_period(self, store: SpendStore) -> None:
        assert store.first_alert("search", period=NOV, threshold=80) is True
        assert store.first_alert("search", period=NOV, threshold=80) is False
        assert store.first_alert("search", period=NOV, threshold=50) is True
        assert store.first_alert("search", period=DEC, threshold=80) is True
        assert store.first_alert("data-science", period=NOV, threshold=80) is True
        assert store.alerts("search", period=NOV) == (50, 80)
        assert store.alerts("search", period=DEC) == (80,)
        # alerts leave the counters alone, and counters the alerts
        store.add("search", period=NOV, day=DAY1, spend_pico=5, tokens=1)
        assert store.read("search", period=NOV, day=DAY1) == SpendTotals(5, 1, 1, 1)
        assert store.alerts("search", period=NOV) == (50, 80)

    def test_another_process_sees_the_same_counters_and_alerts(self, open_store: OpenStore) -> None:
        one, two = open_store(), open_store()
        try:
            one.add("search", period=NOV, day=DAY1, spend_pico=100, tokens=10)
            assert two.add("search", period=NOV, day=DAY1, spend_pico=1, tokens=1) == SpendTotals(101, 2, 11, 2)
            assert one.first_alert("search", period=NOV, threshold=100) is True
            assert two.first_alert("search", period=NOV, threshold=100) is False
            assert two.alerts("search", period=NOV) == (100,)
        finally:
            one.close()
            two.close()

    def test_concurrent_adds_from_many_processes_sum_exactly(self, open_store: OpenStore) -> None:
        # GIVEN one handle per thread, as separate processes would have WHEN they all add at once
        handles = [open_store() for _ in range(THREADS)]
        start = threading.Barrier(THREADS)

        def run(handle: SpendStore) -> list[SpendTotals]:
            start.wait()
            return [handle.add("search", period=NOV, day=DAY1, spend_pico=1_000_003, tokens=7)
                    for _ in range(ADDS_PER_THREAD)]

        try:
            with ThreadPoolExecutor(THREADS) as pool:
                returned = [t for totals in pool.map(run, handles) for t in totals]
        finally:
            for handle in handles:
                handle.close()
        # THEN nothing is lost, and each add saw a total of its own (atomic: no two saw the same new total)
        n = THREADS * ADDS_PER_THREAD
        assert fresh(open_store, lambda s: s.read("search", period=NOV, day=DAY1)) == SpendTotals(
            spend_pico=n * 1_000_003, period_requests=n, day_tokens=n * 7, day_requests=n)
        assert sorted(t.period_requests for t in returned) == list(range(1, n + 1))
        assert sorted(t.spend_pico for t in returned) == [i * 1_000_003 for i in range(1, n + 1)]

    def test_of_many_concurrent_first_alerts_exactly_one_wins(self, open_store: OpenStore) -> None:
        handles = [open_store() for _ in range(THREADS)]
        start = threading.Barrier(THREADS)

        def run(handle: SpendStore) -> list[bool]:
            start.wait()
            return [handle.first_alert("search", period=NOV, threshold=t) for t in (50, 80, 100)]

        try:
            with ThreadPoolExecutor(THREADS) as pool:
                results = list(pool.map(run, handles))
        finally:
            for handle in handles:
                handle.close()
        for i, threshold in enumerate((50, 80, 100)):
            assert sum(r[i] for r in results) == 1, threshold
        assert fresh(open_store, lambda s: s.alerts("search", period=NOV)) == (50, 80, 100)

    def test_an_unreachable_store_raises_the_protocols_error(self, broken_store: SpendStore) -> None:
        calls: list[Callable[[], Any]] = [
            lambda: broken_store.read("search", period=NOV, day=DAY1),
            lambda: broken_store.add("search", period=NOV, day=DAY1, spend_pico=1, tokens=1),
            lambda: broken_store.set_spend("search", period=NOV, spend_pico=1),
            lambda: broken_store.first_alert("search", period=NOV, threshold=50),
            lambda: broken_store.alerts("search", period=NOV),
        ]
        for call in calls:
            with pytest.raises(SpendStoreError):
                call()


def fresh(open_store: OpenStore, read: Callable[[SpendStore], Any]) -> Any:
    """``read`` through a handle opened afterwards (what a new process would see)."""
    store = open_store()
    try:
        return read(store)
    finally:
        store.close()
