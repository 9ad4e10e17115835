"""Names shared by runtime and infrastructure (one module, imported by both; never spelled twice)."""

from __future__ import annotations

# Environment variables
ENV_LAKE = "MODELMETER_LAKE"
ENV_TENANTS = "MODELMETER_TENANTS"
ENV_BUSINESS_UNIT = "MODELMETER_BUSINESS_UNIT"
ENV_FIREHOSE_STREAM = "MODELMETER_FIREHOSE_STREAM"
ENV_TENANT_TABLE = "MODELMETER_TENANT_TABLE"
ENV_LONGPOLL_TABLE = "MODELMETER_LONGPOLL_TABLE"
ENV_SPOOL_DIR = "MODELMETER_SPOOL_DIR"
#: Usage events the gateway holds in memory while its spool cannot be written, before model calls get 503.
ENV_SPOOL_MAX_BACKLOG = "MODELMETER_SPOOL_MAX_BACKLOG"
#: URL budget alerts are also POSTed to, off the request path (ingest/alerts.py); unset: the lake's alert log only.
ENV_ALERT_WEBHOOK = "MODELMETER_ALERT_WEBHOOK"
#: Seconds between the gateway's listings of the lake's price catalog versions (ingest/pricing.py; default 60).
ENV_PRICING_RELOAD_SECONDS = "MODELMETER_PRICING_RELOAD_SECONDS"

# The gateway as a container (ingest/container.py, deployed by infra/constructs/gateway_container.py).
#: Address and TCP port uvicorn listens on inside the task (default all interfaces; the ALB target group's port).
ENV_HOST = "MODELMETER_HOST"
ENV_PORT = "MODELMETER_PORT"
DEFAULT_CONTAINER_PORT = 8080
#: Seconds in-flight requests may take to finish after SIGTERM (uvicorn's graceful shutdown).
ENV_GRACEFUL_SECONDS = "MODELMETER_GRACEFUL_SECONDS"
#: Seconds the spool may take to drain to Firehose after the server stopped (then the rest stays on the volume).
ENV_DRAIN_SECONDS = "MODELMETER_DRAIN_SECONDS"
#: Seconds a spool segment collects events before it is handed to Firehose (the emitter's flush interval).
ENV_SPOOL_FLUSH_SECONDS = "MODELMETER_SPOOL_FLUSH_SECONDS"
#: Seconds uvicorn keeps an idle client connection open: longer than the load balancer's idle timeout, so the ALB
#: never reuses a connection the task has just closed (a 502).
ENV_KEEPALIVE_SECONDS = "MODELMETER_KEEPALIVE_SECONDS"
#: Gateway metric (namespace METRICS_NAMESPACE): usage events waiting in the spool (the container's alarm reads it).
METRIC_USAGE_EVENTS_SPOOLED = "UsageEventsSpooled"

DEFAULT_LAKE = "./lake"

# Lake layout (DESIGN.md "The lake"): prefixes under the lake root.
RAW_EVENTS = "raw/usage_events"
QUARANTINE_EVENTS = "quarantine/usage_events"
PRICING_CATALOG = "pricing/catalog"
CURATED_USAGE_COST = "curated/usage_cost"
CURATED_TEAM_MODEL_DAILY = "curated/team_model_daily"
RUN_MANIFESTS = "runs/transform"
#: Budget alerts the gateway raised (ingest/alerts.py): ALERTS_FILE in a folder lake, one JSON object per alert under
#: alerts/period=<period>/ on S3; the dashboard reads both.
ALERTS = "alerts"
ALERTS_FILE = "alerts.jsonl"
# The month-end close (DESIGN.md "Finance"): imported AWS bills, and what the close makes of them.
BILLING_CUR = "billing/cur"
CURATED_RECONCILIATION = "curated/reconciliation"
CURATED_CHARGEBACK = "curated/chargeback"
#: Closes and reopenings of billing periods (append-only events), and restatement lines posted into open periods.
CURATED_PERIOD_EVENTS = "curated/period_events"
CURATED_ADJUSTMENTS = "curated/adjustments"

