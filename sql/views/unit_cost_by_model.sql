-- unit_cost_by_model: what a model effectively costs per 1 M tokens and per image, per fiscal month.
-- Fully priced rows only: usage without a price (a partly priced event's too) has no cost and would make a model
-- look cheaper than it is.
with priced_rows as (
    select * from usage_local where priced
),

totals as (
    select
        fiscal_month_start,
        model_id,
        count(*) as invocations,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_input_tokens) as bigint) as cache_read_input_tokens,
        cast(sum(cache_write_input_tokens) as bigint) as cache_write_input_tokens,
        -- every token count: input_tokens + output_tokens + … (images are not tokens)
        cast(sum({{ token_count_total }}) as bigint) as total_tokens,
        cast(sum(image_count) as bigint) as image_count,
        sum(input_cost) as input_cost,
        sum(output_cost) as output_cost,
        -- the cost of every token: input_cost + output_cost + …
        sum({{ token_cost_total }}) as token_cost,
        sum(image_cost) as image_cost,
        sum(total_cost) as total_cost
    from priced_rows
    group by fiscal_month_start, model_id
),

final as (
    select
        -- keys
        fiscal_month_start,
        model_id,
        -- counts
        invocations,
        input_tokens,
        output_tokens,
        cache_read_input_tokens,
        cache_write_input_tokens,
        total_tokens,
        image_count,
        -- money
        input_cost,
        output_cost,
        token_cost,
        image_cost,
        total_cost,
        -- unit costs (NULL when nothing was counted)
        mm_money_div(input_cost, input_tokens, 1000000) as usd_per_1m_input_tokens,
        mm_money_div(output_cost, output_tokens, 1000000) as usd_per_1m_output_tokens,
        mm_money_div(token_cost, total_tokens, 1000000) as usd_per_1m_tokens,
        mm_money_div(image_cost, image_count, 1) as usd_per_image
    from totals
)

select * from final
