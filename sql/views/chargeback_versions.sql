-- chargeback_versions: every stored chargeback version of every billing period, per cost centre × team, with its
-- inputs and whether it is the one of record (the closed version of a closed period, else its latest run). Kept per
-- team so that row-level security applies: a team lead sees their own lines of each version only.
with of_record as (

    -- the version of record of each period (the closed one, else the latest run): one definition, in
    -- chargeback_of_record
    select distinct billing_period, version from chargeback_of_record where line_type = 'charge'

),

final as (

    select
        -- keys
        c.billing_period,
        c.version,
        coalesce(c.purpose, 'chargeback') as purpose,
        c.restates_version,
        o.version is not null as of_record,
        c.cost_center,
        c.team_id,
        -- inputs
        c.created_at,
        c.cur_snapshot,
        c.cur_final,
        c.price_versions,
        -- money (cents; each version's rows add up to the invoice of its CUR snapshot)
        c.chargeback_cost,
        c.currency
    from chargeback as c
    left join of_record as o
        on o.billing_period = c.billing_period and o.version = c.version

)

select * from final
