-- daily_trend: spend and traffic per day in the reporting time zone, with the fiscal month-to-date spend.
with daily as (
    select
        local_date,
        fiscal_month_start,
        cast(sum(invocations) as bigint) as invocations,
        -- every token count: input_tokens + output_tokens + … (images are not tokens)
        cast(sum({{ token_count_total }}) as bigint) as total_tokens,
        cast(sum(image_count) as bigint) as image_count,
        cast(sum(unpriced_invocations) as bigint) as unpriced_invocations,
        sum(total_cost) as total_cost
    from team_model_daily_local
    group by local_date, fiscal_month_start
),

final as (
    select
        -- keys
        local_date,
        fiscal_month_start,
        -- counts
        invocations,
        total_tokens,
        image_count,
        unpriced_invocations,
        -- money
        total_cost,
        sum(total_cost) over (
            partition by fiscal_month_start order by local_date rows between unbounded preceding and current row
        ) as month_to_date_cost
    from daily
)

select * from final
