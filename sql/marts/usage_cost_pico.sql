-- mart (intermediate): one row per valid, deduped event of the day, priced by the price in force at its event_time,
-- with its costs still in whole pico-dollars (BIGINT). marts/usage_cost turns them into DECIMAL(38,12) USD; the
-- transform's Parquet writer (transforms/writer.py) does the same conversion on the bit level, much faster.
-- inputs: stg_valid_events, stg_duplicates (rows to drop), prices (the catalog's unit prices for the day's lookups:
-- one row per lookup and price period, in whole pico-dollars (1e-12 USD) per unit, NULL when a dimension has no
-- price). Costs are computed in BIGINT pico-dollars (exact).
with events as (

    select * from stg_valid_events

),

deduped as (

    -- a left join on the (few) rows to drop: a plain hash join, where not exists() became a costly delim join
    select e.*
    from events as e
    left join stg_duplicates as d
        on d.source_file = e.source_file and d.source_row = e.source_row
    where d.source_row is null

),

joined as (

    select
        e.*,
        p.model_id is not null as has_prices,
        p.unit_input_tokens,
        p.unit_output_tokens,
        p.unit_cache_read_input_tokens,
        p.unit_cache_write_input_tokens,
        p.unit_image_count
    from deduped as e
    left join prices as p
        on e.model_id = p.model_id
        and e.region is not distinct from p.region
        and e.service_tier = p.service_tier
        and e.image_width is not distinct from p.image_width
        and e.image_height is not distinct from p.image_height
        and e.image_quality is not distinct from p.image_quality
        and e.event_time >= p.valid_from
        and e.event_time < p.valid_to

),

priced as (

    select
        *,
        -- priced: a price exists for every dimension the event actually used
        has_prices
        and (input_tokens = 0 or unit_input_tokens is not null)
        and (output_tokens = 0 or unit_output_tokens is not null)
        and (cache_read_input_tokens = 0 or unit_cache_read_input_tokens is not null)
        and (cache_write_input_tokens = 0 or unit_cache_write_input_tokens is not null)
        and (image_count = 0 or unit_image_count is not null) as is_priced
    from joined

),

costed as (

    select
        *,
        case when is_priced then coalesce(input_tokens * unit_input_tokens, 0) end as input_pico,
        case when is_priced then coalesce(output_tokens * unit_output_tokens, 0) end as output_pico,
        case when is_priced
            then coalesce(cache_read_input_tokens * unit_cache_read_input_tokens, 0) end as cache_read_pico,
        case when is_priced
            then coalesce(cache_write_input_tokens * unit_cache_write_input_tokens, 0) end as cache_write_pico,
        case when is_priced then coalesce(image_count * unit_image_count, 0) end as image_pico
    from priced

),

final as (

    select
        -- ids
        event_id,
        event_time,
        mm_utc_date(event_time) as usage_date,
        -- who
        team_id,
        api_key_id,
        business_unit,
        -- what
        provider,
        region,
        model_id,
        operation,
        status,
        service_tier,
        -- counts
        input_tokens,
        output_tokens,
        cache_read_input_tokens,
        cache_write_input_tokens,
        image_count,
        -- money, in whole pico-dollars (1e-12 USD); NULL when unpriced
        {{ price_version }} as price_version,
        input_pico,
        output_pico,
        cache_read_pico,
        cache_write_pico,
        image_pico,
        input_pico + output_pico + cache_read_pico + cache_write_pico + image_pico as total_pico,
        is_priced as priced
    from costed

)

select * from final
