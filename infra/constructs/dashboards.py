"""QuickSight data source, datasets (with the row-level-security dataset) and dashboard, from ``dashboards/``.

``dashboards.quicksight.build_definitions`` returns boto3-shaped ``create_*`` arguments; each becomes an
``AwsCustomResource`` that creates on create, updates on update (the arguments the matching ``update_*`` call
accepts, taken from botocore's QuickSight model) and deletes on delete.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import botocore.session
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.nag import scoped_arn

# (definition key, resource id field, QuickSight API noun, ARN resource type)
_KINDS = {"data_source": ("DataSourceId", "DataSource", "datasource"),
          "data_set": ("DataSetId", "DataSet", "dataset"),
          "dashboard": ("DashboardId", "Dashboard", "dashboard")}


@cache
def _update_members(operation: str) -> frozenset[str]:
    model = botocore.session.get_session().get_service_model("quicksight")
    return frozenset(model.operation_model(operation).input_shape.members)


def _sdk_call(action: str, parameters: Mapping[str, Any], physical_id: str) -> cr.AwsSdkCall:
    return cr.AwsSdkCall(service="QuickSight", action=action, parameters=dict(parameters),
                         physical_resource_id=cr.PhysicalResourceId.of(physical_id))


class Dashboards(Construct):
    """QuickSight assets from API-shaped definitions (keys ``data_source``, ``rls_data_set``, ``data_sets``,
    ``dashboard``), created in dependency order.

    Attributes:
        resources: the custom resource per QuickSight resource id.
    """

    def __init__(self, scope: Construct, construct_id: str, *, definitions: Mapping[str, Any]) -> None:
        super().__init__(scope, construct_id)
        self.resources: dict[str, cr.AwsCustomResource] = {}
        ordered = [("data_source", definitions["data_source"]), ("data_set", definitions["rls_data_set"]),
                   *(("data_set", d) for d in definitions["data_sets"]), ("dashboard", definitions["dashboard"])]
        # Datasets pass the data source (and the RLS dataset); the dashboard passes its datasets: name them all.
        passable = [self._arn(kind, kwargs) for kind, kwargs in ordered if kind != "dashboard"]
        previous: cr.AwsCustomResource | None = None
        for kind, kwargs in ordered:
            resource = self._resource(kind, kwargs, passable)
            if previous is not None:
                resource.node.add_dependency(previous)  # datasets need the source, the dashboard its datasets
            previous = resource

    def _arn(self, kind: str, kwargs: Mapping[str, Any]) -> str:
        id_field, _, arn_type = _KINDS[kind]
        return scoped_arn(self, "arn:{partition}:quicksight:{region}:{account}:") + f"{arn_type}/{kwargs[id_field]}"

    def _resource(self, kind: str, kwargs: Mapping[str, Any], passable: list[str]) -> cr.AwsCustomResource:
        id_field, noun, _ = _KINDS[kind]
        resource_id = kwargs[id_field]
        update_members = _update_members(f"Update{noun}")
        update = {k: v for k, v in kwargs.items() if k in update_members}
        key = {"AwsAccountId": kwargs["AwsAccountId"], id_field: resource_id}
        arn = self._arn(kind, kwargs)
        actions = [f"quicksight:Create{noun}", f"quicksight:Update{noun}", f"quicksight:Delete{noun}",
                   f"quicksight:Describe{noun}", f"quicksight:Update{noun}Permissions", "quicksight:TagResource"]
        if kind == "data_set":
            actions += ["quicksight:PassDataSource", "quicksight:PassDataSet"]
        if kind == "dashboard":
            actions += ["quicksight:UpdateDashboardPublishedVersion"]
        statements = [iam.PolicyStatement(actions=actions, resources=[arn])]
        if kind != "data_source":
            # Creating a dataset passes the data source (and the RLS dataset); a dashboard passes its datasets.
            statements.append(iam.PolicyStatement(
                actions=["quicksight:PassDataSource", "quicksight:PassDataSet", "quicksight:DescribeDataSet"],
                resources=passable))
        resource = cr.AwsCustomResource(
            self, f"{noun}-{resource_id}", resource_type=f"Custom::QuickSight{noun}",
            on_create=_sdk_call(f"create{noun}", kwargs, resource_id),
            on_update=_sdk_call(f"update{noun}", update, resource_id),
            on_delete=_sdk_call(f"delete{noun}", key, resource_id),
            policy=cr.AwsCustomResourcePolicy.from_statements(statements), install_latest_aws_sdk=False)
        self.resources[resource_id] = resource
        return resource
