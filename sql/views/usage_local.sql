-- usage_local: every curated usage row with its day and fiscal month in the reporting time zone, and its team's
-- cost centre in force on its UTC day (the dated organisation). usage_date is the UTC day (the dt partition);
-- local_date is the day people report on.
with usage_rows as (
    select * from usage_cost
),

team_ref as (
    -- the dated organisation: one row per assignment, [effective_from, effective_to) in UTC days
    select team_id, cost_center, effective_from, effective_to from teams
),

final as (
    select
        -- ids
        u.event_id,
        u.team_id,
        coalesce(t.cost_center, 'unassigned') as cost_center,
        u.business_unit,
        u.provider,
        u.region,
        u.model_id,
        u.operation,
        u.status,
        u.refusal_reason,
        u.service_tier,
        -- time
        u.event_time,
        u.usage_date,
        mm_local_date(u.event_time) as local_date,
        mm_fiscal_month_start(mm_local_date(u.event_time)) as fiscal_month_start,
        -- tokens and images: input_tokens, … (only usage_cost has them, so they need no alias)
        {{ count_columns }},
        -- money (a dimension used without a price is NULL and listed in unpriced_dimensions; total_cost is the
        -- priced part, NULL when nothing was priced): input_cost, …, total_cost
        u.priced,
        u.unpriced_dimensions,
        u.price_version,
        {{ cost_columns }}
    from usage_rows as u
    left join team_ref as t
        on t.team_id = u.team_id
        and (t.effective_from is null or u.usage_date >= t.effective_from)
        and (t.effective_to is null or u.usage_date < t.effective_to)
)

select * from final
