-- staging: the valid rows to drop as duplicates: every re-delivery of an event_id but the first one read.
-- Grouping 64-bit hashes first keeps the big aggregate narrow; the exact event_id comparison follows.
with candidate_hashes as (

    select mm_hash64(event_id) as id_hash
    from stg_valid_events
    group by 1
    having count(*) > 1

),

candidate_rows as (

    select event_id, source_file, source_row
    from stg_valid_events
    where mm_hash64(event_id) in (select id_hash from candidate_hashes)

),

ranked as (

    select
        event_id,
        source_file,
        source_row,
        row_number() over (partition by event_id order by source_file, source_row) as copy_number
    from candidate_rows

),

final as (

    select event_id, source_file, source_row
    from ranked
    where copy_number > 1

)

select * from final
