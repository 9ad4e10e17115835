-- mart (intermediate): one row per valid, deduped event of the day, priced by the price in force at its event_time,
-- with its costs still in whole pico-dollars (BIGINT). marts/usage_cost turns them into DECIMAL(38,12) USD. The
-- transform runs this model and streams it into transforms/writer.py, which does usage_cost's conversion (and the
-- team_model_daily rollup) on the bit level, much faster; a test proves the files equal the two marts.
-- inputs: stg_valid_events, stg_duplicates (rows to drop), prices (the catalog's unit prices for the day's lookups:
-- one row per lookup and price period, in whole pico-dollars (1e-12 USD) per unit, NULL when a dimension has no
-- price). Costs are computed in BIGINT pico-dollars (exact). The per-unit column lists are the fragments of
-- sql/fragments.py (one entry per billable unit; the first unit's expansion is shown beside each).
with events as (

    select * from stg_valid_events

),

deduped as (

    -- a left join on the (few) rows to drop: a plain hash join, where not exists() became a costly delim join
    select e.*
    from events as e
    left join stg_duplicates as d
        on d.source_file = e.source_file and d.source_row = e.source_row
    where d.source_row is null

),

joined as (

    select
        e.*,
        p.model_id is not null as has_prices,
        -- p.unit_input_tokens, …
        {{ unit_prices }}
    from deduped as e
    left join prices as p
        on e.model_id = p.model_id
        and e.region is not distinct from p.region
        and e.service_tier = p.service_tier
        and e.image_width is not distinct from p.image_width
        and e.image_height is not distinct from p.image_height
        and e.image_quality is not distinct from p.image_quality
        and e.event_time >= p.valid_from
        and e.event_time < p.valid_to

),

priced as (

    select
        *,
        -- priced: a price exists for every dimension the event actually used:
        -- (input_tokens = 0 or unit_input_tokens is not null) and …
        has_prices
        and {{ used_units_priced }} as is_priced,
        -- some dimension the event used has a price: (input_tokens > 0 and unit_input_tokens is not null) or …
        {{ used_units_some_priced }} as has_priced_part
    from joined

),

costed as (

    select
        *,
        -- each dimension on its own: 0 when not used, count × unit price when priced, NULL when used without a
        -- price (the other dimensions keep their cost):
        -- case when input_tokens = 0 then 0 else input_tokens * unit_input_tokens end as input_pico, …
        {{ pico_costs }}
    from priced

),

final as (

    select
        -- ids
        event_id,
        event_time,
        mm_utc_date(event_time) as usage_date,
        -- who
        team_id,
        api_key_id,
        business_unit,
        -- what
        provider,
        region,
        model_id,
        operation,
        status,
        service_tier,
        -- counts
        {{ count_columns }},
        -- money, in whole pico-dollars (1e-12 USD); a dimension used without a price is NULL
        {{ price_version }} as price_version,
        {{ pico_columns }},
        -- the sum of what was priced (a lower bound when not priced); NULL when nothing the event used was priced
        -- (an unknown model, or only unpriced dimensions), so an unpriced event never reads $0:
        -- coalesce(input_pico, 0) + …
        case when is_priced or has_priced_part then {{ pico_total }} end as total_pico,
        is_priced as priced,
        -- the dimensions used without a price, in UNITS order; NULL when priced ('' for an event of a model with
        -- no price at all that used nothing): concat_ws(',', case when input_tokens > 0 and
        -- unit_input_tokens is null then 'input_tokens' end, …)
        case when not is_priced then {{ unpriced_dimension_list }} end as unpriced_dimensions,
        -- why the gateway refused the call (budget, rate_limit, …); NULL when it did not
        refusal_reason
    from costed

)

select * from final
