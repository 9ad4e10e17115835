-- staging: the day's rows that break a schema rule (few), whole, materialised once for the quarantine and the
-- per-rule counts. input: stg_invalid_events (stg_usage_events over only the stg_invalid_ids rows of the raw
-- files, read by row number, so picking them out does not decode every column of every row).
with final as (

    select *
    from stg_invalid_events

)

select * from final
