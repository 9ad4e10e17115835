"""Synthesized apps shared by every infra test (synthesis takes seconds: do it once per session).

- ``deployment``: the real app from ``infra/config/units.yaml`` plus one more full unit exercising the other
  branches (private API, Glue engine, QuickSight, explicit account/region, NAT), with cdk-nag on the synth.
- ``bare``: each construct in a bare stack of its own (no cdk-nag), to assert the construct's own resources.
Templates are read back from the cloud assembly as JSON and wrapped in ``Template.from_json``.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402  (after the environment variable above)
from aws_cdk.assertions import Template  # noqa: E402

from infra.config import DEFAULT_CONFIG, DeploymentConfig, parse_config  # noqa: E402
from infra.nag import ACKNOWLEDGMENT_METADATA, FEATURE_FLAGS, RECORD_ONLY_CONTEXT, add_checks  # noqa: E402
from infra.stacks.unit import build_units  # noqa: E402
from modelmeter.deploy import CONTENT  # noqa: E402

ACCOUNT = "123456789012"
REGION = "eu-west-1"

# A second full unit that takes every branch the sample does not: private API, Glue engine, QuickSight with RLS,
# an explicit environment, NAT, the Lambdas as a container image, the billing import.
FINANCE_UNIT: dict[str, Any] = {
    "name": "finance", "kind": "full", "account": ACCOUNT, "region": REGION, "vpc_cidr": "10.50.0.0/16",
    "nat_gateways": 1, "api": {"endpoint": "private", "throttle": {"rate": 50, "burst": 100}},
    "teams": [{"team_id": "fpa", "cost_center": "CC-9001", "keys": ["default"], "throttle": {"rate": 5, "burst": 10},
               "quota": {"limit": 1000, "period": "DAY"}, "allowed_models": ["*"]}],
    "transform": {"schedule": "rate(2 hours)", "engine": "glue", "memory_mb": 2048, "timeout_minutes": 10,
                  "glue": {"worker_type": "G.2X", "workers": 4, "timeout_minutes": 90}},
    "lambda_package": "image",
    "billing": {"enabled": True, "payer_account": "210987654321", "export_name": "finance-cur2",
                "schedule": "cron(30 */4 * * ? *)", "include_tax": True},
    "reporting_timezone": "America/New_York", "fiscal_month_start_day": 5,
    "budget_alerts": {"email": ["finops@example.com"], "https": ["https://hooks.example.com/modelmeter/budget"]},
    "quicksight": {"enabled": True,
                   "principals": [f"arn:aws:quicksight:{REGION}:{ACCOUNT}:group/default/finance-admins"],
                   "rls_principals": {f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/fpa-lead": ["fpa"]}},
}
LAYER_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:modelmeter-deps:3"


@dataclass
class Assembly:
    """A synthesized app: its output folder, config and templates by stack name."""

    outdir: Path
    config: DeploymentConfig | None
    templates: dict[str, dict[str, Any]]

    def template(self, stack_name: str) -> Template:
        return Template.from_json(self.templates[stack_name])

    def resources(self, stack_name: str, cfn_type: str) -> list[dict[str, Any]]:
        """Every resource of a type (properties and all), without caring about logical ids."""
        return [r for r in self.templates[stack_name]["Resources"].values() if r["Type"] == cfn_type]


def _read_templates(outdir: Path) -> dict[str, dict[str, Any]]:
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in outdir.glob("*.template.json")}


def sample_data() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Assembly:
    from infra.nag import new_app
    from infra.stacks.unit import build_units

    data = sample_data()
    data["units"].append(copy.deepcopy(FINANCE_UNIT))
    config = parse_config(data, source="test config")
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = new_app(outdir=str(outdir), cloudformation_validation=False)  # cfn-lint checks the same templates
    build_units(app, config, content=CONTENT)
    app.synth()  # raises if cdk-nag reports an unacknowledged finding
    return Assembly(outdir=outdir, config=config, templates=_read_templates(outdir))


@pytest.fixture(scope="session")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Assembly:
    from tests.infra.bare_stacks import build_bare_stacks

    outdir = tmp_path_factory.mktemp("bare.out")
    app = App(outdir=str(outdir), context=FEATURE_FLAGS, builtin_cloud_formation_validation=False)
    build_bare_stacks(app)
    app.synth()
    return Assembly(outdir=outdir, config=None, templates=_read_templates(outdir))


Finding = tuple[str, str]  # (construct path, cdk-nag rule)


def nag_findings_and_acknowledgments(data: dict[str, Any], outdir: Path) -> tuple[set[Finding], set[Finding]]:
    """Synthesize the units of ``data`` with cdk-nag's acknowledgments only recorded, not applied: what cdk-nag
    then reports, and what the acknowledgments name (the synth must fail, since it reports them)."""
    app = App(outdir=str(outdir), context={**FEATURE_FLAGS, RECORD_ONLY_CONTEXT: True},
              builtin_cloud_formation_validation=False)
    add_checks(app)
    build_units(app, parse_config(data), content=CONTENT)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((outdir / "validation-report.json").read_text())
    findings = {(where["constructPath"], v["ruleName"]) for plugin in report["pluginReports"]
                for v in plugin["violations"] for where in v["violatingConstructs"]}
    acknowledged = {(node.node.path, entry.data["rule"]) for node in app.node.find_all()
                    for entry in node.node.metadata if entry.type == ACKNOWLEDGMENT_METADATA}
    return findings, acknowledged


def excuses(ack: Finding, finding: Finding) -> bool:
    """An acknowledgment on a construct excuses its rule there and below it."""
    return ack[1] == finding[1] and (finding[0] == ack[0] or finding[0].startswith(ack[0] + "/"))
