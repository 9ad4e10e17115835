-- priced_usage_daily: priced usage per UTC day (usage_date, the dt partition: billing periods are UTC months) ×
-- team × model, apart by provider, region, service tier and price version: what the FOCUS export bills, one
-- FOCUS row per dimension used. Priced rows only: unpriced usage has no cost to bill (unpriced_usage lists it).
with priced_rows as (
    select * from usage_local where priced
),

final as (
    select
        -- keys
        usage_date,
        team_id,
        cost_center,
        provider,
        region,
        service_tier,
        model_id,
        price_version,
        -- counts: cast(sum(input_tokens) as bigint) as input_tokens, …
        count(*) as invocations,
        {{ count_sums }},
        -- money: sum(input_cost) as input_cost, …, sum(total_cost) as total_cost
        {{ cost_sums }}
    from priced_rows
    group by usage_date, team_id, cost_center, provider, region, service_tier, model_id, price_version
)

select * from final
