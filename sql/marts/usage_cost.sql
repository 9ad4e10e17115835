-- mart: one row per valid, deduped event of the day, priced by the price in force at its event_time; money as
-- DECIMAL(38,12) USD, turned from the exact BIGINT pico-dollars of usage_cost_pico once (mm_money).
-- The transform writes the same table with transforms/writer.py, which does mm_money's conversion on the bit level
-- (a test proves both give identical rows).
with costed as (

    select * from usage_cost_pico

),

final as (

    select
        event_id,
        event_time,
        usage_date,
        team_id,
        api_key_id,
        business_unit,
        provider,
        region,
        model_id,
        operation,
        status,
        service_tier,
        input_tokens,
        output_tokens,
        cache_read_input_tokens,
        cache_write_input_tokens,
        image_count,
        price_version,
        mm_money(input_pico) as input_cost,
        mm_money(output_pico) as output_cost,
        mm_money(cache_read_pico) as cache_read_cost,
        mm_money(cache_write_pico) as cache_write_cost,
        mm_money(image_pico) as image_cost,
        mm_money(total_pico) as total_cost,
        priced
    from costed

)

select * from final