# Table names (Glue, DuckDB views)
TABLE_RAW = "raw_usage_events"
TABLE_QUARANTINE = "quarantine_usage_events"
TABLE_USAGE_COST = "usage_cost"
TABLE_TEAM_MODEL_DAILY = "team_model_daily"
TABLE_CUR_LINES = "cur_lines"
TABLE_RECONCILIATION = "reconciliation"
TABLE_CHARGEBACK = "chargeback"
TABLE_PERIOD_EVENTS = "period_events"
TABLE_ADJUSTMENTS = "chargeback_adjustments"

# Money: DECIMAL(38,12) USD everywhere (DESIGN.md).
MONEY_PRECISION = 38
MONEY_SCALE = 12

# Metrics namespace (Powertools, CloudWatch)
METRICS_NAMESPACE = "modelmeter"
#: POWERTOOLS_SERVICE_NAME of the two Lambdas (the handlers and infra use the same; the alarms select on them).
SERVICE_GATEWAY = "modelmeter-gateway"
SERVICE_TRANSFORM = "modelmeter-transform"

# Reference data written beside the curated tables (team cost centres and budgets, from the tenant registry).
REFERENCE_TEAMS = "reference/teams"

# DynamoDB tables of the gateway (tenant registry, long-poll results): one string partition key and a TTL attribute.
DYNAMO_PARTITION_KEY = "pk"
DYNAMO_TTL_ATTRIBUTE = "expires_at"

# Spend controls in AWS (DESIGN.md "Spend controls"; ingest/spend_dynamo.py, ingest/alerts_aws.py): the gateway's
# fleet-wide counters live in a DynamoDB table of their own (same key and TTL attribute as the tables above), budget
# alerts go to an SNS topic the stack creates and, as an event, to EventBridge.
ENV_SPEND_TABLE = "MODELMETER_SPEND_TABLE"
ENV_ALERT_TOPIC_ARN = "MODELMETER_ALERT_TOPIC_ARN"
#: Name or ARN of the EventBridge bus budget alerts go to (default: the account's default bus).
ENV_ALERT_EVENT_BUS = "MODELMETER_ALERT_EVENT_BUS"
ALERT_EVENT_SOURCE = "modelmeter"
ALERT_EVENT_DETAIL_TYPE = "BudgetThresholdCrossed"
#: Gateway metrics (namespace METRICS_NAMESPACE, dimensions service and business_unit) the spend alarm sums.
METRIC_ALERT_DELIVERY_FAILURES = "BudgetAlertDeliveryFailures"
METRIC_SPEND_STORE_ERRORS = "SpendStoreErrors"

# Reporting (sql/config.py): the time zone days are counted in, and the day fiscal months start on.
ENV_REPORTING_TZ = "MODELMETER_REPORTING_TZ"
ENV_FISCAL_MONTH_START = "MODELMETER_FISCAL_MONTH_START"
#: Calendar month (1-12) in which the fiscal year starts; a fiscal year is named by the calendar year of its last
#: fiscal month (FY2027 starts in July 2026 when this is 7).
ENV_FISCAL_YEAR_START = "MODELMETER_FISCAL_YEAR_START"
#: Which fiscal month a billing period (UTC calendar month) is booked into: the one holding the period's last day
#: (``period_end``, the default) or its first day (``period_start``).
ENV_FISCAL_BOOKING = "MODELMETER_FISCAL_BOOKING"
TABLE_TEAMS = "teams"

