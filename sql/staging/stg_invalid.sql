-- staging: the day's rows that break a schema rule (few), materialised once: quarantine, rule counts and the
-- valid-row filter all read this instead of re-checking every row. Rules are rendered from ingest.schema.FIELDS.
with final as (

    select *
    from stg_usage_events
    where {{ invalid }}

)

select * from final
