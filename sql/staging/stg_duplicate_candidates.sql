-- staging: every row (valid or not) whose event_id's 64-bit hash occurs more than once in the day: a superset of
-- the re-deliveries among valid rows, found from event_id alone (narrow), before validation has finished.
-- Grouping hashes first keeps the big aggregate narrow; stg_duplicates compares the exact ids after.
-- content_hash (a 64-bit hash of every contract column) tells a plain re-delivery from a copy that differs.
with candidate_hashes as (

    select mm_hash64(event_id) as id_hash
    from stg_usage_events
    group by 1
    having count(*) > 1

),

final as (

    select
        event_id,
        status,
        mm_hash64(struct_pack({{ content_columns }})) as content_hash,
        source_file,
        source_row
    from stg_usage_events
    where mm_hash64(event_id) in (select id_hash from candidate_hashes)

)

select * from final
