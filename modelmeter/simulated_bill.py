"""A SIMULATED AWS bill: CUR 2.0 files written as AWS Data Exports writes them, for the demo and the tests.

Nothing here talks to AWS. :func:`write_cur` writes lines with CUR 2.0's real column names and types — Parquet with
``product`` / ``resource_tags`` / ``cost_category`` as ``map<string,string>``, ``discount`` as
``map<string,double>``, timestamps without zone (UTC), costs as DOUBLE; or gzip CSV with the maps as JSON text —
and :func:`simulate_period` turns a lake's own metered traffic into a month's bill with the deviations a real bill
has (a private-pricing discount on one model, a credit, provisioned throughput billed by the hour, usage that
bypassed the gateway, tax).
"""

from __future__ import annotations

import csv
import gzip
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from common.contracts import COST_OF, DIMENSION_OF
from common.lake import Lake
from finance.reconcile import period_days
from finance.usage_types import usage_type_of
from pricing_catalog import Catalog
from sql.config import ReportingConfig
from sql.render import connect

ACCOUNT = "123456789012"
_STRING_COLUMNS = (
    "identity_line_item_id", "identity_time_interval", "bill_invoice_id", "bill_invoicing_entity",
    "bill_billing_entity", "bill_bill_type", "bill_payer_account_id", "line_item_usage_account_id",
    "line_item_line_item_type", "line_item_product_code", "line_item_usage_type", "line_item_operation",
    "line_item_availability_zone", "line_item_resource_id", "line_item_currency_code", "line_item_unblended_rate",
    "line_item_net_unblended_rate", "line_item_line_item_description", "line_item_legal_entity",
    "line_item_iam_principal", "pricing_unit", "pricing_term", "product_region_code", "product_servicecode",
)
_TIME_COLUMNS = ("bill_billing_period_start_date", "bill_billing_period_end_date", "line_item_usage_start_date",
                 "line_item_usage_end_date")
_DOUBLE_COLUMNS = ("line_item_usage_amount", "line_item_unblended_cost", "line_item_net_unblended_cost",
                   "line_item_blended_cost", "pricing_public_on_demand_cost")
_MAP_COLUMNS = ("product", "resource_tags", "cost_category")


def cur_schema(*, with_net: bool = True) -> pa.Schema:
    """The CUR 2.0 columns this writer fills, with AWS's types (a real export has more; readers ignore them)."""
    fields = [pa.field(c, pa.string()) for c in _STRING_COLUMNS]
    fields += [pa.field(c, pa.timestamp("ms")) for c in _TIME_COLUMNS]
    fields += [pa.field(c, pa.float64()) for c in _DOUBLE_COLUMNS
               if with_net or c != "line_item_net_unblended_cost"]
    fields += [pa.field(c, pa.map_(pa.string(), pa.string())) for c in _MAP_COLUMNS]
    fields.append(pa.field("discount", pa.map_(pa.string(), pa.float64())))
    if not with_net:
        fields = [f for f in fields if f.name != "line_item_net_unblended_rate"]
    return pa.schema(fields)


def line(*, period: str, usage_type: str, amount: Decimal | float, cost: Decimal | float, start: datetime,
         end: datetime | None = None, line_type: str = "Usage", product_code: str = "AmazonBedrock",
         operation: str = "InvokeModelInference", region: str | None = "us-east-1", pricing_unit: str = "1K tokens",
         resource_id: str | None = None, tags: dict[str, str] | None = None, net_cost: Decimal | float | None = None,
         invoice_id: str | None = None, description: str = "", currency: str = "USD") -> dict[str, Any]:
    """One CUR 2.0 line (Python values; :func:`write_cur` types them as AWS does)."""
    first, last = period_days(period)
    period_start = datetime(first.year, first.month, first.day)
    period_end = datetime(last.year, last.month, last.day) + timedelta(days=1)
    start = start.replace(tzinfo=None)
    end = (end or start + timedelta(hours=1)).replace(tzinfo=None)
    return {
        "identity_line_item_id": uuid.uuid4().hex, "identity_time_interval":
            f"{period_start:%Y-%m-%dT%H:%M:%SZ}/{period_end:%Y-%m-%dT%H:%M:%SZ}",
        "bill_invoice_id": invoice_id, "bill_invoicing_entity": "Amazon Web Services, Inc.",
        "bill_billing_entity": "AWS", "bill_bill_type": "Anniversary", "bill_payer_account_id": ACCOUNT,
        "bill_billing_period_start_date": period_start, "bill_billing_period_end_date": period_end,
        "line_item_usage_account_id": ACCOUNT, "line_item_line_item_type": line_type,
        "line_item_usage_start_date": start, "line_item_usage_end_date": end,
        "line_item_product_code": product_code, "line_item_usage_type": usage_type,
        "line_item_operation": operation, "line_item_availability_zone": None, "line_item_resource_id": resource_id,
        "line_item_usage_amount": float(amount), "line_item_currency_code": currency,
        "line_item_unblended_rate": None, "line_item_unblended_cost": float(cost),
        "line_item_net_unblended_rate": None,
        "line_item_net_unblended_cost": float(net_cost if net_cost is not None else cost),
        "line_item_blended_cost": float(cost), "pricing_public_on_demand_cost": float(cost),
        "line_item_line_item_description": description, "line_item_legal_entity": "Amazon Web Services, Inc.",
        "line_item_iam_principal": None, "pricing_unit": pricing_unit, "pricing_term": "OnDemand",
        "product_region_code": region, "product_servicecode": product_code,
        "product": {"region": region, "product_name": "Amazon Bedrock"} if region else {"product_name": "Bedrock"},
        "resource_tags": tags or {}, "cost_category": {}, "discount": {},
    }


