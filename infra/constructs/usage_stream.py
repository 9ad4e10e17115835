"""Firehose DirectPut → S3 ``raw/usage_events/dt=…/hour=…/`` as Parquet converted from the Glue table's schema."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from common.constants import RAW_EVENTS
from infra.nag import acknowledge, acknowledge_kms_grant, nag_ref

# Events carry event_time as ISO-8601 UTC with a trailing Z (common.contracts.format_time), so the UTC date and hour
# are fixed-position substrings: no date parsing in JQ, and the same dt/hour as the local sink computes.
PARTITION_QUERY = "{dt: .event_time[0:10], hour: .event_time[11:13]}"
RAW_PREFIX = f"{RAW_EVENTS}/dt=!{{partitionKeyFromQuery:dt}}/hour=!{{partitionKeyFromQuery:hour}}/"
ERROR_PREFIX = "errors/usage_events/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
# Cost: Firehose bills per GB ingested and S3 per request; the largest buffers give the fewest, biggest Parquet
# files (good for Athena and DuckDB). 64 MiB is the floor when record-format conversion is on; 900 s the ceiling.
BUFFER_MB = 128
BUFFER_SECONDS = 900

_Destination = firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty


class UsageStream(Construct):
    """The Firehose delivery stream the gateway puts usage events into (``PutRecordBatch``).

    Attributes:
        stream: the delivery stream (``stream.ref`` is its name).
        stream_name: its name.
        log_group: where Firehose logs delivery errors.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, bucket: s3.IBucket, key: kms.IKey,
                 database_name: str, table_name: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.stream_name = f"modelmeter-{unit_name}-usage"
        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.THREE_MONTHS,
                                       removal_policy=RemovalPolicy.DESTROY)
        log_stream = self.log_group.add_stream("S3Delivery", log_stream_name="S3Delivery")
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com",
                                                                       conditions={"StringEquals": {
                                                                           "aws:SourceAccount": stack.account}}),
                        description="Firehose: write the raw lake, read the Glue schema, log errors")
        self._grant(role, bucket=bucket, key=key, database_name=database_name, table_name=table_name)
        self.stream = firehose.CfnDeliveryStream(
            self, "Stream", delivery_stream_name=self.stream_name, delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=(
                firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                    key_type="CUSTOMER_MANAGED_CMK", key_arn=key.key_arn)),
            extended_s3_destination_configuration=self._destination(
                role=role, bucket=bucket, key=key, database_name=database_name, table_name=table_name,
                log_stream=log_stream.log_stream_name),
        )
        # Firehose checks its permissions on creation: wait for the role's policy (the role itself is referenced).
        policy = role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            self.stream.node.add_dependency(policy)

    def _destination(self, *, role: iam.IRole, bucket: s3.IBucket, key: kms.IKey, database_name: str,
                     table_name: str, log_stream: str) -> _Destination:
        p = firehose.CfnDeliveryStream
        stack = Stack.of(self)
        return p.ExtendedS3DestinationConfigurationProperty(
            bucket_arn=bucket.bucket_arn, role_arn=role.role_arn, prefix=RAW_PREFIX,
            error_output_prefix=ERROR_PREFIX, compression_format="UNCOMPRESSED",  # Parquet compresses itself
            buffering_hints=p.BufferingHintsProperty(size_in_m_bs=BUFFER_MB, interval_in_seconds=BUFFER_SECONDS),
            encryption_configuration=p.EncryptionConfigurationProperty(
                kms_encryption_config=p.KMSEncryptionConfigProperty(awskms_key_arn=key.key_arn)),
            cloud_watch_logging_options=p.CloudWatchLoggingOptionsProperty(
                enabled=True, log_group_name=self.log_group.log_group_name, log_stream_name=log_stream),
            data_format_conversion_configuration=p.DataFormatConversionConfigurationProperty(
                enabled=True,
                input_format_configuration=p.InputFormatConfigurationProperty(
                    # OpenX reads event_time as written (yyyy-MM-dd'T'HH:mm:ss.SSS'Z'): one of the timestamp forms it
                    # parses (Firehose guide, "Convert input data format"); Hive's SerDe would need a format string.
                    deserializer=p.DeserializerProperty(open_x_json_ser_de=p.OpenXJsonSerDeProperty(
                        case_insensitive=False))),
                output_format_configuration=p.OutputFormatConfigurationProperty(
                    serializer=p.SerializerProperty(parquet_ser_de=p.ParquetSerDeProperty(compression="SNAPPY"))),
                schema_configuration=p.SchemaConfigurationProperty(
                    catalog_id=stack.account, database_name=database_name, table_name=table_name,
                    region=stack.region, role_arn=role.role_arn, version_id="LATEST"),
            ),
            dynamic_partitioning_configuration=p.DynamicPartitioningConfigurationProperty(
                enabled=True, retry_options=p.RetryOptionsProperty(duration_in_seconds=300)),
            processing_configuration=p.ProcessingConfigurationProperty(enabled=True, processors=[
                p.ProcessorProperty(type="MetadataExtraction", parameters=[
                    p.ProcessorParameterProperty(parameter_name="MetadataExtractionQuery",
                                                 parameter_value=PARTITION_QUERY),
                    p.ProcessorParameterProperty(parameter_name="JsonParsingEngine", parameter_value="JQ-1.6"),
                ]),
            ]),
        )

    def _grant(self, role: iam.Role, *, bucket: s3.IBucket, key: kms.IKey, database_name: str,
               table_name: str) -> None:
        stack = Stack.of(self)
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:ListBucket",
                     "s3:ListBucketMultipartUploads"],
            resources=[bucket.bucket_arn]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
            resources=[bucket.arn_for_objects(f"{RAW_EVENTS}/*"), bucket.arn_for_objects("errors/*")]))
        key.grant_encrypt_decrypt(role)
        acknowledge_kms_grant(role)
        for prefix in (RAW_EVENTS, "errors"):
            acknowledge(role, f"AwsSolutions-IAM5[Resource::{nag_ref(bucket)}/{prefix}/*]",
                        "Firehose names its objects itself; the role may write only under this prefix.")
        role.add_to_policy(iam.PolicyStatement(
            actions=["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
            resources=[f"arn:{stack.partition}:glue:{stack.region}:{stack.account}:catalog",
                       f"arn:{stack.partition}:glue:{stack.region}:{stack.account}:database/{database_name}",
                       f"arn:{stack.partition}:glue:{stack.region}:{stack.account}:table/{database_name}/{table_name}"]))
        role.add_to_policy(iam.PolicyStatement(actions=["logs:PutLogEvents"],
                                               resources=[self.log_group.log_group_arn]))
