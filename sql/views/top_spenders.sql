-- top_spenders: teams ranked by spend within each fiscal month, with their share of the month's spend.
with monthly as (
    select fiscal_month_start, team_id, cost_center, total_cost from chargeback_monthly
),

final as (
    select
        -- keys
        fiscal_month_start,
        team_id,
        cost_center,
        -- money
        total_cost,
        sum(total_cost) over (partition by fiscal_month_start) as month_total_cost,
        -- rank and share (a plain ratio, not money)
        rank() over (partition by fiscal_month_start order by total_cost desc) as spend_rank,
        mm_ratio(total_cost, sum(total_cost) over (partition by fiscal_month_start)) as share_of_month
    from monthly
)

select * from final
