-- staging: which of the day's rows break a schema rule (by file and row: narrow, so only the rule columns are
-- read). Rules are rendered from ingest.schema.FIELDS (transforms/rules.py); Great Expectations checks the same
-- rules over every row and the transform proves both agree.
with events as (

    select * from stg_usage_events

),

final as (

    select source_file, source_row
    from events
    where {{ invalid }}

)

select * from final
