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
        cast(sum(invocations) as bigint) as invocations,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_input_tokens) as bigint) as cache_read_input_tokens,
        cast(sum(cache_write_input_tokens) as bigint) as cache_write_input_tokens,
        cast(sum(image_count) as bigint) as image_count,
        cast(sum(unpriced_invocations) as bigint) as unpriced_invocations,
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
