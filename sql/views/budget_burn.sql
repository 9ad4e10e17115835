-- budget_burn: each team's spend in each fiscal month against its monthly budget, with a linear month-end forecast
-- (spend so far ÷ days elapsed × days in the month). "Today" is the latest local_date in the data; months already
-- over are complete, so their forecast is their spend.
with as_of as (
    select max(local_date) as as_of_date from usage_local
),

months as (
    select distinct fiscal_month_start from usage_local
),

budgets as (
    select team_id, cost_center, monthly_budget_usd from teams where monthly_budget_usd is not null
        and coalesce(is_current, true)
),

spend as (
    -- a team that moved cost centre within the month has a chargeback_monthly row per side: one budget, one sum
    select fiscal_month_start, team_id, sum(total_cost) as total_cost
    from chargeback_monthly
    group by fiscal_month_start, team_id
),

latest_use as (
    select
        fiscal_month_start,
        team_id,
        cost_center,
        row_number() over (partition by fiscal_month_start, team_id order by event_time desc, event_id desc) as newest
    from usage_local
),

month_cost_center as (
    -- the cost centre of the team's latest usage in the month (the dated organisation)
    select fiscal_month_start, team_id, cost_center from latest_use where newest = 1
),

team_months as (
    -- every budgeted team in every month (so zero spend shows), plus every team that spent
    select m.fiscal_month_start, b.team_id from months as m cross join budgets as b
    union
    select fiscal_month_start, team_id from spend
),

measured as (
    select
        tm.fiscal_month_start,
        mm_fiscal_month_end(tm.fiscal_month_start) as fiscal_month_end,
        tm.team_id,
        coalesce(mc.cost_center, b.cost_center) as cost_center,
        b.monthly_budget_usd,
        coalesce(s.total_cost, mm_money(0)) as spend_to_date,
        least(a.as_of_date, mm_fiscal_month_end(tm.fiscal_month_start)) as as_of_date
    from team_months as tm
    cross join as_of as a
    left join budgets as b on b.team_id = tm.team_id
    left join spend as s on s.fiscal_month_start = tm.fiscal_month_start and s.team_id = tm.team_id
    left join month_cost_center as mc on mc.fiscal_month_start = tm.fiscal_month_start and mc.team_id = tm.team_id
),

dated as (
    select
        *,
        mm_days_between(fiscal_month_start, as_of_date) + 1 as days_elapsed,
        mm_days_between(fiscal_month_start, fiscal_month_end) + 1 as days_in_month
    from measured
),

forecast as (
    select
        *,
        mm_money_div(spend_to_date, days_elapsed, days_in_month) as forecast_month_end
    from dated
),

final as (
    select
        -- keys
        fiscal_month_start,
        fiscal_month_end,
        team_id,
        cost_center,
        as_of_date,
        -- days
        days_elapsed,
        days_in_month,
        -- money
        mm_money(monthly_budget_usd) as monthly_budget_usd,
        spend_to_date,
        forecast_month_end,
        mm_money(monthly_budget_usd) - spend_to_date as budget_remaining,
        -- ratios and flags (NULL without a budget)
        mm_ratio(spend_to_date, monthly_budget_usd) as budget_used_ratio,
        forecast_month_end > monthly_budget_usd as forecast_over_budget
    from forecast
)

select * from final