def write_cur(lines: list[dict[str, Any]], path: Path, *, fmt: str = "parquet", with_net: bool = True) -> Path:
    """Write ``lines`` as one CUR 2.0 export file: ``parquet`` or ``csv.gz`` (AWS's two formats)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = cur_schema(with_net=with_net)
    if fmt == "parquet":
        rows = [{k: (list(v.items()) if isinstance(v, dict) else v) for k, v in li.items() if k in schema.names}
                for li in lines]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        return path
    with gzip.open(path, "wt", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(schema.names)
        for li in lines:
            writer.writerow([_csv_cell(li.get(c)) for c in schema.names])
    return path


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%dT%H:%M:%SZ}"
    if isinstance(value, dict):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


# --- a month's bill from the lake's own traffic ----------------------------------------------------------------

@dataclass(frozen=True)
class Deviations:
    """What makes the simulated bill differ from list price, as real bills do."""

    discounted_model: str | None = None  # catalog model id billed at a private-pricing discount
    discount: Decimal = Decimal("0.15")
    credit: Decimal = Decimal("-25")
    provisioned_hours: int = 48  # model-unit hours of one provisioned-throughput model, billed by the hour
    provisioned_rate: Decimal = Decimal("21.18")
    bypass_share: Decimal = Decimal("0.03")  # extra usage on one model that never went through the gateway
    bypass_model: str | None = None
    tax_rate: Decimal = Decimal("0.08")


def simulate_period(*, lake: Lake, period: str, catalog: Catalog, deviations: Deviations,
                    region: str = "us-east-1") -> list[dict[str, Any]]:
    """The CUR lines of ``period`` for the lake's metered usage (daily lines), with ``deviations``."""
    first, last = period_days(period)
    con = connect(lake=lake, config=ReportingConfig())
    sums = ", ".join(f"sum({c}) as {c}, sum({cost}) as {cost}" for cost, c in COST_OF.items())
    try:
        rows = con.execute(f"select usage_date, model_id, service_tier, {sums} from usage_cost "
                           f"where usage_date between ? and ? group by all order by all", [first, last]).fetchall()
        names = [d[0] for d in con.description]
    finally:
        con.close()
    lines = []
    for values in rows:
        r = dict(zip(names, values, strict=True))
        model = catalog.resolve(r["model_id"])
        lines += _usage_lines(period, r, model, region, deviations)
    lines += _extra_lines(period, first, lines, deviations, region)
    return lines


def _usage_lines(period: str, r: dict[str, Any], model: str | None, region: str, dev: Deviations
                 ) -> list[dict[str, Any]]:
    start = datetime(r["usage_date"].year, r["usage_date"].month, r["usage_date"].day, tzinfo=UTC)
    out = []
    for cost_column, count in COST_OF.items():
        quantity, cost = r[count] or 0, r[cost_column]
        scope = "global" if (model or "").startswith("global.") else "in_region"
        usage_type = usage_type_of(region=region, model_id=model, dimension=DIMENSION_OF[count],
                                   service_tier=r["service_tier"] or "on_demand", scope=scope) if model else None
        if not quantity or cost is None or usage_type is None:
            continue  # unpriced or unnamed usage: the simulated AWS does not bill what it has no price for
        price = Decimal(1) - dev.discount if model == dev.discounted_model else Decimal(1)
        more = Decimal(1) + dev.bypass_share if model == dev.bypass_model else Decimal(1)  # bypassed the gateway
        images = DIMENSION_OF[count] == "images"
        out.append(line(period=period, usage_type=usage_type, amount=Decimal(quantity) * more / (1 if images else 1000),
                        cost=(cost * price * more).quantize(Decimal("1e-10")), start=start,
                        end=start + timedelta(days=1), region=region, pricing_unit="Images" if images else "1K tokens"))
    return out


def _extra_lines(period: str, first: date, usage: list[dict[str, Any]], dev: Deviations, region: str
                 ) -> list[dict[str, Any]]:
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    total = sum((Decimal(str(li["line_item_unblended_cost"])) for li in usage), Decimal(0))
    extra = [
        line(period=period, usage_type="USE1-Nova2.0Lite-ProvisionedThroughput-NoCommit-ModelUnits",
             amount=dev.provisioned_hours, cost=dev.provisioned_rate * dev.provisioned_hours, start=start,
             end=start + timedelta(days=2), operation="ProvisionedThroughput", pricing_unit="Hrs", region=region,
             resource_id=f"arn:aws:bedrock:{region}:{ACCOUNT}:provisioned-model/abc123demo",
             tags={"user:team": "data-science"}),
        line(period=period, usage_type="", amount=0, cost=dev.credit, start=start, line_type="Credit",
             operation="", pricing_unit="", region=None, description="AWS Activate credit"),
    ]
    taxable = total + dev.provisioned_rate * dev.provisioned_hours + dev.credit
    extra.append(line(period=period, usage_type="", amount=0, cost=(taxable * dev.tax_rate).quantize(
        Decimal("0.01")), start=start, line_type="Tax", operation="", pricing_unit="", region=None,
        description="Tax for product code AmazonBedrock"))
    return extra
