-- reconciliation_summary: the bill beside the metered usage, per billing period, category and model.
-- Company-wide (no team's line): team_id is NULL, so under row-level security only the dashboard's owners see it.
with reconciled as (

    select * from reconciliation

),

final as (

    select
        -- keys
        billing_period,
        category,
        coalesce(model_id, dimension, line_item_type, usage_type) as item,
        cast(null as varchar) as team_id,
        -- quantities (tokens, images or hours)
        sum(billed_quantity) as billed_quantity,
        sum(metered_quantity) as metered_quantity,
        -- money
        sum(billed_cost) as billed_cost,
        sum(metered_list_cost) as metered_list_cost,
        max(currency) as currency
    from reconciled
    group by billing_period, category, coalesce(model_id, dimension, line_item_type, usage_type)

)

select * from final
