-- staging: the day's rows that break a schema rule (few), materialised once: quarantine, rule counts, the
-- valid-row filter and dedupe all read this instead of re-checking every row. Rules are rendered from
-- common.contracts.value_rules (transforms/rules.py). One pass: picking out row ids first and re-reading the whole rows by
-- row number cost more (DuckDB decompresses every column chunk either way; measured at 10 M events).
with final as (

    select *
    from stg_usage_events
    where {{ invalid }}

)

select * from final
