-- mart: per usage_date × team × model rollup, summed from the day's written usage_cost rows (so both agree exactly).
-- input: usage_cost_day.
with events as (

    select * from usage_cost_day

),

final as (

    select
        -- keys
        usage_date,
        team_id,
        model_id,
        -- counts
        count(*) as invocations,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_input_tokens) as bigint) as cache_read_input_tokens,
        cast(sum(cache_write_input_tokens) as bigint) as cache_write_input_tokens,
        cast(sum(image_count) as bigint) as image_count,
        -- money (priced events only; unpriced ones are counted apart)
        coalesce(sum(input_cost), 0) as input_cost,
        coalesce(sum(output_cost), 0) as output_cost,
        coalesce(sum(cache_read_cost), 0) as cache_read_cost,
        coalesce(sum(cache_write_cost), 0) as cache_write_cost,
        coalesce(sum(image_cost), 0) as image_cost,
        coalesce(sum(total_cost), 0) as total_cost,
        count(*) filter (where not priced) as unpriced_invocations,
        {{ price_version }} as price_version
    from events
    group by usage_date, team_id, model_id

)

select * from final
order by team_id, model_id
