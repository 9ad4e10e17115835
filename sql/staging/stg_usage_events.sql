-- staging: one row per raw event of the day, typed, optional fields defaulted.
-- input: raw_day (the day's raw files, plus cast_problems, source_file (file index) and source_row (row in the file)).
with source as (

    select * from raw_day

),

final as (

    select
        {{ event_columns }},
        -- values the file stored that do not cast exactly to the contract type (NULL when none): such a row is
        -- invalid (rule values_cast_exactly), never read as NULL or the default
        cast_problems,
        -- lineage
        source_file,
        source_row
    from source

)

select * from final
