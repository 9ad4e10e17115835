-- chargeback_monthly: what each team (and its cost centre) is charged per fiscal month: the priced part of its
-- usage, a lower bound when unpriced_invocations > 0 (usage without a price is not in the costs).
with daily as (
    select * from team_model_daily_local
),

final as (
    select
        -- keys
        fiscal_month_start,
        mm_fiscal_month_end(fiscal_month_start) as fiscal_month_end,
        cost_center,
        team_id,
        -- counts: cast(sum(input_tokens) as bigint) as input_tokens, …
        cast(sum(invocations) as bigint) as invocations,
        {{ count_sums }},
        cast(sum(unpriced_invocations) as bigint) as unpriced_invocations,
        -- money: sum(input_cost) as input_cost, …, sum(total_cost) as total_cost
        {{ cost_sums }}
    from daily
    group by fiscal_month_start, cost_center, team_id
)

select * from final
