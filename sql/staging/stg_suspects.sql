-- staging: the few rows the later steps need whole, fetched in one pass: every row whose event_id hash occurs more
-- than once (stg_duplicate_hashes: dedupe compares them), every row breaking a rule that its file's footer
-- statistics did not prove (the unproven condition, from transforms/proofs.py: the row-by-row check), and the
-- first sample_rows rows of each file (the sample Great Expectations validates beside the broken rows).
-- The transform reads stg_invalid, stg_duplicate_candidates and stg_duplicate_conflicts from this instead of
-- stg_usage_events: the same rows come out, since no row breaks a proven rule and every copy of a repeated hash is
-- here.
with events as (

    select * from stg_usage_events

),

hashes as (

    select id_hash from stg_duplicate_hashes

),

final as (

    select *
    from events
    where
        mm_hash64(event_id) in (select id_hash from hashes)
        or source_row < {{ sample_rows }}
        or {{ unproven }}

)

select * from final
