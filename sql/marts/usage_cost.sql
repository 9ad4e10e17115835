-- mart: one row per valid, deduped event of the day, priced by the price in force at its event_time; money as
-- DECIMAL(38,12) USD, turned from the exact BIGINT pico-dollars of usage_cost_pico once (mm_pico_to_money). A
-- dimension used without a price has a NULL cost and is listed in unpriced_dimensions (priced false); the priced
-- dimensions keep their cost, and total_cost is their sum (NULL when nothing the event used was priced).
-- The definition of curated usage_cost. The transform writes the same table with transforms/writer.py, which does
-- mm_pico_to_money's conversion on the bit level (a test proves both give identical rows).
with costed as (

    select * from usage_cost_pico

),

final as (

    select
        -- ids
        event_id,
        event_time,
        usage_date,
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
        {{ count_columns }},
        -- money: mm_pico_to_money(input_pico) as input_cost, …, mm_pico_to_money(total_pico) as total_cost
        price_version,
        {{ costs_from_pico }},
        priced,
        unpriced_dimensions,
        refusal_reason
    from costed

)

select * from final
