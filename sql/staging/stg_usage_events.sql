-- staging: one row per raw event of the day, typed, optional fields defaulted.
-- input: raw_day (the day's raw files, plus source_file (file index) and source_row (row in the file)).
with source as (

    select * from raw_day

),

final as (

    select
        {{ event_columns }},
        -- lineage
        source_file,
        source_row
    from source

)

select * from final
