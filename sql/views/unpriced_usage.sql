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
        -- counts
        count(*) as invocations,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cache_read_input_tokens) as cache_read_input_tokens,
        sum(cache_write_input_tokens) as cache_write_input_tokens,
        sum(image_count) as image_count
    from unpriced
    group by local_date, team_id, provider, region, model_id, operation, service_tier
)

select * from final
