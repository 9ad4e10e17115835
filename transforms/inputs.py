"""The day's raw input: which files are there, which can be read, and the DuckDB view over the readable ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.constants import RAW_EVENTS
from common.contracts import BY_NAME, FIELDS, KIND_ARROW, REQUIRED, arrow_schema, sql_type
from common.lake import Lake
from transforms.rules import CAST_PROBLEMS, cast_message_sql

#: Contract kind → DuckDB type, from the contract's one kind map.
_SQL_TYPES = {kind: sql_type(KIND_ARROW[kind]) for kind in ("string", "int", "bigint", "bool", "timestamp")}
#: Each event column's Arrow type in the contract.
_CONTRACT_TYPES = {f.name: f.type for f in arrow_schema()}


@dataclass
class InputFile:
    """One raw file of the day: its lake path, the local path DuckDB reads, its rows and schema, and its footer
    (whose row-group statistics prove rules without reading the rows: :mod:`transforms.proofs`)."""

    path: str
    local_path: str
    rows: int
    schema: pa.Schema
    metadata: pq.FileMetaData | None = None

    def stored_as_contract(self, name: str) -> bool:
        """Column ``name`` is stored in the contract's own type: read as is, no cast, no cast problem."""
        return name in self.schema.names and self.schema.field(name).type == _CONTRACT_TYPES[name]

    @property
    def needs_no_cast(self) -> bool:
        """Every contract column the file has is stored in the contract's type (``cast_problems`` is NULL)."""
        return all(self.stored_as_contract(f.name) for f in FIELDS if f.name in self.schema.names)


@dataclass
class DayInputs:
    """The day's raw files: the readable ones and, for each unreadable one, why."""

    files: list[InputFile] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (lake path, reason)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def _check(lake: Lake, path: str) -> tuple[pq.FileMetaData, pa.Schema]:
    """Footer and schema of a Parquet file; raises on a corrupt or foreign file."""
    with lake.fs.open_input_file(path) as src:
        meta = pq.ParquetFile(src).metadata
        schema = meta.schema.to_arrow_schema()
    missing = [name for name in REQUIRED if name not in schema.names]
    if missing:
        raise ValueError(f"not a usage-event file: no column {', '.join(missing)}")
    return meta, schema


