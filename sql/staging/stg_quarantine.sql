-- staging: the day's invalid rows, each with every reason it was refused and the row as it was (JSON).
with invalid as (

    select * from stg_invalid

),

final as (

    select
        -- ids
        event_id,
        event_time,
        team_id,
        -- why
        {{ reason }} as reason,
        'transform' as stage,
        -- where from
        source_file,
        source_row + 1 as source_line,
        to_json(struct_pack({{ raw_columns }}))::varchar as raw
    from invalid

)

select * from final
