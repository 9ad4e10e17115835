-- unpriced_usage: traffic that no price applied to (kept, not charged): what the pricing catalog is missing.
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
        -- counts: cast(sum(input_tokens) as bigint) as input_tokens, …
        count(*) as invocations,
        {{ count_sums }}
    from unpriced
    group by local_date, team_id, provider, region, model_id, operation, service_tier
)

select * from final
