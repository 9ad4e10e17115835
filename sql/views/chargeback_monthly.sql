-- chargeback_monthly: what each team (and its cost centre) is charged per fiscal month.
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
        -- counts
        sum(invocations) as invocations,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cache_read_input_tokens) as cache_read_input_tokens,
        sum(cache_write_input_tokens) as cache_write_input_tokens,
        sum(image_count) as image_count,
        sum(unpriced_invocations) as unpriced_invocations,
        -- money
        sum(input_cost) as input_cost,
        sum(output_cost) as output_cost,
        sum(cache_read_cost) as cache_read_cost,
        sum(cache_write_cost) as cache_write_cost,
        sum(image_cost) as image_cost,
        sum(total_cost) as total_cost
    from daily
    group by fiscal_month_start, cost_center, team_id
)

select * from final
