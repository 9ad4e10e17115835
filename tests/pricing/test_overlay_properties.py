"""Property test of the override rule: after a sheet is laid over a catalog, every instant has exactly the sheet's
price where a sheet row covers it and the catalog's price elsewhere, and intervals never overlap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pricing_catalog.catalog import Catalog, interval_at
from pricing_catalog.model import PriceRow
from pricing_catalog.sheet import SheetRow, apply_sheet

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "acme.chat-v1:0"


def _periods(draw: st.DrawFn, *, max_size: int) -> list[tuple[int, int | None]]:
    """Non-overlapping [start, end) day offsets, the last possibly open-ended."""
    cuts = sorted(draw(st.sets(st.integers(0, 60), min_size=1, max_size=max_size * 2)))
    periods = []
    for i in range(0, len(cuts) - 1, 2):
        periods.append((cuts[i], cuts[i + 1]))
    if draw(st.booleans()) or not periods:
        periods.append((cuts[-1] + 1, None))
    return periods


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[tuple[int, int | None]], list[tuple[int, int | None]]]:
    return _periods(draw, max_size=3), _periods(draw, max_size=3)


def _row(start: int, end: int | None, price: int, source: str) -> PriceRow:
    return PriceRow(model=KEY, dimension="input_tokens", price_usd=Decimal(price), per=1000,
                    effective_from=T0 + timedelta(days=start),
                    effective_to=None if end is None else T0 + timedelta(days=end), source=source)


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_sheet_prices_win_inside_their_periods_and_the_catalog_elsewhere(case) -> None:
    base_periods, sheet_periods = case
    base = Catalog(version="b", rows=[_row(s, e, 100 + i, "base") for i, (s, e) in enumerate(base_periods)])
    sheet = [SheetRow(line=i + 2, row=_row(s, e, 900 + i, "sheet")) for i, (s, e) in enumerate(sheet_periods)]
    merged = apply_sheet(base, sheet)  # Catalog() itself refuses overlaps
    intervals = merged.prices_for(model_id=KEY, region=None, service_tier="on_demand")
    for hour in range(0, 64 * 24, 7):
        instant = T0 + timedelta(hours=hour)
        in_sheet = _price_at([s.row for s in sheet], instant)
        in_base = _price_at(list(base.rows), instant)
        found = interval_at(intervals, dimension="input_tokens", instant=instant)
        if in_sheet is not None:
            assert found is not None and (found.source, found.price_usd) == ("sheet", in_sheet)
        elif in_base is not None:
            assert found is not None and (found.source, found.price_usd) == ("base", in_base)
        else:
            assert found is None


def _price_at(rows: list[PriceRow], instant: datetime) -> Decimal | None:
    return next((r.price_usd for r in rows
                 if r.effective_from <= instant and (r.effective_to is None or instant < r.effective_to)), None)
