-- chargeback_of_record: each billing period's chargeback of record (DESIGN.md "Chargeback of record", "Close and
-- restate"): the closed version of a closed period, else its latest chargeback run; then the adjustment lines
-- posted into the period (restatements of earlier closed periods, labelled with the period they correct).
-- Billing periods are the CUR's UTC calendar months: the invoice, not the reporting calendar.
with events as (

    select
        billing_period,
        action,
        version,
        row_number() over (partition by billing_period order by seq desc) as newest
    from period_events

),

closes as (

    select billing_period, version from events where newest = 1 and action = 'close'

),

runs as (

    select billing_period, max(version) as version
    from chargeback
    where coalesce(purpose, 'chargeback') = 'chargeback'
    group by billing_period

),

of_record as (

    select
        r.billing_period,
        coalesce(c.version, r.version) as version,
        case when c.version is null then 'open' else 'closed' end as period_status
    from runs as r
    left join closes as c on c.billing_period = r.billing_period

),

own_lines as (

    select
        c.billing_period,
        c.version,
        o.period_status,
        'charge' as line_type,
        cast(null as varchar) as corrects_period,
        c.cost_center,
        c.team_id,
        c.metered_list_cost,
        c.price_adjustment,
        c.allocated_shared_cost,
        c.chargeback_cost,
        c.currency,
        c.rules
    from chargeback as c
    inner join of_record as o
        on o.billing_period = c.billing_period and o.version = c.version

),

adjustment_lines as (

    select
        a.billing_period,
        cast(null as integer) as version,
        coalesce(o.period_status, 'open') as period_status,
        'adjustment' as line_type,
        a.corrects_period,
        a.cost_center,
        a.team_id,
        a.metered_list_cost,
        a.price_adjustment,
        a.allocated_shared_cost,
        a.chargeback_cost,
        a.currency,
        a.restatement as rules
    from chargeback_adjustments as a
    left join of_record as o on o.billing_period = a.billing_period

),

final as (

    -- own lines, then adjustment lines: billing_period, version, period_status, line_type, corrects_period,
    -- cost_center, team_id, the money (USD; chargeback_cost in cents: a period's own lines add up to its in-scope
    -- invoice, its adjustment lines are the deltas of the restated periods), currency, and how (the allocation
    -- rules; for an adjustment line, its restatement id)
    select * from own_lines
    union all
    select * from adjustment_lines

)

select * from final
