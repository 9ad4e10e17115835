"""What a deployed unit carries that the domain packages define, for the CDK app (``app.py``) to hand to ``infra``.

Infra imports only the ground floor (docs/architecture.md); the views come from ``sql/`` and the QuickSight assets
from ``dashboards/``, rendered here with each unit's settings.
"""

from __future__ import annotations

from typing import Any

from dashboards.quicksight import build_definitions
from sql.config import ReportingConfig
from sql.render import render_views


class ModelmeterContent:
    """Implements ``infra.stacks.unit.UnitContent``."""

    def athena_views(self, *, timezone: str, fiscal_month_start_day: int) -> dict[str, str]:
        """The views of ``sql/`` rendered for Athena with the unit's reporting time zone and fiscal month."""
        config = ReportingConfig(timezone=timezone, fiscal_month_start_day=fiscal_month_start_day)
        return render_views(dialect="athena", config=config)

    def quicksight_definitions(self, *, aws_account_id: str, region: str, athena_workgroup: str, glue_database: str,
                               principals: list[str], rls_principals: dict[str, list[str]]) -> dict[str, Any]:
        return build_definitions(aws_account_id=aws_account_id, region=region, athena_workgroup=athena_workgroup,
                                 glue_database=glue_database, principals=principals, rls_principals=rls_principals)


CONTENT = ModelmeterContent()
