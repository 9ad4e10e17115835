-- staging: one row per raw event of the day, typed, optional fields defaulted, each row marked valid or not.
-- input: raw_day (the day's raw files, plus source_file and source_row); rules are rendered from the schema.
with source as (

    select * from raw_day

),

defaulted as (

    select
        {{ event_columns }},
        -- lineage
        source_file,
        source_row
    from source

),

final as (

    select
        *,
        {{ valid }} as is_valid
    from defaulted

)

select * from final
