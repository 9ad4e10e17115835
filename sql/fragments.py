"""SQL fragments that depend on the billable units, generated from ``common.contracts.UNITS``.

A model writes ``{{ count_sums }}`` where it needs the sum of every count column, and :func:`sql.models.render`
fills it in before sqlglot parses the model: adding a billable unit to the contract adds its column to every such
list, with no SQL edit. Each fragment is plain SQL in both source dialects (and may call the ``mm_*`` helpers); the
expansion for the first unit is shown beside each.
"""

from __future__ import annotations

from common.contracts import COST_COLUMNS, COST_OF, COUNT_FIELDS, UNIT_OF_COUNT, UNITS

_TOKEN_UNITS = tuple(u for u in UNITS if u.is_tokens)


def pico_column(cost_column: str) -> str:
    """The whole-pico-dollar column of a cost column (``input_cost`` → ``input_pico``; ``total_cost`` →
    ``total_pico``): the unit's :attr:`~common.contracts.BillableUnit.pico_column`, and the total's."""
    unit = next((u for u in UNITS if u.cost_column == cost_column), None)
    return unit.pico_column if unit else cost_column.removesuffix("_cost") + "_pico"


def unit_price_column(count_field: str) -> str:
    """The price table's unit price of a count field (``input_tokens`` → ``unit_input_tokens``, pico-dollars)."""
    return UNIT_OF_COUNT[count_field].unit_price_column


def _list(items: list[str]) -> str:
    return ",\n        ".join(items)


def _fragments() -> dict[str, str]:
    per_unit = [(u.count_field, u.cost_column) for u in UNITS]
    return {
        # input_tokens, output_tokens, …
        "count_columns": _list(list(COUNT_FIELDS)),
        # input_cost, …, total_cost
        "cost_columns": _list(list(COST_COLUMNS)),
        # cast(sum(input_tokens) as bigint) as input_tokens, …  (BIGINT as in Athena: DuckDB would give HUGEINT)
        "count_sums": _list([f"cast(sum({c}) as bigint) as {c}" for c in COUNT_FIELDS]),
        # sum(input_cost) as input_cost, …, sum(total_cost) as total_cost (NULL costs skipped: the priced part)
        "cost_sums": _list([f"sum({c}) as {c}" for c in COST_COLUMNS]),
        # coalesce(sum(input_cost), mm_money(0)) as input_cost, …: the priced part (sum skips the NULL costs of usage
        # without a price), 0 when a group has none
        "cost_sums_or_zero": _list([f"coalesce(sum({c}), mm_money(0)) as {c}" for c in COST_COLUMNS]),
        # input_tokens + output_tokens + …: every token count of a row (images are not tokens)
        "token_count_total": " + ".join(u.count_field for u in _TOKEN_UNITS),
        # input_cost + output_cost + …: the cost of a row's tokens
        "token_cost_total": " + ".join(u.cost_column for u in _TOKEN_UNITS),
        # p.unit_input_tokens, …: the price table's unit prices (pico-dollars per unit, NULL when no price)
        "unit_prices": _list([f"p.{unit_price_column(c)}" for c in COUNT_FIELDS]),
        # (input_tokens = 0 or unit_input_tokens is not null) and …: every unit the row used has a price
        "used_units_priced": "\n        and ".join(f"({c} = 0 or {unit_price_column(c)} is not null)"
                                                  for c in COUNT_FIELDS),
        # (input_tokens > 0 and unit_input_tokens is not null) or …: some unit the row used has a price
        "used_units_some_priced": "\n        or ".join(f"({c} > 0 and {unit_price_column(c)} is not null)"
                                                     for c in COUNT_FIELDS),
        # case when input_tokens = 0 then 0 else input_tokens * unit_input_tokens end as input_pico, …: 0 when the
        # unit is not used, NULL when it is used without a price (count × NULL), whatever the other units' prices
        "pico_costs": _list([f"case when {count} = 0 then 0 else {count} * {unit_price_column(count)} end "
                             f"as {pico_column(cost)}" for count, cost in per_unit]),
        # input_pico, …: the units' costs in whole pico-dollars (total_pico apart)
        "pico_columns": _list([pico_column(c) for c in COST_OF]),
        # coalesce(input_pico, 0) + coalesce(output_pico, 0) + …: the sum of the priced units
        "pico_total": " + ".join(f"coalesce({pico_column(c)}, 0)" for c in COST_OF),
        # concat_ws(',', case when input_tokens > 0 and unit_input_tokens is null then 'input_tokens' end, …): the
        # catalog dimensions the row used without a price, in UNITS order ('' when none)
        "unpriced_dimension_list": "concat_ws(',', " + ", ".join(
            f"case when {u.count_field} > 0 and {u.unit_price_column} is null then '{u.dimension}' end"
            for u in UNITS) + ")",
        # concat_ws(',', case when count_if(input_tokens > 0 and input_cost is null) > 0 then 'input_tokens' end,
        # …): over usage rows, the dimensions some row used without a price, in UNITS order ('' when none)
        "unpriced_dimension_union": "concat_ws(',', " + ", ".join(
            f"case when count_if({u.count_field} > 0 and {u.cost_column} is null) > 0 then '{u.dimension}' end"
            for u in UNITS) + ")",
        # cast(sum(case when input_cost is null then 0 else input_tokens end) as bigint) as input_tokens, …: the
        # usage that was priced (a unit used without a price has a NULL cost)
        "priced_count_sums": _list([f"cast(sum(case when {cost} is null then 0 else {count} end) as bigint) "
                                    f"as {count}" for count, cost in per_unit]),
        # cast(sum(case when input_cost is null then input_tokens else 0 end) as bigint) as input_tokens, …: the
        # usage that had no price
        "unpriced_count_sums": _list([f"cast(sum(case when {cost} is null then {count} else 0 end) as bigint) "
                                      f"as {count}" for count, cost in per_unit]),
        # mm_pico_to_money(input_pico) as input_cost, …, mm_pico_to_money(total_pico) as total_cost
        "costs_from_pico": _list([f"mm_pico_to_money({pico_column(c)}) as {c}" for c in COST_COLUMNS]),
    }


#: Fragment name → SQL, filled into every model's ``{{ name }}`` (a run parameter of the same name wins).
FRAGMENTS: dict[str, str] = _fragments()
