-- staging: the valid rows to drop as duplicates: every re-delivery of an event_id but the first one read.
-- From the (few) candidate rows, minus the invalid ones, exact event_ids compared.
with valid_candidates as (

    select c.event_id, c.source_file, c.source_row
    from stg_duplicate_candidates as c
    left join stg_invalid_ids as i
        on i.source_file = c.source_file and i.source_row = c.source_row
    where i.source_row is null

),

ranked as (

    select
        event_id,
        source_file,
        source_row,
        row_number() over (partition by event_id order by source_file, source_row) as copy_number
    from valid_candidates

),

final as (

    select event_id, source_file, source_row
    from ranked
    where copy_number > 1

)

select * from final
