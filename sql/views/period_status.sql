-- period_status: each billing period's state (DESIGN.md "Close and restate"): open or closed, the version closed,
-- and its latest close or reopening with who, when, why and on which CUR snapshot. No team's money: everyone may
-- read it. Billing periods are the CUR's UTC calendar months.
with events as (

    select
        *,
        row_number() over (partition by billing_period order by seq desc) as newest
    from period_events

),

periods as (

    select billing_period from chargeback
    union
    select billing_period from period_events

),

final as (

    select
        -- keys
        p.billing_period,
        -- state
        case when e.action = 'close' then 'closed' else 'open' end as period_status,
        case when e.action = 'close' then e.version end as closed_version,
        -- the latest event (NULL: never closed)
        e.action as last_action,
        e.reason as last_reason,
        e."at" as last_event_at,
        e."by" as last_event_by,
        e.cur_snapshot,
        e.cur_final
    from periods as p
    left join events as e on e.billing_period = p.billing_period and e.newest = 1

)

select * from final