def find_inputs(*, lake: Lake, day: date, workdir: Path) -> DayInputs:
    """Every raw file of ``dt=day`` (late arrivals included), checked; files on S3 are copied to ``workdir``.

    A file that cannot be read (truncated, not Parquet, missing required columns) is set aside with its reason;
    the others are processed.
    """
    result = DayInputs()
    for n, path in enumerate(lake.list_files(RAW_EVENTS, f"dt={day.isoformat()}")):
        try:
            meta, schema = _check(lake, path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            result.unreadable.append((lake.url(path[len(lake.base) + 1 :]), f"unreadable Parquet file: {exc}"))
            continue
        local = path
        if not lake.is_local:  # DuckDB reads local files fastest and needs no S3 credentials of its own
            (workdir / "raw").mkdir(exist_ok=True)
            local = str(workdir / "raw" / f"{n:06d}.parquet")
            pafs.copy_files(path, local, source_filesystem=lake.fs, destination_filesystem=pafs.LocalFileSystem())
        result.files.append(InputFile(path=lake.url(path[len(lake.base) + 1 :]), local_path=local,
                                      rows=meta.num_rows, schema=schema, metadata=meta))
    return result


def _source_type(file: InputFile, name: str) -> pa.DataType:
    stored = file.schema.field(name).type
    return stored.value_type if pa.types.is_dictionary(stored) else stored


def _is_text(source: pa.DataType) -> bool:
    return pa.types.is_string(source) or pa.types.is_large_string(source) or pa.types.is_string_view(source)


def _exact_sql(name: str, source: pa.DataType, kind: str) -> str:
    """SQL boolean: the stored value casts to the contract ``kind`` without losing or inventing anything.

    Text must be the value's own canonical spelling (``'1200'`` yes; ``'12k'``, ``'12.5'``, ``' 1200'``, ``'yes'``
    no: DuckDB would read ``'12.5'`` as 13 and ``'yes'`` as true); a text timestamp must carry its UTC offset, as
    ingest demands. A number must keep its value (``1200.0`` → 1200 yes, ``12.5`` no, ``2`` → boolean no). ``false``
    when no cast between the two types keeps a value (a list for a count, a number for a timestamp).
    """
    cast = f"try_cast({name} as {_SQL_TYPES[kind]})"
    text = _is_text(source)
    number = pa.types.is_integer(source) or pa.types.is_floating(source) or pa.types.is_decimal(source)
    if kind == "string":
        return f"{cast} is not null" if text or number or pa.types.is_boolean(source) else "false"
    if text:
        if kind == "timestamp":
            return f"{cast} is not null and regexp_matches({name}, '(Z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$')"
        return f"cast({cast} as varchar) = {name}"
    if kind == "timestamp":
        return f"{cast} is not null" if pa.types.is_timestamp(source) or pa.types.is_date(source) else "false"
    return f"{cast} = {name}" if number or pa.types.is_boolean(source) else "false"


def _column_sql(name: str, file: InputFile) -> tuple[str, str | None]:
    """One event column of one file: its select expression (as stored, cast if stored as another type, NULL when
    absent or of a type that cannot hold it) and, when cast, the SQL of its cast problem (NULL when it is exact)."""
    kind = BY_NAME[name].kind
    sql_type = _SQL_TYPES[kind]
    if name not in file.schema.names:
        return f"cast(null as {sql_type}) as {name}", None
    if file.stored_as_contract(name):
        return name, None  # the clean path: no cast, nothing to check
    source = _source_type(file, name)
    exact = _exact_sql(name, source, kind)
    # a value that does not cast exactly is never used, not even in its quarantined row: the reason names it
    value = (f"cast(null as {sql_type})" if exact == "false"
             else f"case when coalesce({exact}, false) then try_cast({name} as {sql_type}) end")
    shown = f"'''' || {name} || ''''" if _is_text(source) else f"cast({name} as varchar)"
    problem = (f"case when {name} is not null and not coalesce({exact}, false) "
               f"then {cast_message_sql(name, kind, shown)} end")
    return f"{value} as {name}", problem


def _file_sql(file: InputFile, index: int) -> str:
    """``select`` of one file: every schema-v1 column, its cast problems, ``source_file`` and ``source_row``."""
    columns, problems = [], []
    for f in FIELDS:
        column, problem = _column_sql(f.name, file)
        columns.append(column)
        if problem:
            problems.append(problem)
    checked = f"nullif(concat_ws('; ', {', '.join(problems)}), '')" if problems else "cast(null as varchar)"
    path = file.local_path.replace("'", "''")
    return (f"select {', '.join(columns)}, {checked} as {CAST_PROBLEMS}, {index} as source_file, "
            f"file_row_number as source_row\nfrom read_parquet('{path}', file_row_number = true)")


def raw_view_sql(files: list[InputFile]) -> str:
    """``select`` over the day's readable files: every schema-v1 column, ``cast_problems`` (the values the file
    stored that do not cast exactly to the contract type, NULL when none), ``source_file`` (the file's index in
    ``files``: an integer keeps dedupe joins cheap) and ``source_row`` (0-based row in the file).

    One ``read_parquet`` per file, so each file's own schema decides how its columns are read (a producer that
    omits an optional column or stores another type still lands; a value that does not cast makes its row invalid).
    """
    if not files:
        columns = ", ".join(f"cast(null as {_SQL_TYPES[f.kind]}) as {f.name}" for f in FIELDS)
        return (f"select {columns}, cast(null as varchar) as {CAST_PROBLEMS}, cast(null as integer) as source_file, "
                "cast(null as bigint) as source_row limit 0")
    return "\nunion all\n".join(_file_sql(file, i) for i, file in enumerate(files))


def event_columns_sql() -> str:
    """The staging model's column list: optional fields with a default take it when NULL (derived from FIELDS)."""
    out = []
    for f in FIELDS:
        if f.default is None:
            out.append(f.name)
        else:
            value = f"'{f.default}'" if isinstance(f.default, str) else str(f.default).lower()
            out.append(f"coalesce({f.name}, {value}) as {f.name}")
    return ",\n        ".join(out)
