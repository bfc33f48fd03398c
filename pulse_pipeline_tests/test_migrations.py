"""Migrations: `pulse-pipeline db upgrade` only adds what PULSE's database lacks."""

import datetime as dt
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pulse_pipeline.cli import main
from pulse_pipeline.costs import AMOUNT_LIMIT, AMOUNT_PLACES
from pulse_pipeline.db.migrate import current_revision, head_revision, upgrade
from pulse_pipeline.db.schema import UNIQUE_COST_KEY, cost_record, metadata
from pulse_pipeline.db.urls import create_pulse_engine

PASSWORD = "s3cret-pw"
HEAD = "0007"

# The PULSE app's tables before pulse_pipeline: an older CloudAccount and a seed-format
# CostRecord, as Prisma creates them (quoted camelCase identifiers).
OLD_PULSE_DDL = [
    """
    CREATE TABLE "CloudAccount" (
        "id" TEXT NOT NULL,
        "orgId" TEXT NOT NULL,
        "provider" TEXT NOT NULL,
        "accountName" TEXT NOT NULL,
        "connectionType" TEXT NOT NULL,
        "roleArn" TEXT,
        "externalId" TEXT,
        "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updatedAt" TIMESTAMP(3) NOT NULL,
        CONSTRAINT "CloudAccount_pkey" PRIMARY KEY ("id")
    )
    """,
    """
    CREATE TABLE "CostRecord" (
        "id" TEXT NOT NULL,
        "orgId" TEXT NOT NULL,
        "date" DATE NOT NULL,
        "provider" TEXT NOT NULL,
        "service" TEXT NOT NULL,
        "amountEUR" DECIMAL(65,30) NOT NULL,
        "currency" TEXT NOT NULL,
        CONSTRAINT "CostRecord_pkey" PRIMARY KEY ("id")
    )
    """,
    'CREATE INDEX "CostRecord_orgId_date_idx" ON "CostRecord" ("orgId", "date")',
    """
    INSERT INTO "CloudAccount" ("id", "orgId", "provider", "accountName", "connectionType",
        "roleArn", "externalId", "createdAt", "updatedAt")
    VALUES
        ('ca_1', 'org_1', 'aws', 'Production', 'role',
         'arn:aws:iam::123456789012:role/pulse', 'ext-1',
         '2024-05-01 10:00:00', '2024-05-02 11:00:00'),
        ('ca_2', 'org_1', 'gcp', 'Data', 'manual', NULL, NULL,
         '2024-05-03 12:00:00', '2024-05-03 12:00:00')
    """,
    """
    INSERT INTO "CostRecord" ("id", "orgId", "date", "provider", "service", "amountEUR",
        "currency")
    VALUES
        ('cr_1', 'org_1', '2024-06-01', 'aws', 'Amazon EC2', 12.5, 'EUR'),
        ('cr_2', 'org_1', '2024-06-01', 'aws', 'Amazon S3', 0.25, 'EUR'),
        ('cr_3', 'org_1', '2024-06-02', 'gcp', 'BigQuery', 3.75, 'EUR')
    """,
]

OLD_COLUMNS = {
    "CloudAccount": [
        "id", "orgId", "provider", "accountName", "connectionType", "roleArn", "externalId",
        "createdAt", "updatedAt",
    ],
    "CostRecord": ["id", "orgId", "date", "provider", "service", "amountEUR", "currency"],
}  # fmt: skip


