-- mart: one row per valid, deduped event of the day, priced by the price in force at its event_time.
-- inputs: stg_usage_events, stg_duplicates (rows to drop), prices (the catalog's unit prices for the day's
-- lookups: one row per lookup and price period, unit price = price_usd / per, NULL when a dimension has no price).
with events as (

    select * from stg_valid_events

),

deduped as (

    select *
    from events as e
    where not exists (
        select 1
        from stg_duplicates as d
        where d.event_id = e.event_id and d.source_file = e.source_file and d.source_row = e.source_row
    )

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
        case when is_priced then coalesce(mm_money(input_tokens, unit_input_tokens), 0) end as input_cost,
        case when is_priced then coalesce(mm_money(output_tokens, unit_output_tokens), 0) end as output_cost,
        case when is_priced
            then coalesce(mm_money(cache_read_input_tokens, unit_cache_read_input_tokens), 0) end as cache_read_cost,
        case when is_priced
            then coalesce(mm_money(cache_write_input_tokens, unit_cache_write_input_tokens), 0) end as cache_write_cost,
        case when is_priced then coalesce(mm_money(image_count, unit_image_count), 0) end as image_cost
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
        -- money
        {{ price_version }} as price_version,
        input_cost,
        output_cost,
        cache_read_cost,
        cache_write_cost,
        image_cost,
        input_cost + output_cost + cache_read_cost + cache_write_cost + image_cost as total_cost,
        is_priced as priced
    from costed

)

select * from final
