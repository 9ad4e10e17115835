-- team_model_daily_local: the team_model_daily rollup re-counted by day in the reporting time zone.
-- Costs sum priced rows only (0 when a day has none), like curated team_model_daily.
with usage_rows as (
    select * from usage_local
),

final as (
    select
        -- keys
        local_date,
        mm_fiscal_month_start(local_date) as fiscal_month_start,
        team_id,
        cost_center,
        model_id,
        -- counts
        count(*) as invocations,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_input_tokens) as bigint) as cache_read_input_tokens,
        cast(sum(cache_write_input_tokens) as bigint) as cache_write_input_tokens,
        cast(sum(image_count) as bigint) as image_count,
        cast(count_if(not priced) as bigint) as unpriced_invocations,
        -- money
        coalesce(sum(input_cost), mm_money(0)) as input_cost,
        coalesce(sum(output_cost), mm_money(0)) as output_cost,
        coalesce(sum(cache_read_cost), mm_money(0)) as cache_read_cost,
        coalesce(sum(cache_write_cost), mm_money(0)) as cache_write_cost,
        coalesce(sum(image_cost), mm_money(0)) as image_cost,
        coalesce(sum(total_cost), mm_money(0)) as total_cost,
        max(price_version) as price_version
    from usage_rows
    group by local_date, team_id, cost_center, model_id
)

select * from final
