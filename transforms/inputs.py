"""The day's raw input: which files are there, which can be read, and the DuckDB view over the readable ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ingest.schema import BY_NAME, FIELDS, REQUIRED, arrow_schema
from modelmeter.constants import RAW_EVENTS
from modelmeter.lake import Lake

_SQL_TYPES = {"string": "varchar", "int": "integer", "bigint": "bigint", "bool": "boolean",
              "timestamp": "timestamptz"}


@dataclass
class InputFile:
    """One raw file of the day: its lake path, the local path DuckDB reads, and its rows and schema."""

    path: str
    local_path: str
    rows: int
    schema: pa.Schema


@dataclass
class DayInputs:
    """The day's raw files: the readable ones and, for each unreadable one, why."""

    files: list[InputFile] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (lake path, reason)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def _check(lake: Lake, path: str) -> tuple[int, pa.Schema]:
    """Rows and schema of a Parquet file, from its footer; raises on a corrupt or foreign file."""
    with lake.fs.open_input_file(path) as src:
        meta = pq.ParquetFile(src).metadata
        schema = meta.schema.to_arrow_schema()
    missing = [name for name in REQUIRED if name not in schema.names]
    if missing:
        raise ValueError(f"not a usage-event file: no column {', '.join(missing)}")
    return meta.num_rows, schema


def find_inputs(*, lake: Lake, day: date, workdir: Path) -> DayInputs:
    """Every raw file of ``dt=day`` (late arrivals included), checked; files on S3 are copied to ``workdir``.

    A file that cannot be read (truncated, not Parquet, missing required columns) is set aside with its reason;
    the others are processed.
    """
    result = DayInputs()
    for n, path in enumerate(lake.list_files(RAW_EVENTS, f"dt={day.isoformat()}")):
        try:
            rows, schema = _check(lake, path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            result.unreadable.append((lake.url(path[len(lake.base) + 1 :]), f"unreadable Parquet file: {exc}"))
            continue
        local = path
        if not lake.is_local:  # DuckDB reads local files fastest and needs no S3 credentials of its own
            (workdir / "raw").mkdir(exist_ok=True)
            local = str(workdir / "raw" / f"{n:06d}.parquet")
            pafs.copy_files(path, local, source_filesystem=lake.fs, destination_filesystem=pafs.LocalFileSystem())
        result.files.append(InputFile(path=lake.url(path[len(lake.base) + 1 :]), local_path=local, rows=rows,
                                      schema=schema))
    return result


def _column_sql(name: str, file: InputFile) -> str:
    """Select expression of one event column in one file: as stored, cast if stored as another type, else NULL."""
    f = BY_NAME[name]
    sql_type = _SQL_TYPES[f.kind]
    if name not in file.schema.names:
        return f"cast(null as {sql_type}) as {name}"
    if file.schema.field(name).type == arrow_schema().field(name).type:
        return name
    return f"try_cast({name} as {sql_type}) as {name}"


def raw_view_sql(files: list[InputFile]) -> str:
    """``select`` over the day's readable files: every schema-v1 column, ``source_file`` (the file's index in
    ``files``: an integer keeps dedupe joins cheap) and ``source_row`` (0-based row in the file).

    One ``read_parquet`` per file, so each file's own schema decides how its columns are read (a producer that
    omits an optional column or stores another type still lands).
    """
    if not files:
        columns = ", ".join(f"cast(null as {_SQL_TYPES[f.kind]}) as {f.name}" for f in FIELDS)
        return f"select {columns}, cast(null as integer) as source_file, cast(null as bigint) as source_row limit 0"
    parts = []
    for i, file in enumerate(files):
        columns = ", ".join(_column_sql(f.name, file) for f in FIELDS)
        path = file.local_path.replace("'", "''")
        parts.append(f"select {columns}, {i} as source_file, file_row_number as source_row\n"
                     f"from read_parquet('{path}', file_row_number = true)")
    return "\nunion all\n".join(parts)


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
