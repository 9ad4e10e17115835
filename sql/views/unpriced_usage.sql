-- unpriced_usage: traffic some price was missing for (priced false; kept, and only its priced dimensions
-- charged): what the pricing catalog is missing, by the dimensions that had no price. The counts are the usage
-- without a price (a partly priced event's priced dimensions are in priced_usage_daily, not here).
with unpriced as (
    select * from usage_local where not priced
),

final as (
    select
        -- keys
        local_date,
        team_id,
        provider,
        region,
        model_id,
        operation,
        service_tier,
        unpriced_dimensions,
        -- counts of the usage without a price: cast(sum(case when input_cost is null then input_tokens else 0
        -- end) as bigint) as input_tokens, …
        count(*) as invocations,
        {{ unpriced_count_sums }}
    from unpriced
    group by local_date, team_id, provider, region, model_id, operation, service_tier, unpriced_dimensions
)

select * from final