# Deployment (infra/ sets these on the Lambdas; the runtime reads them).
#: Comma-separated event providers the AWS bill covers (default bedrock,sagemaker; the demo's lake adds simulator).
ENV_BILLED_PROVIDERS = "MODELMETER_BILLED_PROVIDERS"
ENV_SAGEMAKER_ENDPOINTS = "MODELMETER_SAGEMAKER_ENDPOINTS"  # JSON: model id -> {"endpoint_name", "inference_component"}
ENV_TRANSFORM_ENGINE = "MODELMETER_TRANSFORM_ENGINE"  # duckdb | athena
ENV_ATHENA_WORKGROUP = "MODELMETER_ATHENA_WORKGROUP"
ENV_GLUE_DATABASE = "MODELMETER_GLUE_DATABASE"
#: The Lambda function (name or ARN) a seed async ("streaming: true") call is handed to, invoked asynchronously
#: (ingest/async_worker.py); unset: the gateway function itself (AWS_LAMBDA_FUNCTION_NAME); ASYNC_WORKER_INLINE: the
#: model call runs inside the start's invocation (bounded by API Gateway's 29 s).
ENV_ASYNC_WORKER_FUNCTION = "MODELMETER_ASYNC_WORKER_FUNCTION"
ASYNC_WORKER_INLINE = "inline"

# Metrics the scheduled transform emits (namespace METRICS_NAMESPACE); the quarantine-rate alarm divides them.
METRIC_QUARANTINED_EVENTS = "QuarantinedEvents"
METRIC_CURATED_EVENTS = "CuratedEvents"

# The scheduled billing import (finance/lambda_handler.py, deployed by infra/constructs/billing_import.py): the payer
# account's AWS Data Export (CUR 2.0) delivers under BILLING_EXPORTS/<export name>/ in the lake bucket.
BILLING_EXPORTS = "billing/exports"
ENV_BILLING_EXPORT_NAME = "MODELMETER_BILLING_EXPORT_NAME"
ENV_BILLING_INCLUDE_TAX = "MODELMETER_BILLING_INCLUDE_TAX"  # "true": Tax lines are in the reconciliation's scope
SERVICE_BILLING = "modelmeter-billing"
#: Metric the billing import emits per run (namespace METRICS_NAMESPACE): CUR snapshots it imported.
METRIC_CUR_SNAPSHOTS_IMPORTED = "CurSnapshotsImported"

# The gateway Lambda's durable hand-off (ingest/handoff.py, infra/constructs/usage_handoff.py): the usage events
# Firehose did not take before an invocation ends go to an SQS queue, which a drain Lambda puts into Firehose.
ENV_HANDOFF_QUEUE_URL = "MODELMETER_HANDOFF_QUEUE_URL"
SERVICE_USAGE_DRAIN = "modelmeter-usage-drain"
#: Gateway metrics (dimensions service, business_unit): events sent to the queue; successful calls answered 503
#: because neither Firehose nor the queue took their events.
METRIC_USAGE_EVENTS_HANDED_OFF = "UsageEventsHandedOff"
METRIC_USAGE_NOT_RECORDED = "UsageNotRecorded"
#: Drain metrics (service SERVICE_USAGE_DRAIN): events put into Firehose, and queue messages left for a retry.
METRIC_USAGE_EVENTS_DRAINED = "UsageEventsDrained"
METRIC_HANDOFF_MESSAGES_FAILED = "HandoffMessagesFailed"
#: The hand-off's dead-letter queue (set on the drain): lines that are not usage events are kept aside there.
ENV_HANDOFF_DLQ_URL = "MODELMETER_HANDOFF_DLQ_URL"
#: Seconds each end-of-invocation delivery phase of the gateway Lambda may take (Firehose, then the queue; default 5).
ENV_FLUSH_SECONDS = "MODELMETER_FLUSH_SECONDS"

# The scheduled transform's late data (transforms/lambda_handler.py): days of look-back, late days per run at most.
ENV_LOOKBACK_DAYS = "MODELMETER_TRANSFORM_LOOKBACK_DAYS"
ENV_MAX_LATE_DAYS = "MODELMETER_TRANSFORM_MAX_LATE_DAYS"
