"""Write the curated day files from DuckDB's result with pyarrow, and roll ``team_model_daily`` up on the way.

The SQL marts define both tables (``sql/marts/usage_cost.sql``, ``sql/marts/team_model_daily.sql``); this module is
a measured speed-up of running them, proven equal to them row for row on every test run
(``tests/transform/test_writer.py``). DuckDB's own ``COPY … TO parquet`` of the 26-column ``usage_cost`` was most of
the transform's time (measured in docs/transform.md). Here the ``usage_cost_pico`` result streams out of DuckDB as
Arrow record batches and:

- the money columns are built straight from the exact BIGINT pico-dollars: DECIMAL(38,12) USD stores its unscaled
  value, and pico-dollars *are* that value, so each cost is the int64 widened to a 16-byte little-endian two's
  complement integer (low word, sign-extended high word) — no per-value decimal arithmetic (``mm_pico_to_money`` in
  SQL);
- the few-distinct strings are dictionary-encoded once, so the Parquet writer writes their dictionary pages as is;
- every batch is also summed per ``usage_date × team × model`` (128-bit decimal sums, exact), so
  ``team_model_daily`` needs no second pass over the written file and agrees with it to the last decimal.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common.contracts import COST_COLUMNS, COST_OF, MONEY, UNITS, curated_arrow_schema
from sql.fragments import pico_column

#: Rows per Parquet row group (and per Arrow batch fetched from DuckDB). Half a million, not a million: three
#: batches are alive while writing (the next one produced, one waiting, one written), and at 10 M events the wide
#: pass took 400-500 MiB less peak memory and no more time (paired runs in docs/transform.md); a row group is still
#: ~20 MB of Parquet.
ROW_GROUP_ROWS = 500_000
#: usage_cost columns with few distinct values: dictionary-encoded before writing.
DICTIONARY_COLUMNS = ("team_id", "api_key_id", "business_unit", "provider", "region", "model_id", "operation",
                      "status", "service_tier", "price_version", "unpriced_dimensions", "refusal_reason")
_GROUP_KEYS = ("usage_date", "team_id", "model_id")
_COUNTS = tuple(COST_OF.values())
#: Per billable unit, the rollup's count of rows that used it without a price (its cost NULL): the partial sums
#: ``team_model_daily.unpriced_dimensions`` is made of (dropped before writing).
_UNPRICED_USE = {u.dimension: f"_unpriced_{u.count_field}" for u in UNITS}


def pico_to_money(pico: pa.Array) -> pa.Array:
    """Whole pico-dollars (int64, nullable) as DECIMAL(38,12) USD, exactly (same unscaled integer)."""
    pico = pico.cast(pa.int64())
    values = pc.fill_null(pico, 0).to_numpy(zero_copy_only=False)
    words = np.empty((len(values), 2), dtype=np.int64)
    words[:, 0] = values
    words[:, 1] = values >> 63  # sign extension: 0 or -1
    validity = pc.is_valid(pico).buffers()[1] if pico.null_count else None
    return pa.Array.from_buffers(MONEY, len(values), [validity, pa.py_buffer(words)], null_count=pico.null_count)


def _dictionary(column: pa.Array) -> pa.Array:
    return column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)


def file_schema() -> pa.Schema:
    """``usage_cost``'s schema as written: the contract's, with the few-distinct strings dictionary-encoded (the
    file is written without the Arrow schema, so readers see plain strings)."""
    schema = curated_arrow_schema("usage_cost")
    for name in DICTIONARY_COLUMNS:
        i = schema.get_field_index(name)
        schema = schema.set(i, schema.field(i).with_type(pa.dictionary(pa.int32(), pa.string())))
    return schema


#: usage_cost columns the writer makes itself instead of reading them from DuckDB (see ``query_columns``).
_DERIVED = ("usage_date", "price_version")


def query_columns() -> list[str]:
    """The ``usage_cost_pico`` columns the writer reads: costs as pico-dollars. ``usage_date`` is derived here
    (DuckDB's time-zone-aware date cast cost ~0.25 s per M rows, measured; UTC days are plain integer division),
    and so is the run's constant ``price_version`` (exporting one constant string per row cost DuckDB ~0.15 s per
    M rows, measured)."""
    return [pico_column(n) if n in COST_COLUMNS else n
            for n in curated_arrow_schema("usage_cost").names if n not in _DERIVED]


def constant_dictionary(value: str | None, length: int) -> pa.Array:
    """``length`` copies of ``value`` as a one-entry dictionary array (all NULL when ``value`` is None)."""
    if value is None:
        return pa.nulls(length, type=pa.dictionary(pa.int32(), pa.string()))
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(length, dtype=np.int32)), pa.array([value]))


def utc_date(event_time: pa.Array) -> pa.Array:
    """The UTC calendar date of each instant (``mm_utc_date`` in SQL): epoch microseconds floor-divided by a day."""
    ts = event_time.cast(pa.timestamp("us", tz="UTC"))
    micros = np.frombuffer(ts.buffers()[1], dtype=np.int64, count=ts.offset + len(ts))[ts.offset:]
    days = (micros // 86_400_000_000).astype(np.int32)  # numpy floors, so instants before 1970 are right too
    validity = pc.is_valid(ts).buffers()[1] if ts.null_count else None
    return pa.Array.from_buffers(pa.date32(), len(days), [validity, pa.py_buffer(days)], null_count=ts.null_count)


def usage_cost_batch(batch: pa.RecordBatch, *, price_version: str | None = None) -> pa.Table:
    """One ``usage_cost_pico`` batch as ``usage_cost`` columns (money DECIMAL(38,12), strings dictionary-encoded).

    ``price_version`` fills that column when the batch has none (as ``query_columns`` reads it)."""
    schema = file_schema()
    columns = []
    for name in schema.names:
        if name == "usage_date" and name not in batch.schema.names:
            columns.append(utc_date(batch.column("event_time")))
        elif name == "price_version" and name not in batch.schema.names:
            columns.append(constant_dictionary(price_version, batch.num_rows))
        elif name in COST_COLUMNS:
            columns.append(pico_to_money(batch.column(pico_column(name))))
        elif name in DICTIONARY_COLUMNS:
            columns.append(_dictionary(batch.column(name)))
        else:
            columns.append(batch.column(name).cast(schema.field(name).type))
    return pa.Table.from_arrays(columns, schema=schema)


def _rollup(table: pa.Table) -> pa.Table:
    """Per usage_date × team × model sums of one batch (exact: int64 counts, 128-bit decimal money)."""
    keys = table.select(list(_GROUP_KEYS))
    sums = {c: table[c].cast(pa.int64()) for c in _COUNTS}
    money = {c: table[c] for c in COST_COLUMNS}
    data = keys.append_column("invocations", pa.array(np.ones(table.num_rows, dtype=np.int64)))
    for name, col in {**sums, **money}.items():
        data = data.append_column(name, col)
    data = data.append_column("unpriced_invocations", pc.invert(table["priced"]).cast(pa.int64()))
    for u in UNITS:  # used without a price: a count above 0 and a NULL cost
        used = pc.greater(table[u.count_field], 0)
        data = data.append_column(_UNPRICED_USE[u.dimension],
                                  pc.and_(used, pc.is_null(table[u.cost_column])).cast(pa.int64()))
    out = _sum_by_keys(data)  # grouped on the dictionary codes; the (few) keys are decoded after
    return out.cast(pa.schema([f.with_type(pa.string()) if pa.types.is_dictionary(f.type) else f
                               for f in out.schema]))


def _sum_by_keys(data: pa.Table) -> pa.Table:
    zero = pc.ScalarAggregateOptions(min_count=0)  # an all-unpriced group sums to 0, as coalesce(sum, 0) did
    measures = [n for n in data.column_names if n not in _GROUP_KEYS]
    out = data.group_by(list(_GROUP_KEYS), use_threads=False).aggregate([(m, "sum", zero) for m in measures])
    return out.rename_columns([n.removesuffix("_sum") for n in out.column_names])


def prefetched(batches: Iterable[pa.RecordBatch], depth: int = 1) -> Iterator[pa.RecordBatch]:
    """``batches``, produced in a background thread: DuckDB computes the next batch while this one is encoded
    and written (both release the GIL, so the two overlap on two cores)."""
    done = object()
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                box.put(batch)
            box.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            box.put(exc)

    thread = threading.Thread(target=produce, name="usage-cost-batches", daemon=True)
    thread.start()
    try:
        while (item := box.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                box.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


@dataclass
class DayWriter:
    """Writes one day's ``usage_cost`` file batch by batch and keeps the ``team_model_daily`` partial sums."""

    path: Path
    price_version: str | None
    rows: int = 0
    unpriced: dict[str, int] = field(default_factory=dict)
    _partials: list[pa.Table] = field(default_factory=list)
    _writer: Any = None

    def write(self, batch: pa.RecordBatch) -> None:
        table = usage_cost_batch(batch, price_version=self.price_version)
        if self._writer is None:
            # store_schema=False: readers see the plain types of the contract (string, not dictionary<…>)
            self._writer = pq.ParquetWriter(
                self.path, file_schema(), compression="zstd", compression_level=1,
                use_dictionary=list(DICTIONARY_COLUMNS), write_statistics=["event_time", "usage_date"],
                store_schema=False)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows
        self._partials.append(_rollup(table))

    def close(self) -> None:
        if self._writer is None:  # an empty day: a valid file with no rows
            self._writer = pq.ParquetWriter(self.path, file_schema(), compression="zstd",
                                            store_schema=False)
        self._writer.close()

    def team_model_daily(self) -> pa.Table:
        """The day's rollup, in the ``team_model_daily`` schema, ordered by team and model."""
        schema = curated_arrow_schema("team_model_daily")
        if self._partials:
            sums = _sum_by_keys(pa.concat_tables(self._partials)).sort_by([("team_id", "ascending"),
                                                                           ("model_id", "ascending")])
        else:
            sums = schema.empty_table().drop_columns(["price_version"])
        version = pa.array([self.price_version] * sums.num_rows, pa.string())
        derived = {"price_version": version, "unpriced_dimensions": _unpriced_dimensions(sums)}
        return pa.Table.from_arrays([derived[n] if n in derived else sums[n].cast(schema.field(n).type)
                                     for n in schema.names], schema=schema)


def _unpriced_dimensions(sums: pa.Table) -> pa.Array:
    """Each group's dimensions some row used without a price, comma-separated in UNITS order; NULL when every row
    was priced (the mart's ``case when count_if(not priced) > 0 then concat_ws(',', …) end``). A day has a few
    hundred groups, so a loop is cheap."""
    if not sums.num_rows:
        return pa.array([], pa.string())
    unpriced = sums["unpriced_invocations"].to_pylist()
    flags = {d: sums[c].to_pylist() for d, c in _UNPRICED_USE.items()}
    return pa.array([",".join(d for d, used in flags.items() if used[i]) if unpriced[i] else None
                     for i in range(sums.num_rows)], pa.string())

