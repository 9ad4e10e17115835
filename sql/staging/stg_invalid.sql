-- staging: the day's rows that break a schema rule (few), kept apart so quarantine and rule counts read only them.
with final as (

    select * from stg_usage_events where not is_valid

)

select * from final
