-- staging: the distinct price lookups of the day's valid events (few), to ask the pricing catalog once each.
with valid as (

    select * from stg_valid_events

),

final as (

    select distinct
        model_id,
        region,
        service_tier,
        image_width,
        image_height,
        image_quality
    from valid

)

select * from final
