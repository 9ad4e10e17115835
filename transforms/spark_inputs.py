"""The Spark engine's ``raw_day``: the day's raw files as one Spark DataFrame, with ``source_file`` (the file's index
in ``DayInputs.files``) and ``source_row`` (0-based row in the file), as ``transforms/inputs.py`` gives DuckDB.

First copy wins by (``source_file``, ``source_row``), so both must be the DuckDB engine's exactly:

- the files and their order are :func:`transforms.inputs.find_inputs`'s (the same listing, footers checked, the
  unreadable ones set aside; an ``s3://`` lake's files copied to the driver's disk);
- ``source_row`` is Spark's ``_metadata.row_index`` (Spark 3.5: the row's position in its Parquet file, the same
  count as DuckDB's ``file_row_number``), never ``monotonically_increasing_id`` (unique, not a row number);
- ``source_file`` is read back from the file's name: each file is linked as ``<index>.parquet`` in the scratch
  folder, so one ``spark.read.parquet`` reads every clean file (thousands of Firehose files make no union plan).

A file that stores a column as another type than the contract's (a broken producer; rare) is normalised on the
driver by the DuckDB engine's own SQL (:func:`transforms.inputs.raw_view_sql`: the exact-cast rule and its reasons,
defined once) into a file of the contract's types plus ``cast_problems``, ``source_file`` and ``source_row``, which
Spark reads beside the others.

On Glue (``stage_locally=False``) Spark reads the ``s3://`` files where they are and maps each file's path to its
index with a broadcast join. That path is not exercised here (no S3 connector jars on this machine); the tests run
the staged path, on a folder lake and on an ``s3://`` lake under moto.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs

from common.constants import RAW_EVENTS
from common.contracts import arrow_schema
from common.lake import Lake
from transforms.inputs import DayInputs, InputFile, find_inputs, raw_view_sql
from transforms.inputs import _check as check_footer
from transforms.rules import CAST_PROBLEMS
from transforms.run import connect
from transforms.spark_session import spark_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_NAME_DIGITS = 6
_INDEX_FROM_NAME = rf"([0-9]{{{_NAME_DIGITS}}})\.parquet$"


@dataclass(frozen=True)
class Scratch:
    """Where the engine puts the files Spark reads or writes: a local folder, or (Glue) a lake prefix."""

    local: Path  # the driver's own scratch folder (always)
    shared: str  # what Spark's executors read and write: ``local`` as a path, or an ``s3://`` URL on Glue

    def url(self, *parts: str) -> str:
        return "/".join((self.shared.rstrip("/"), *parts))


def day_inputs(*, lake: Lake, day: date, workdir: Path, stage_locally: bool = True) -> DayInputs:
    """The day's raw files, checked as the DuckDB engine checks them (:func:`transforms.inputs.find_inputs`, which
    copies an ``s3://`` lake's files to ``workdir``); on Glue (``stage_locally=False``) the same listing and footer
    checks without the copy, each file's ``local_path`` its ``s3://`` URL."""
    if stage_locally or lake.is_local:
        return find_inputs(lake=lake, day=day, workdir=workdir)
    result = DayInputs()
    for path in lake.list_files(RAW_EVENTS, f"dt={day.isoformat()}"):
        url = lake.url(path[len(lake.base) + 1:])
        try:
            rows, schema = check_footer(lake, path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            result.unreadable.append((url, f"unreadable Parquet file: {exc}"))
            continue
        result.files.append(InputFile(path=url, local_path=url, rows=rows, schema=schema))
    return result


def is_clean(file: InputFile) -> bool:
    """Every contract column the file has is stored in the contract's type (missing optional ones read NULL)."""
    contract = arrow_schema()
    return all(file.schema.field(f.name).type == f.type for f in contract if f.name in file.schema.names)


def _link(file: InputFile, index: int, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{index:0{_NAME_DIGITS}d}.parquet"
    if not target.exists():
        os.symlink(os.path.abspath(file.local_path), target)
    return str(target)


def _normalise(file: InputFile, index: int, scratch: Scratch, lake: Lake, stage_locally: bool) -> str:
    """One foreign-typed file in the contract's types (+ cast problems and lineage), by the DuckDB engine's SQL."""
    folder = scratch.local / "normalised"
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / f"{index:0{_NAME_DIGITS}d}.parquet"
    source = file.local_path
    if not stage_locally:  # Glue: this one file comes to the driver; the clean ones stay where they are
        source = str(folder / f"in-{index:0{_NAME_DIGITS}d}.parquet")
        pafs.copy_files(file.local_path.removeprefix("s3://"), source, source_filesystem=lake.fs,
                        destination_filesystem=pafs.LocalFileSystem())
    con = connect(threads=1)
    try:
        one = InputFile(path=file.path, local_path=source, rows=file.rows, schema=file.schema)
        con.execute(f"copy (select * replace (cast({index} as integer) as source_file) from ({raw_view_sql([one])})) "
                    f"to '{local}' (format parquet)")
    finally:
        con.close()
    if stage_locally:
        return str(local)
    target = scratch.url("normalised", local.name)
    pafs.copy_files(str(local), target.removeprefix("s3://"), source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=lake.fs)
    return target


def _read_clean(spark: SparkSession, paths: dict[int, str], stage_locally: bool, scratch: Scratch) -> DataFrame:
    from pyspark.sql import functions as f

    schema = spark_schema(arrow_schema())
    df = spark.read.schema(schema).parquet(*paths.values()).select(
        *schema.names, f.col("_metadata.file_path").alias("_path"), f.col("_metadata.row_index").alias("source_row"))
    if stage_locally:
        index = f.regexp_extract("_path", _INDEX_FROM_NAME, 1).cast("int")
        return df.select(*schema.names, f.lit(None).cast("string").alias(CAST_PROBLEMS), index.alias("source_file"),
                         "source_row")
    # Glue: the path as Spark reports it (s3://bucket/key) joined to the file's index (untested here, see above)
    names = spark.createDataFrame([(p, i) for i, p in paths.items()], "_path string, source_file int")
    return df.join(f.broadcast(names), "_path").select(
        *schema.names, f.lit(None).cast("string").alias(CAST_PROBLEMS), "source_file", "source_row")


def raw_day(spark: SparkSession, *, lake: Lake, inputs: DayInputs, scratch: Scratch,
            stage_locally: bool = True) -> DataFrame:
    """The day's readable files as one DataFrame: every schema-v1 column, ``cast_problems``, ``source_file``,
    ``source_row`` (see the module docstring)."""
    from pyspark.sql import types as t

    clean: dict[int, str] = {}
    normalised: list[str] = []
    for index, file in enumerate(inputs.files):
        if not is_clean(file):
            normalised.append(_normalise(file, index, scratch, lake, stage_locally))
        elif stage_locally:
            clean[index] = _link(file, index, scratch.local / "raw")
        else:
            clean[index] = file.local_path
    schema = spark_schema(arrow_schema())
    staged = t.StructType([*schema.fields, t.StructField(CAST_PROBLEMS, t.StringType()),
                           t.StructField("source_file", t.IntegerType()), t.StructField("source_row", t.LongType())])
    frames = []
    if clean:
        frames.append(_read_clean(spark, clean, stage_locally, scratch))
    if normalised:
        frames.append(spark.read.schema(staged).parquet(*normalised))
    if not frames:
        return spark.createDataFrame([], staged)
    out = frames[0]
    for other in frames[1:]:
        out = out.unionByName(other)
    return out
