"""Athena: an enforced, encrypted workgroup with a scan limit, and the views from ``sql/`` as named queries."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import aws_athena as athena
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

MB = 1024 * 1024
ENGINE_VERSION = "Athena engine version 3"  # Trino-based: the dialect sqlglot renders the views for


class Analytics(Construct):
    """The unit's Athena workgroup and one named query per view (``CREATE OR REPLACE VIEW …``).

    Attributes:
        workgroup: the workgroup (``workgroup_name`` is what QuickSight and the transform query through).
        named_queries: named query per view name.
    """

    def __init__(self, scope: Construct, construct_id: str, *, unit_name: str, database_name: str,
                 results_bucket: s3.IBucket, key: kms.IKey, bytes_scanned_cutoff_mb: int,
                 views: Mapping[str, str]) -> None:
        super().__init__(scope, construct_id)
        self.workgroup_name = f"modelmeter-{unit_name}"
        self.workgroup = athena.CfnWorkGroup(
            self, "WorkGroup", name=self.workgroup_name, state="ENABLED", recursive_delete_option=True,
            description=f"modelmeter {unit_name}: chargeback views and QuickSight",
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,  # clients cannot turn off encryption or the scan limit
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=bytes_scanned_cutoff_mb * MB,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(selected_engine_version=ENGINE_VERSION),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{results_bucket.bucket_name}/{unit_name}/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=key.key_arn)),
            ))
        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for name, statement in sorted(views.items()):
            query = athena.CfnNamedQuery(
                self, f"View-{name}", name=f"modelmeter view {name}", database=database_name,
                work_group=self.workgroup.ref, query_string=statement,
                description=f"Creates or replaces the view {name} (rendered from sql/ for Athena)")
            self.named_queries[name] = query
