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
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_input_tokens) as bigint) as cache_read_input_tokens,
        cast(sum(cache_write_input_tokens) as bigint) as cache_write_input_tokens,
        cast(sum(image_count) as bigint) as image_count
    from unpriced
    group by local_date, team_id, provider, region, model_id, operation, service_tier
)

select * from final
