"""The lake (S3, SSE-KMS) and its Glue catalog: raw, quarantine and curated tables with partition projection."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.catalog_schema import TableSpec

#: First day partition projection knows about; Athena prunes by the query's dt range, so an early start is free.
PROJECTION_START = "2024-01-01"
ERRORS_PREFIX = "errors/"

_PARQUET_IN = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
_PARQUET_OUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
_PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


class LakeCatalog(Construct):
    """Encrypted buckets (lake, Athena results, access logs), the unit's KMS key, a Glue database and tables.

    Attributes:
        key: the unit's customer-managed KMS key (lake, Firehose, Athena results, queues).
        bucket: the lake bucket (``raw/``, ``quarantine/``, ``pricing/``, ``curated/``, ``errors/``).
        results_bucket: Athena query results.
        database_name: the Glue database.
        tables: Glue tables by name.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, tables: Sequence[TableSpec],
                 raw_retention_days: int, infrequent_access_after_days: int) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, alias=f"alias/modelmeter-{unit_name}",
                           description=f"modelmeter {unit_name}: lake, usage stream, Athena results, queues",
                           removal_policy=RemovalPolicy.RETAIN)
        self.access_logs = s3.Bucket(
            self, "AccessLogs", encryption=s3.BucketEncryption.S3_MANAGED,  # log delivery cannot write SSE-KMS
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(365))])
        self.bucket = self._bucket("Lake", "lake/", _lake_lifecycle(raw_retention_days, infrequent_access_after_days))
        self.results_bucket = self._bucket("AthenaResults", "athena-results/", [
            s3.LifecycleRule(id="expire-results", expiration=Duration.days(30),
                             abort_incomplete_multipart_upload_after=Duration.days(1))])

        self.database_name = f"modelmeter_{unit_name.replace('-', '_')}"
        self.database = glue.CfnDatabase(
            self, "Database", catalog_id=Stack.of(self).account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name, description=f"modelmeter lake of business unit {unit_name}"))
        self.tables: dict[str, glue.CfnTable] = {spec.name: self._table(spec) for spec in tables}

    def _bucket(self, construct_id: str, log_prefix: str, rules: list[s3.LifecycleRule]) -> s3.Bucket:
        return s3.Bucket(
            self, construct_id, encryption=s3.BucketEncryption.KMS, encryption_key=self.key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=False,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix=log_prefix,
            lifecycle_rules=rules, removal_policy=RemovalPolicy.RETAIN)

    def location(self, prefix: str) -> str:
        """``s3://<lake bucket>/<prefix>/``."""
        return f"s3://{self.bucket.bucket_name}/{prefix.strip('/')}/"

    def _table(self, spec: TableSpec) -> glue.CfnTable:
        location = self.location(spec.prefix)
        partition_keys = []
        parameters = {"classification": "parquet", "EXTERNAL": "TRUE"}
        if spec.partitions:
            parameters |= {"projection.enabled": "true", "storage.location.template": location
                           + "".join(f"{k}=${{{k}}}/" for k in spec.partitions)}
        if "dt" in spec.partitions:
            partition_keys.append(glue.CfnTable.ColumnProperty(name="dt", type="string", comment="UTC day YYYY-MM-DD"))
            parameters |= {
                "projection.dt.type": "date",
                "projection.dt.format": "yyyy-MM-dd",
                "projection.dt.range": f"{PROJECTION_START},NOW",
                "projection.dt.interval": "1",
                "projection.dt.interval.unit": "DAYS",
            }
        if "hour" in spec.partitions:
            partition_keys.append(glue.CfnTable.ColumnProperty(name="hour", type="int", comment="UTC hour, 0-23"))
            parameters |= {
                "projection.hour.type": "integer",
                "projection.hour.range": "0,23",
                "projection.hour.digits": "2",  # Firehose writes hour=07 (from event_time[11:13])
            }
        if "billing_period" in spec.partitions:  # the CUR's UTC calendar months: billing_period=YYYY-MM
            partition_keys.append(glue.CfnTable.ColumnProperty(name="billing_period", type="string",
                                                               comment="billing period YYYY-MM (UTC month)"))
            parameters |= {
                "projection.billing_period.type": "date",
                "projection.billing_period.format": "yyyy-MM",
                "projection.billing_period.range": f"{PROJECTION_START[:7]},NOW",
                "projection.billing_period.interval": "1",
                "projection.billing_period.interval.unit": "MONTHS",
            }
        if "version" in spec.partitions:  # a chargeback's versions, 1, 2, …
            partition_keys.append(glue.CfnTable.ColumnProperty(name="version", type="int",
                                                               comment="chargeback version"))
            parameters |= {"projection.version.type": "integer", "projection.version.range": "1,9999"}
        table = glue.CfnTable(
            self, f"Table-{spec.name}", catalog_id=Stack.of(self).account, database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=spec.name, description=spec.description, table_type="EXTERNAL_TABLE",
                parameters=parameters, partition_keys=partition_keys or None,
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location, input_format=_PARQUET_IN, output_format=_PARQUET_OUT,
                    serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=_PARQUET_SERDE,
                                                               parameters={"serialization.format": "1"}),
                    columns=[glue.CfnTable.ColumnProperty(name=col["name"], type=col["type"],
                                                          comment=col["comment"][:255] or None)
                             for col in spec.columns],
                ),
            ),
        )
        table.node.add_dependency(self.database)
        return table


def _lake_lifecycle(raw_days: int, ia_days: int) -> list[s3.LifecycleRule]:
    """Raw and quarantine expire; curated and pricing are kept (they are the books) but move to Standard-IA."""
    ia = [s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=Duration.days(ia_days))]
    rules = [s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=Duration.days(7))]
    for prefix in ("raw/", "quarantine/"):
        transitions = ia if ia_days < raw_days else []
        rules.append(s3.LifecycleRule(id=f"expire-{prefix.strip('/')}", prefix=prefix, transitions=transitions,
                                      expiration=Duration.days(raw_days)))
    rules.append(s3.LifecycleRule(id="expire-errors", prefix=ERRORS_PREFIX, expiration=Duration.days(30)))
    rules.append(s3.LifecycleRule(id="curated-ia", prefix="curated/", transitions=ia))
    return rules
