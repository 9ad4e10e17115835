-- chargeback_of_record: the latest chargeback version of each billing period (DESIGN.md "Chargeback of record").
-- Billing periods are the CUR's UTC calendar months: the invoice, not the reporting calendar.
with versions as (

    select billing_period, max(version) as version
    from chargeback
    group by billing_period

),

final as (

    select
        -- keys
        c.billing_period,
        c.version,
        c.cost_center,
        c.team_id,
        -- money (USD; chargeback_cost in cents, the rows of a period add up to its in-scope invoice)
        c.metered_list_cost,
        c.price_adjustment,
        c.allocated_shared_cost,
        c.chargeback_cost,
        c.currency,
        -- how
        c.rules
    from chargeback as c
    inner join versions as v
        on v.billing_period = c.billing_period and v.version = c.version

)

select * from final