def _snapshot(database_url: str) -> dict[str, Any]:
    """Every table's columns (name, type, nullability) and indexes/unique keys."""
    engine = create_pulse_engine(database_url)
    try:
        inspector = sa.inspect(engine)
        snapshot: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            columns = [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ]
            indexes = sorted(
                (str(i["name"]), tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            )
            uniques = sorted(
                (str(u["name"]), tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            )
            snapshot[table] = {"columns": columns, "indexes": indexes, "uniques": uniques}
        return snapshot
    finally:
        engine.dispose()


def _rows(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_pulse_engine(database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def _old_rows(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The pre-existing rows, in the pre-existing columns only, as the database returns them."""
    engine = create_pulse_engine(database_url)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as connection:
            for table, columns in OLD_COLUMNS.items():
                query = sa.table(table, *map(sa.column, columns)).select().order_by(sa.text("1"))
                rows[table] = [tuple(row) for row in connection.execute(query)]
    finally:
        engine.dispose()
    return rows


def _create_old_pulse_database(database_url: str) -> None:
    engine = create_pulse_engine(database_url)
    try:
        with engine.begin() as connection:
            for statement in OLD_PULSE_DDL:
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def _index_names(snapshot: dict[str, Any], table: str) -> set[str]:
    return {name for name, *_ in snapshot[table]["indexes"] + snapshot[table]["uniques"]}


def _postgres_url(server_db: str, schema: str, password: str | None = None) -> str:
    url = make_url(server_db)
    if password is not None:
        url = url.set(password=password)
    return f"{url.render_as_string(hide_password=False)}?schema={schema}"


def test_upgrade_creates_all_tables(database_url: str) -> None:
    upgrade(database_url)

    snapshot = _snapshot(database_url)
    assert set(snapshot) == {table.name for table in metadata.sorted_tables} | {"alembic_version"}
    for table in metadata.sorted_tables:
        columns = [name for name, _, _ in snapshot[table.name]["columns"]]
        assert columns == [column.name for column in table.columns], table.name
    assert {UNIQUE_COST_KEY, "CostRecord_orgId_date_idx"} <= _index_names(snapshot, "CostRecord")
    assert "CloudAccount_provider_connectionType_idx" in _index_names(snapshot, "CloudAccount")
    assert _rows(database_url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert current_revision(database_url) == HEAD


def test_version_table_lands_in_the_prisma_schema(postgres_database: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    database_url = _postgres_url(postgres_database, schema)

    upgrade(database_url)

    located = _rows(
        database_url,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN (:schema, 'public') "
        "AND table_name IN ('alembic_version', 'CostRecord') ORDER BY table_name",
        schema=schema,
    )
    assert located == [(schema, "CostRecord"), (schema, "alembic_version")]


def test_upgrade_creates_a_missing_prisma_schema(postgres_database: str) -> None:
    schema = f"NewSchema_{uuid.uuid4().hex[:8]}"
    database_url = _postgres_url(postgres_database, schema)

    upgrade(database_url)

    # Case kept, as Prisma quotes the schema name too.
    located = _rows(
        database_url,
        "SELECT table_schema FROM information_schema.tables "
        "WHERE table_name = 'alembic_version' AND table_schema = :schema",
        schema=schema,
    )
    assert located == [(schema,)]
    assert current_revision(database_url) == HEAD
    assert "CostRecord" in _snapshot(database_url)


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    upgrade(database_url)
    first = _snapshot(database_url)

    upgrade(database_url)

    assert _snapshot(database_url) == first
    assert _rows(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_upgrade_completes_an_existing_pulse_database(database_url: str) -> None:
    _create_old_pulse_database(database_url)
    rows_before = _old_rows(database_url)
    assert len(rows_before["CloudAccount"]) == 2
    assert len(rows_before["CostRecord"]) == 3

    upgrade(database_url)

    snapshot = _snapshot(database_url)
    for table in metadata.sorted_tables:
        columns = {name for name, _, _ in snapshot[table.name]["columns"]}
        assert {column.name for column in table.columns} <= columns, table.name
    # Columns only PULSE knows about are kept.
    assert "updatedAt" in {name for name, _, _ in snapshot["CloudAccount"]["columns"]}
    # The pre-existing rows are unchanged.
    assert _old_rows(database_url) == rows_before
    assert _rows(database_url, 'SELECT "status" FROM "CloudAccount"') == [("pending",)] * 2
    assert (
        _rows(
            database_url,
            'SELECT "cloudAccountId", "amount", "fxRate", "lastSyncedAt" IS NULL '
            'FROM "CostRecord" JOIN "CloudAccount" USING ("orgId") WHERE "CloudAccount"."id" = '
            "'ca_1'",
        )
        == [(None, None, None, True)] * 3
    )

    indexes = snapshot["CostRecord"]["indexes"]
    key = ("cloudAccountId", "date", "linkedAccountId", "service", "recordType")
    assert (UNIQUE_COST_KEY, key, True) in indexes
    # The index PULSE already had is not created twice.
    assert [i for i in indexes if i[1] == ("orgId", "date")] == [
        ("CostRecord_orgId_date_idx", ("orgId", "date"), False)
    ]
    assert "CloudAccount_provider_connectionType_idx" in _index_names(snapshot, "CloudAccount")

    # A second upgrade changes nothing.
    upgrade(database_url)
    assert _snapshot(database_url) == snapshot
    assert _old_rows(database_url) == rows_before


def test_unique_index_added_to_an_existing_database_is_enforced(database_url: str) -> None:
    _create_old_pulse_database(database_url)
    upgrade(database_url)

    row = {
        "orgId": "org_1",
        "cloudAccountId": "ca_1",
        "date": dt.date(2024, 6, 3),
        "provider": "aws",
        "service": "Amazon EC2",
        "recordType": "Usage",
        "linkedAccountId": "111111111111",
        "amount": Decimal("10.00"),
        "currency": "USD",
        "amountEUR": Decimal("9.25"),
    }
    engine = create_pulse_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.insert(cost_record).values(id="cr_new_1", **row))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(sa.insert(cost_record).values(id="cr_new_2", **row))
        with engine.connect() as connection:
            amount = connection.execute(
                sa.select(cost_record.c.amountEUR).where(cost_record.c.id == "cr_new_1")
            ).scalar_one()
    finally:
        engine.dispose()
    assert amount == Decimal("9.25")


def test_cli_upgrade_never_prints_the_password(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    database_url = _postgres_url(postgres_database, schema, password=PASSWORD)

    assert main(["db", "upgrade", "--database-url", database_url]) == 0

    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 1
    assert "***" in lines[0]
    assert f"schema={schema}" in lines[0]
    assert HEAD in lines[0]
    assert current_revision(database_url) == HEAD


def test_cli_failure_never_prints_the_password(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing_db = make_url(postgres_database).set(database=f"missing_{uuid.uuid4().hex[:8]}")
    database_url = _postgres_url(missing_db.render_as_string(hide_password=False), "public")
    database_url = database_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in database_url

    assert main(["db", "upgrade", "--database-url", database_url]) == 1

    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert "failed" in captured.err


def test_cli_takes_the_url_from_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")

    assert main(["db", "upgrade"]) == 0

    assert "env.db" in capsys.readouterr().out
    assert current_revision(f"sqlite:///{tmp_path / 'env.db'}") == HEAD


def test_cli_without_a_database_url_refuses_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)

    assert main(["db", "upgrade"]) == 1

    assert "DATABASE_URL" in capsys.readouterr().err
    assert list(tmp_path.rglob("*.db")) == []


def test_cli_requires_a_command() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "pulse-pipeline"
    assert script.exists(), "console script missing: run `uv sync --frozen --extra dev`"
    database_url = f"sqlite:///{tmp_path / 'script.db'}"

    result = subprocess.run(
        [str(script), "db", "upgrade", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Upgraded sqlite:///")
    assert current_revision(database_url) == HEAD


def test_upgrade_from_the_three_column_key_keeps_rows_and_allows_charge_types(
    database_url: str,
) -> None:
    """A database at revision 0001 had the unique key (cloudAccountId, date, service)."""
    ddl = OLD_PULSE_DDL[1].replace(
        '"currency" TEXT NOT NULL,',
        '"currency" TEXT NOT NULL, "cloudAccountId" TEXT, CONSTRAINT '
        '"CostRecord_cloudAccountId_date_service_key" UNIQUE ("cloudAccountId", "date", "service"),',
    )
    engine = create_pulse_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(ddl))
            connection.execute(sa.text(OLD_PULSE_DDL[4]))
    finally:
        engine.dispose()
    before = _rows(database_url, 'SELECT id, "amountEUR" FROM "CostRecord" ORDER BY id')

    upgrade(database_url)

    snapshot = _snapshot(database_url)
    assert "CostRecord_cloudAccountId_date_service_key" not in _index_names(snapshot, "CostRecord")
    assert UNIQUE_COST_KEY in _index_names(snapshot, "CostRecord")
    assert _rows(database_url, 'SELECT id, "amountEUR" FROM "CostRecord" ORDER BY id') == before
    row = {"orgId": "o", "cloudAccountId": "ca", "date": dt.date(2024, 6, 3), "provider": "AWS",
           "service": "Amazon EC2", "currency": "USD", "amountEUR": Decimal("1")}  # fmt: skip
    engine = create_pulse_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.insert(cost_record).values(id="u", recordType="Usage", **row))
            connection.execute(sa.insert(cost_record).values(id="t", recordType="Tax", **row))
    finally:
        engine.dispose()


def test_the_money_columns_hold_every_amount_the_normaliser_stores(database_url: str) -> None:
    """normalise rounds amounts to AMOUNT_PLACES and rejects those of AMOUNT_LIMIT or more: the
    exact range of NUMERIC(28,10), so no migration widens them and nothing is rounded again."""
    for name in ("amount", "amountEUR", "fxRate"):
        column_type = cost_record.c[name].type
        assert (column_type.precision, column_type.scale) == (28, 10), name
    assert AMOUNT_PLACES == Decimal(10) ** -10 and AMOUNT_LIMIT == Decimal(10) ** (28 - 10)
    upgrade(database_url)
    extremes = [
        Decimal("999999999999999999.9999999999"),
        Decimal("-999999999999999999.9999999999"),
        Decimal("0.0000000001"),
        Decimal("-0.0000000001"),
        Decimal("0E-10"),
    ]
    row = {"orgId": "o", "cloudAccountId": "ca", "provider": "AWS", "service": "S",
           "currency": "USD", "recordType": "Usage"}  # fmt: skip
    engine = create_pulse_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(cost_record),
                [
                    {
                        **row,
                        "id": f"r{n}",
                        "date": dt.date(2026, 1, n + 1),
                        "amount": value,
                        "amountEUR": value,
                        "fxRate": value,
                    }
                    for n, value in enumerate(extremes)
                ],
            )
        with engine.connect() as connection:
            stored = connection.execute(
                sa.select(
                    cost_record.c.amount, cost_record.c.amountEUR, cost_record.c.fxRate
                ).order_by(cost_record.c.id)
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in stored] == [(value,) * 3 for value in extremes]
    if database_url.startswith("postgresql"):
        columns = _rows(
            database_url,
            "SELECT column_name, numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_name = 'CostRecord' AND table_schema = current_schema() "
            "AND column_name IN ('amount', 'amountEUR', 'fxRate') ORDER BY column_name",
        )
        assert columns == [("amount", 28, 10), ("amountEUR", 28, 10), ("fxRate", 28, 10)]


def test_rows_stored_before_linked_accounts_get_the_roles_own_account(database_url: str) -> None:
    _create_old_pulse_database(database_url)
    upgrade(database_url)
    engine = create_pulse_engine(database_url)
    try:
        with engine.begin() as connection:
            # What a database at revision 0005 holds: a synced row without a linked account.
            connection.execute(
                sa.insert(cost_record).values(
                    id="cr_synced",
                    orgId="org_1",
                    cloudAccountId="ca_1",
                    date=dt.date(2024, 6, 3),
                    provider="AWS",
                    service="Amazon EC2",
                    recordType="Usage",
                    currency="USD",
                    amount=Decimal("10"),
                    amountEUR=Decimal("9.25"),
                )
            )
            connection.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    finally:
        engine.dispose()

    upgrade(database_url)

    assert _rows(
        database_url,
        'SELECT "linkedAccountId", "linkedAccountName" FROM "CostRecord" WHERE "id" = :id',
        id="cr_synced",
    ) == [("123456789012", None)]
    assert _rows(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
