-- mart: per usage_date × team × model rollup of usage rows: the one definition of the rollup. As written here it
-- is curated team_model_daily, summed from the day's written usage_cost rows (so both agree exactly); the transform
-- writes it with transforms/writer.py from the same batches it writes usage_cost from (a test proves both equal).
-- The view team_model_daily_local is this model read from usage_local and grouped by the reporting day (local_date,
-- fiscal_month_start), team (team_id, cost_center) and model instead (sql/render.py: a Regrouped model).
-- input: usage_cost_day.
with usage_rows as (

    select * from usage_cost_day

),

final as (

    select
        -- keys
        usage_date,
        team_id,
        model_id,
        -- counts: cast(sum(input_tokens) as bigint) as input_tokens, …
        count(*) as invocations,
        {{ count_sums }},
        -- money: the priced part (a lower bound when unpriced_invocations > 0): input_cost, …, total_cost, each
        -- summed over the rows' non-NULL costs (a dimension used without a price is NULL in usage_cost, the
        -- event's other dimensions keep their cost), 0 when a group has none
        {{ cost_sums_or_zero }},
        -- the gap: events with priced = false (some dimension they used had no price)
        cast(count_if(not priced) as bigint) as unpriced_invocations,
        -- one catalog version per transform run of a UTC day (a day in another time zone may span two)
        max(price_version) as price_version,
        -- the dimensions some event used without a price, in UNITS order; NULL when every event was priced:
        -- concat_ws(',', case when count_if(input_tokens > 0 and input_cost is null) > 0 then 'input_tokens' end, …)
        case when count_if(not priced) > 0 then {{ unpriced_dimension_union }} end as unpriced_dimensions
    from usage_rows
    group by usage_date, team_id, model_id

)

select * from final
