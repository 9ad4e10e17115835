-- quarantine_summary: rejected events per day, stage and reason (the rows themselves stay in the quarantine table).
-- The day is the event's own day when it could be read, else the day it was quarantined.
with rejected as (
    select
        mm_local_date(coalesce(event_time, quarantined_at)) as local_date,
        stage,
        reason,
        team_id,
        quarantined_at
    from quarantine_usage_events
),

final as (
    select
        -- keys
        local_date,
        stage,
        reason,
        -- counts
        count(*) as rejected_rows,
        count(distinct team_id) as teams,
        -- time
        min(quarantined_at) as first_quarantined_at,
        max(quarantined_at) as last_quarantined_at
    from rejected
    group by local_date, stage, reason
)

select * from final
