-- staging: the valid rows to drop as duplicates: every copy of an event_id but the one kept, and how it relates to
-- the kept copy. From the (few) candidate rows, minus the invalid ones, exact event_ids compared.
-- The kept copy: a real event before a crash placeholder (status {{ placeholder_status }}: the gateway's stand-in for
-- a call whose outcome it never learned), then the first copy read (by file, then row).
-- kind: 'duplicate' (same content as the kept copy: a re-delivery), 'superseded_placeholder' (a placeholder the
-- real event replaces), 'conflict' (different content: dropped, and quarantined by stg_duplicate_conflicts).
with valid_candidates as (

    select c.event_id, c.status, c.content_hash, c.source_file, c.source_row
    from stg_duplicate_candidates as c
    left join stg_invalid_ids as i
        on i.source_file = c.source_file and i.source_row = c.source_row
    where i.source_row is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by event_id
            order by status = {{ placeholder_status }}, source_file, source_row
        ) as copy_number
    from valid_candidates

),

kept as (

    select * from ranked where copy_number = 1

),

final as (

    select
        -- the dropped copy
        d.event_id,
        d.source_file,
        d.source_row,
        -- why
        case
            when d.content_hash = k.content_hash then 'duplicate'
            when d.status = {{ placeholder_status }} and k.status <> {{ placeholder_status }}
                then 'superseded_placeholder'
            else 'conflict'
        end as kind,
        -- the copy kept instead
        k.source_file as kept_source_file,
        k.source_row as kept_source_row
    from ranked as d
    inner join kept as k on k.event_id = d.event_id
    where d.copy_number > 1

)

select * from final
