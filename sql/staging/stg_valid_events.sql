-- staging: the day's valid rows (every row not in stg_invalid_ids), duplicates still included.
with events as (

    select * from stg_usage_events

),

final as (

    -- a left join on the (few) invalid rows: a plain hash join (not exists() became a costly delim join)
    select e.*
    from events as e
    left join stg_invalid_ids as i
        on i.source_file = e.source_file and i.source_row = e.source_row
    where i.source_row is null

)

select * from final
