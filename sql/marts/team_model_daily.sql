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
        -- money (priced events only; unpriced ones are counted apart): input_cost, …, total_cost, each summed,
        -- 0 when a group has no priced event
        {{ cost_sums_or_zero }},
        cast(count_if(not priced) as bigint) as unpriced_invocations,
        -- one catalog version per transform run of a UTC day (a day in another time zone may span two)
        max(price_version) as price_version
    from usage_rows
    group by usage_date, team_id, model_id

)

select * from final
