-- DuckDB helpers the models call instead of engine-specific syntax; sql/render.py maps each to Athena.
-- One helper per difference, named mm_*; keep them tiny.

-- UTC calendar date of an instant (the session runs in UTC; Athena: date(ts at time zone 'UTC'))
create or replace macro mm_utc_date(ts) as cast(ts as date);

-- 64-bit hash of a key, for cheap pre-grouping before an exact comparison (Athena: xxhash64)
create or replace macro mm_hash64(x) as hash(x);

-- price a count exactly: count × unit price (DECIMAL(18,12)) as DECIMAL(38,12) money
create or replace macro mm_money(n, unit_price) as cast(cast(n as decimal(18, 0)) * unit_price as decimal(38, 12));
