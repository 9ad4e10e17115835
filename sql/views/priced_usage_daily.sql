-- priced_usage_daily: priced usage per UTC day (usage_date, the dt partition: billing periods are UTC months) ×
-- team × model, apart by provider, region, service tier and price version: what the FOCUS export bills, one
-- FOCUS row per dimension used. Priced usage only: every event with a priced part (a partly priced event's priced
-- dimensions too); usage without a price has no cost to bill (unpriced_usage lists it), so the counts are of the
-- priced usage, and each cost over its count is the unit price.
with priced_rows as (
    select * from usage_local where total_cost is not null
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
        -- counts of the priced usage: cast(sum(case when input_cost is null then 0 else input_tokens end) as
        -- bigint) as input_tokens, … (invocations: the events with a priced part)
        count(*) as invocations,
        {{ priced_count_sums }},
        -- money: sum(input_cost) as input_cost, …, sum(total_cost) as total_cost
        {{ cost_sums }}
    from priced_rows
    group by usage_date, team_id, cost_center, provider, region, service_tier, model_id, price_version
)

select * from final
