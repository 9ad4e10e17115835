-- staging: the 64-bit hashes of event_id that occur more than once in the day (valid rows or not), from one narrow
-- pass over event_id alone. Every copy of a re-delivered event has one of them; stg_duplicates compares the exact
-- ids of those few rows after.
with hashed as (

    select mm_hash64(event_id) as id_hash
    from stg_usage_events

),

final as (

    select id_hash
    from hashed
    group by id_hash
    having count(*) > 1

)

select * from final
