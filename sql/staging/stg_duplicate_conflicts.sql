-- staging: the dropped copies of an event_id whose content differs from the kept copy's (stg_duplicates, kind
-- 'conflict'), as quarantine rows: the reason names the differing columns and the kept copy (file and row), raw
-- keeps the dropped copy as it was staged. Few rows; the transform runs this only on a day that has some.
-- inputs: stg_duplicates, stg_usage_events, input_files (source_file index -> the file's lake path).
with conflicts as (

    select * from stg_duplicates where kind = 'conflict'

),

wanted as (

    select source_file, source_row from conflicts
    union
    select kept_source_file, kept_source_row from conflicts

),

copies as (

    select e.*
    from stg_usage_events as e
    inner join wanted as w
        on w.source_file = e.source_file and w.source_row = e.source_row

),

final as (

    select
        -- ids
        d.event_id,
        d.event_time,
        d.team_id,
        -- why
        'conflicting copies of event_id ' || d.event_id || ' (they differ in ' || {{ differing }}
            || '): kept the copy in ' || f.path || ' row ' || (c.kept_source_row + 1) || ', dropped this one'
            as reason,
        'transform' as stage,
        -- where from
        d.source_file,
        d.source_row + 1 as source_line,
        to_json(struct_pack({{ raw_columns }}))::varchar as raw
    from conflicts as c
    inner join copies as d
        on d.source_file = c.source_file and d.source_row = c.source_row
    inner join copies as k
        on k.source_file = c.kept_source_file and k.source_row = c.kept_source_row
    inner join input_files as f
        on f.source_file = c.kept_source_file

)

select * from final
