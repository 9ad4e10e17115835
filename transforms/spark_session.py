"""The Spark session of the Spark transform engine (``transforms/spark_engine.py``): local mode here, Glue's in AWS.

pyspark is an optional extra (``pip install modelmeter[spark]``, ``requirements-spark.lock``; ``make test`` installs
it, ``make demo`` does not), so this module is the one place that imports it, inside its functions: the commands
that never start Spark never pay for it, and a missing pyspark is one clear error.

Spark 3.5 runs on Java 8, 11 or 17. The JVM is the one ``JAVA_HOME`` names, else ``java`` on the ``PATH``; a missing
or unsupported Java is refused with the version found and what to set, before Spark's own (long) launcher error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from common.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

#: The pyspark the engine is written and tested for: AWS Glue 5.0 runs Spark 3.5.4.
SPARK_VERSION = "3.5.4"
#: Java versions Spark 3.5 supports (https://spark.apache.org/docs/3.5.4/#downloading).
SUPPORTED_JAVA = (8, 11, 17)
#: SQL settings the engine's results depend on, set on every session (a Glue job's own session included):
#: UTC days (``mm_utc_date``, the ``dt=`` partitions), ANSI arithmetic (a BIGINT pico-dollar product that overflows
#: fails, as in DuckDB, instead of wrapping), microsecond UTC timestamps in Parquet (Spark's default INT96 would
#: read back as nanoseconds without a zone) and zstd files, as the DuckDB engine writes them.
SQL_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "zstd",
    # a file's column "Team_ID" is not team_id (the DuckDB engine matches names exactly: transforms/inputs.py)
    "spark.sql.caseSensitive": "true",
    # the written file is renamed into the lake by the engine: Hadoop's _SUCCESS marker is not wanted there
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
}


def java_version(java: str) -> int:
    """The major version of the ``java`` executable (``1.8.0_392`` → 8, ``17.0.15`` → 17)."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise UserError(f"cannot tell the version of {java}: `java -version` printed {out.stderr.strip()[:200]!r}")
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    return minor if major == 1 else major


def find_java(environ: dict[str, str] | None = None) -> str:
    """The ``java`` Spark will start: ``$JAVA_HOME/bin/java``, else ``java`` on the ``PATH``; checked to be a
    version Spark 3.5 supports.

    Raises:
        UserError: no Java, or an unsupported one (the message names it and says to set ``JAVA_HOME``).
    """
    env = os.environ if environ is None else environ
    home = env.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on the PATH and JAVA_HOME is not set"
        raise UserError(f"the Spark engine needs Java {' / '.join(map(str, SUPPORTED_JAVA))}: {where}")
    version = java_version(java)
    if version not in SUPPORTED_JAVA:
        raise UserError(f"the Spark engine needs Java {' / '.join(map(str, SUPPORTED_JAVA))}, and {java} is Java "
                        f"{version}: set JAVA_HOME to a Java 17 installation")
    return java


def _pyspark() -> Any:
    try:
        import pyspark
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError("the Spark engine needs pyspark: pip install 'modelmeter[spark]' "
                        "(or -r requirements-spark.lock)") from None
    if pyspark.__version__ != SPARK_VERSION:
        raise UserError(f"the Spark engine is pinned to pyspark {SPARK_VERSION} (Glue 5.0's Spark), "
                        f"this is {pyspark.__version__}: pip install -r requirements-spark.lock")
    return SparkSession


def configure(spark: SparkSession) -> SparkSession:
    """Apply :data:`SQL_SETTINGS` to a running session (Glue's, or one of :func:`local_session`)."""
    for key, value in SQL_SETTINGS.items():
        if not key.startswith("spark.hadoop."):  # read when the session starts, not settable afterwards
            spark.conf.set(key, value)
    return spark


def local_session(*, cores: int = 2, memory: str = "1g", shuffle_partitions: int = 4, small_days: bool = False
                  ) -> SparkSession:
    """A local-mode session (``local[cores]``), UI off, bounded driver memory, on 127.0.0.1 only.

    Local mode is the same Spark as a cluster's, in one JVM: what the tests and ``modelmeter transform --engine
    spark`` run. Starting it takes ~4-6 s (the JVM); reuse one session for many days.

    ``small_days``: days of a few rows (the tests). Spark then spends most of a day compiling each query's
    generated code (~0.5-3 s per new plan, measured; a day's rule and price literals make every day's plans new),
    so whole-stage code generation and adaptive re-planning are turned off: the same results, interpreted.
    """
    find_java()
    session_class = _pyspark()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no lookup of the host's public address
    builder = (session_class.builder.master(f"local[{cores}]").appName("modelmeter-transform")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.memory", memory)
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
               .config("spark.sql.adaptive.enabled", str(not small_days).lower())
               .config("spark.sql.codegen.wholeStage", str(not small_days).lower()))
    for key, value in SQL_SETTINGS.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return configure(spark)


def existing_session() -> SparkSession:
    """The session of the process (a Glue job's), configured for the engine."""
    return configure(_pyspark().builder.getOrCreate())


def spark_schema(schema: pa.Schema) -> StructType:
    """An Arrow schema (the contract's) as Spark's, nullability kept."""
    from pyspark.sql import types as t

    def one(dtype: pa.DataType) -> Any:
        if pa.types.is_string(dtype) or pa.types.is_dictionary(dtype):
            return t.StringType()
        if pa.types.is_timestamp(dtype):
            return t.TimestampType()  # UTC instants, in the session's (UTC) zone
        if pa.types.is_decimal(dtype):
            return t.DecimalType(dtype.precision, dtype.scale)
        simple = {pa.int32(): t.IntegerType(), pa.int64(): t.LongType(), pa.bool_(): t.BooleanType(),
                  pa.date32(): t.DateType()}
        if dtype not in simple:
            raise TypeError(f"no Spark type for Arrow {dtype}")
        return simple[dtype]

    return t.StructType([t.StructField(f.name, one(f.type), f.nullable) for f in schema])


def with_schema(spark: SparkSession, df: DataFrame, schema: StructType) -> DataFrame:
    """``df`` re-typed to ``schema`` (same columns and types), declaring the contract's NOT NULL columns.

    Spark infers every column of a file scan as nullable, and ``DataFrame.to`` refuses to narrow that; the Parquet
    writer marks a column REQUIRED only when the schema says so. The rows are handed over inside the JVM (no Python
    round trip). Safe because each required column is non-NULL by a rule (``*_present``) or a default.
    """
    from pyspark.sql import DataFrame as SparkDataFrame

    jspark = spark._jsparkSession
    jdf = jspark.createDataFrame(df.select(*schema.names)._jdf.rdd(), jspark.parseDataType(schema.json()))
    return SparkDataFrame(jdf, spark)


def collect_arrow(df: DataFrame) -> pa.Table:
    """A (small) DataFrame's rows on the driver as an Arrow table, without pandas."""
    batches = df._collect_as_arrow()
    if batches:
        return pa.Table.from_batches(batches)
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.schema).empty_table()
