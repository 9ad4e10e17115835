-- staging: the day's valid rows (every row not in stg_invalid), duplicates still included.
with events as (

    select * from stg_usage_events

),

final as (

    select *
    from events as e
    where not exists (
        select 1
        from stg_invalid as i
        where i.source_file = e.source_file and i.source_row = e.source_row
    )

)

select * from final
