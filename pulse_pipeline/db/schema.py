"""The tables pulse_pipeline touches, described once for queries and migrations.

`CloudAccount` and `CostRecord` belong to the PULSE app (Prisma naming: quoted camelCase).
`SyncRequest` is the contract with the app's "Sync now" and "Test connection" buttons: the app
writes the requests, pulse_pipeline serves them (Prisma naming too). The `pipeline_*` tables
belong to pulse_pipeline.
"""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from pulse_pipeline.db.types import ExactDecimal

metadata = MetaData()

# One CostRecord per account, day, linked AWS account, service and AWS record type (charge type).
UNIQUE_COST_KEY = "CostRecord_account_date_linkedAccount_service_recordType_key"
# The key before linked accounts (migration 0006 replaces it).
UNIQUE_COST_KEY_BEFORE_LINKED_ACCOUNTS = "CostRecord_cloudAccountId_date_service_recordType_key"

JsonDocument = JSON().with_variant(JSONB(), "postgresql")

cloud_account = Table(
    "CloudAccount",
    metadata,
    Column("id", Text, primary_key=True),
    Column("orgId", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("accountName", Text, nullable=False),
    Column("connectionType", Text, nullable=False),
    Column("roleArn", Text),
    Column("externalId", Text),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("lastSyncedAt", DateTime(timezone=False)),
    Column("lastSyncError", Text),
    Column("createdAt", DateTime(timezone=False), nullable=False, server_default=func.now()),
    Index("CloudAccount_provider_connectionType_idx", "provider", "connectionType"),
)

cost_record = Table(
    "CostRecord",
    metadata,
    Column("id", Text, primary_key=True),
    Column("orgId", Text, nullable=False),
    Column("cloudAccountId", Text),
    Column("date", Date, nullable=False),
    Column("provider", Text, nullable=False),
    Column("service", Text, nullable=False),
    Column("amount", ExactDecimal()),
    Column("currency", String(3), nullable=False),
    Column("fxRate", ExactDecimal()),
    Column("fxRateDate", Date),
    Column("fxProvisional", Boolean),
    Column("amountEUR", ExactDecimal(), nullable=False),
    Column("estimated", Boolean),
    Column("recordType", Text),
    Column("chargeCategory", Text),
    Column("metric", Text),
    Column("rawPageId", Integer),
    Column("createdAt", DateTime(timezone=False), nullable=False, server_default=func.now()),
    # FOCUS's cost columns in `currency`, each from its Cost Explorer metric (aws/metrics.py).
    Column("billedCost", ExactDecimal()),
    Column("effectiveCost", ExactDecimal()),
    Column("contractedCost", ExactDecimal()),
    # The AWS account that incurred the cost (Cost Explorer's LINKED_ACCOUNT) and its name.
    Column("linkedAccountId", Text),
    Column("linkedAccountName", Text),
    Index(
        UNIQUE_COST_KEY,
        "cloudAccountId",
        "date",
        "linkedAccountId",
        "service",
        "recordType",
        unique=True,
    ),
    Index("CostRecord_orgId_linkedAccountId_idx", "orgId", "linkedAccountId"),
    Index("CostRecord_orgId_date_idx", "orgId", "date"),
)

cost_explorer_page = Table(
    "pipeline_cost_explorer_page",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cloud_account_id", Text, nullable=False),
    Column("aws_account_id", String(12), nullable=False),
    Column("run_id", Text, nullable=False),
    Column("window_start", Date, nullable=False),
    Column("window_end", Date, nullable=False),
    Column("page_number", Integer, nullable=False),
    Column("request", JsonDocument, nullable=False),
    Column("response", JsonDocument, nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "cloud_account_id", "page_number"),
    Index("pipeline_cost_explorer_page_account_idx", "cloud_account_id", "fetched_at"),
)

fx_rate = Table(
    "pipeline_fx_rate",
    metadata,
    Column("currency", String(3), primary_key=True),
    Column("rate_date", Date, primary_key=True),
    Column("rate", ExactDecimal(), nullable=False),
    Column("source", Text, nullable=False),
)

sync_request = Table(
    "SyncRequest",
    metadata,
    Column("id", Text, primary_key=True),
    Column("orgId", Text, nullable=False),
    Column("cloudAccountId", Text),
    Column("kind", Text, nullable=False, server_default="sync"),
    Column("startDate", Date),
    Column("endDate", Date),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("requestedAt", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("startedAt", DateTime(timezone=True)),
    Column("finishedAt", DateTime(timezone=True)),
    Column("retryAfterSeconds", Integer),
    Column("result", JsonDocument),
    Column("error", Text),
    Column("runId", Text),
    # The sensor reads the queue oldest first; the rate limit reads an organisation's launches.
    Index("SyncRequest_status_requestedAt_idx", "status", "requestedAt"),
    Index("SyncRequest_orgId_kind_startedAt_idx", "orgId", "kind", "startedAt"),
)
