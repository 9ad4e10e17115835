-- fastest_growers: each team's spend over the last 7 days with data against the 7 days before, ranked by growth.
-- "Today" is the latest local_date in the data, so the view answers the same way whenever it is read.
with as_of as (
    select max(local_date) as as_of_date from usage_local
),

windows as (
    select
        d.team_id,
        a.as_of_date,
        sum(case when d.local_date > mm_add_days(a.as_of_date, -7) then d.total_cost end) as last_7d_cost,
        sum(case when d.local_date <= mm_add_days(a.as_of_date, -7) then d.total_cost end) as prior_7d_cost
    from team_model_daily_local as d
    cross join as_of as a
    where d.local_date > mm_add_days(a.as_of_date, -14)
    group by d.team_id, a.as_of_date
),

final as (
    select
        -- keys
        team_id,
        as_of_date,
        -- money
        coalesce(last_7d_cost, mm_money(0)) as last_7d_cost,
        coalesce(prior_7d_cost, mm_money(0)) as prior_7d_cost,
        coalesce(last_7d_cost, mm_money(0)) - coalesce(prior_7d_cost, mm_money(0)) as growth_cost,
        -- growth as a plain ratio (NULL when there was no spend before)
        mm_ratio(coalesce(last_7d_cost, mm_money(0)) - prior_7d_cost, prior_7d_cost) as growth_ratio,
        rank() over (
            order by coalesce(last_7d_cost, mm_money(0)) - coalesce(prior_7d_cost, mm_money(0)) desc
        ) as growth_rank
    from windows
)

select * from final
