"""Account connection checks, DATABASE_URL handling, and redaction of error text."""

import re
from dataclasses import replace
from datetime import datetime

import dagster as dg
import pytest

from pulse_pipeline.accounts import (
    MAX_PARTITION_KEY_BYTES,
    REFUSED_SUBSTRINGS,
    CloudAccount,
    SyncError,
    partition_key_problem,
)
from pulse_pipeline.aws.connection import (
    AwsConnection,
    connection_for,
    covering_account,
    shares_external_id,
)
from pulse_pipeline.db.urls import DatabaseUrlError, redacted, to_sqlalchemy_url
from pulse_pipeline.sync_status import redact

ROLE_ARN = "arn:aws:iam::123456789012:role/PulseCostReader"
EXTERNAL_ID = "ext-Secret_4711"


def _account(
    role_arn: str | None = ROLE_ARN,
    external_id: str | None = EXTERNAL_ID,
    account_id: str = "clacct01",
) -> CloudAccount:
    return CloudAccount(
        id=account_id,
        org_id="org1",
        name="Acme Prod",
        provider="AWS",
        connection_type="ROLE",
        role_arn=role_arn,
        external_id=external_id,
        status="active",
    )


def _rejected(account: CloudAccount) -> str:
    with pytest.raises(SyncError) as caught:
        connection_for(account)
    message = str(caught.value)
    assert message.startswith("CloudAccount clacct01 (Acme Prod)")
    assert caught.value.retryable is False
    if account.external_id and len(account.external_id) >= 4:
        assert account.external_id not in message
    return message


# --- connection_for ----------------------------------------------------------------------


def test_valid_account_gives_a_connection_with_the_aws_account_id() -> None:
    connection = connection_for(_account())
    assert connection.aws_account_id == "123456789012"
    assert connection.role_arn == ROLE_ARN
    assert connection.external_id == EXTERNAL_ID
    assert connection.account.id == "clacct01"


@pytest.mark.parametrize(
    ("arn", "account_id"),
    [
        ("arn:aws:iam::000000000042:role/service-role/path/Pulse+Reader=1,x.y@z-w", "000000000042"),
        ("arn:aws-cn:iam::210987654321:role/Pulse", "210987654321"),
        ("arn:aws-us-gov:iam::111122223333:role/Pulse", "111122223333"),
    ],
)
def test_role_arns_with_paths_and_other_partitions_are_accepted(arn: str, account_id: str) -> None:
    assert connection_for(_account(role_arn=arn)).aws_account_id == account_id


@pytest.mark.parametrize("arn", [None, ""])
def test_missing_role_arn_is_rejected(arn: str | None) -> None:
    assert "no IAM role ARN" in _rejected(_account(role_arn=arn))


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::12345678901:role/Pulse",  # 11 digits
        "arn:aws:iam::1234567890123:role/Pulse",  # 13 digits
        "arn:aws:iam::12345678901a:role/Pulse",
        "arn:aws:iam::123456789012:user/Pulse",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/Pulse Reader",
        "arn:aws-xx:iam::123456789012:role/Pulse",
        "arn:azure:iam::123456789012:role/Pulse",
        "arn:aws:sts::123456789012:role/Pulse",
        "arn:aws:iam:us-east-1:123456789012:role/Pulse",
        "123456789012",
        "PulseCostReader",
        " arn:aws:iam::123456789012:role/Pulse",
    ],
)
def test_malformed_role_arns_are_rejected(arn: str) -> None:
    assert "malformed IAM role ARN" in _rejected(_account(role_arn=arn))


@pytest.mark.parametrize("external_id", [None, ""])
def test_missing_external_id_is_rejected(external_id: str | None) -> None:
    assert "no external ID" in _rejected(_account(external_id=external_id))


@pytest.mark.parametrize(
    "external_id", ["Q", "a" * 1225, "has space", "tab\there", "quote'd", "semi;colon", "star*"]
)
def test_external_ids_aws_would_reject_are_rejected(external_id: str) -> None:
    assert "external ID AWS would reject" in _rejected(_account(external_id=external_id))


@pytest.mark.parametrize(
    "external_id", ["ab", "a" * 1224, "A-z_0+9=,.@:/-", "arn:aws:iam::123456789012:root"]
)
def test_external_ids_aws_accepts_are_accepted(external_id: str) -> None:
    assert connection_for(_account(external_id=external_id)).external_id == external_id


def test_external_id_with_trailing_newline_is_rejected() -> None:
    _rejected(_account(external_id="pasted-external-id\n"))


def test_role_arn_with_trailing_newline_is_rejected() -> None:
    _rejected(_account(role_arn=ROLE_ARN + "\n"))


SESSION_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")


@pytest.mark.parametrize(
    ("account_id", "expected"),
    [
        ("clacct01", "pulse-clacct01"),
        ("a b/c:d#e", "pulse-a-b-c-d-e"),
        ("x", "pulse-x"),
        ("", "pulse-"),
        ("k" * 100, "pulse-" + "k" * 58),
        ("user@example.com,+=_.", "pulse-user@example.com,+=_."),
    ],
)
def test_role_session_name_is_safe_for_aws(account_id: str, expected: str) -> None:
    name = connection_for(_account(account_id=account_id)).role_session_name
    assert name == expected
    assert SESSION_NAME.fullmatch(name)
    assert name.startswith("pulse-")


def test_reprs_never_show_the_external_id() -> None:
    account = _account()
    connection = connection_for(account)
    for text in (repr(account), str(account), repr(connection), str(connection)):
        assert EXTERNAL_ID not in text
    # ...but they still say which account and role they are.
    assert "clacct01" in repr(connection)
    assert ROLE_ARN in repr(connection)


def test_from_row_maps_pulse_columns() -> None:
    row = {
        "id": "clacct01",
        "orgId": "org1",
        "accountName": "Acme Prod",
        "provider": "AWS",
        "connectionType": "ROLE",
        "roleArn": ROLE_ARN,
        "externalId": EXTERNAL_ID,
    }
    account = CloudAccount.from_row(row)
    assert account == CloudAccount(
        "clacct01", "org1", "Acme Prod", "AWS", "ROLE", ROLE_ARN, EXTERNAL_ID, None
    )
    assert account.label == "CloudAccount clacct01 (Acme Prod)"
    assert isinstance(connection_for(account), AwsConnection)


# --- DATABASE_URL ------------------------------------------------------------------------


def test_prisma_url_becomes_psycopg_url_with_schema() -> None:
    url, schema = to_sqlalchemy_url(
        "postgresql://u:p@h:5432/db?schema=public&sslmode=require&connection_limit=5"
    )
    assert url.drivername == "postgresql+psycopg"
    assert schema == "public"
    assert dict(url.query) == {"sslmode": "require"}
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u",
        "p",
        "h",
        5432,
        "db",
    )


def test_prisma_url_without_schema() -> None:
    url, schema = to_sqlalchemy_url("postgresql://u:p@h:5432/db")
    assert url.drivername == "postgresql+psycopg"
    assert schema is None
    assert dict(url.query) == {}


def test_postgres_scheme_is_accepted() -> None:
    url, schema = to_sqlalchemy_url("postgres://u:p@h/db?schema=pulse_app&pgbouncer=true")
    assert url.drivername == "postgresql+psycopg"
    assert schema == "pulse_app"
    assert dict(url.query) == {}


def test_percent_encoded_password_is_decoded() -> None:
    url, _ = to_sqlalchemy_url("postgresql://u:p%40ss%2Fw@h/db")
    assert url.password == "p@ss/w"


def test_explicit_driver_is_kept() -> None:
    url, schema = to_sqlalchemy_url("postgresql+psycopg2://u:p@h/db?schema=s1")
    assert url.drivername == "postgresql+psycopg2"
    assert schema == "s1"
    assert "schema" not in url.query


def test_last_schema_wins_when_repeated() -> None:
    url, schema = to_sqlalchemy_url("postgresql://u:p@h/db?schema=a&schema=b")
    assert schema == "b"
    assert "schema" not in url.query


def test_sqlite_url_passes_unchanged() -> None:
    url, schema = to_sqlalchemy_url("sqlite:////tmp/pulse.db")
    assert str(url) == "sqlite:////tmp/pulse.db"
    assert url.drivername == "sqlite"
    assert schema is None


@pytest.mark.parametrize("bad", ["x;drop", "x%22y", "1abc", "a-b", "a%20b", "a" * 64])
def test_schema_that_is_not_a_plain_identifier_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="schema") as caught:
        to_sqlalchemy_url(f"postgresql://u:s3cr3t@h/db?schema={bad}")
    assert "s3cr3t" not in str(caught.value)


def test_schema_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(ValueError, match="schema"):
        to_sqlalchemy_url("postgresql://u:p@h/db?schema=public%0A")


def test_longest_plain_schema_name_is_accepted() -> None:
    assert to_sqlalchemy_url(f"postgresql://u:p@h/db?schema={'a' * 63}")[1] == "a" * 63


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pulse:HEAD@TAIL@db.example.com:5432/pulse?schema=public",
        "postgresql://pulse:HEAD/TAIL@db.example.com:5432/pulse",
        "postgresql://pulse:HEAD?TAIL@db.example.com:5432/pulse",
        "postgresql://pulse:HEAD#TAIL@db.example.com:5432/pulse",
        "postgresql://pulse:HEAD%TAIL@db.example.com:5432/pulse",
        "postgresql://pulse@HEAD:TAIL@db.example.com:5432/pulse",
        "postgres://pulse:1234/TAIL@db.example.com/pulse",  # reads as host "pulse", port 1234
    ],
)
def test_a_password_that_needs_percent_encoding_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(DatabaseUrlError) as caught:
        to_sqlalchemy_url(url)

    message = str(caught.value)
    assert message.startswith("DATABASE_URL cannot be read unambiguously")
    assert "percent-encode" in message and "@ as %40" in message
    assert "HEAD" not in message and "TAIL" not in message and "db.example" not in message
    assert "TAIL" not in redacted(url) and "HEAD" not in redacted(url)


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://pulse:p%40ss%2Fw%3F%23%25@h/db", "p@ss/w?#%"),
        ("postgresql://pulse:pa:ss@h/db?schema=public", "pa:ss"),
        ("postgresql://pulse:pw@h/db?options=a@b", "pw"),
        ("postgresql://pulse:pw@[::1]:5432/db", "pw"),
    ],
)
def test_unambiguous_urls_are_read_as_written(url: str, password: str) -> None:
    assert to_sqlalchemy_url(url)[0].password == password


def test_a_sqlite_path_has_no_password_to_be_ambiguous_about() -> None:
    assert to_sqlalchemy_url("sqlite:////data/p@ss#1.db")[0].database == "/data/p@ss#1.db"


def test_redacted_hides_the_password() -> None:
    text = redacted("postgresql://pulse:s3cr3t-pw@db.example.com:5432/pulse?schema=public")
    assert "s3cr3t-pw" not in text
    assert "pulse:***@db.example.com:5432/pulse" in text


def test_redacted_unparseable_url_reveals_nothing() -> None:
    assert redacted("not a url with s3cr3t") == "<unparseable DATABASE_URL>"


# --- redact ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"])
def test_redact_masks_aws_access_keys(key: str) -> None:
    assert redact(f"denied for {key} today") == "denied for <aws-key> today"


def test_redact_masks_url_passwords() -> None:
    assert (
        redact("could not connect to postgresql://pulse:hunter2@db:5432/pulse")
        == "could not connect to postgresql://pulse:***@db:5432/pulse"
    )


def test_redact_masks_url_password_without_user_name() -> None:
    result = redact("could not connect to postgresql://:hunter2@db:5432/pulse")
    assert "hunter2" not in result


def test_redact_collapses_to_one_line() -> None:
    assert redact("Traceback:\n  line 1\r\n\tline 2  \n") == "Traceback: line 1 line 2"


def test_redact_shows_control_characters_postgresql_cannot_store_as_question_marks() -> None:
    assert redact("service A\x00B\x1b") == "service A?B?"


def test_redact_caps_length_at_500() -> None:
    assert redact("x" * 1000) == "x" * 500


def test_redact_masks_before_truncating() -> None:
    # A key straddling the 500-character cut must not leave its first characters behind.
    result = redact("y" * 495 + " AKIAIOSFODNN7EXAMPLE")
    assert "AKIA" not in result
    assert len(result) == 500


# --- connections that must not sync --------------------------------------------------------

DAY = datetime(2026, 11, 1)


def _connection(
    account_id: str, org: str = "org1", created: int = 1, synced: int | None = None
) -> CloudAccount:
    return replace(
        _account(account_id=account_id),
        org_id=org,
        created_at=DAY.replace(day=created),
        last_synced_at=None if synced is None else DAY.replace(day=synced),
    )


def test_of_two_connections_never_synced_the_newest_syncs() -> None:
    old, new = _connection("old", created=1), _connection("new", created=2)

    assert covering_account(old, [old, new]) == new
    assert covering_account(new, [old, new]) is None


def test_a_connection_that_synced_wins_over_a_newer_one() -> None:
    old, new = _connection("old", created=1, synced=5), _connection("new", created=9)

    assert covering_account(new, [old, new]) == old
    assert covering_account(old, [old, new]) is None


def test_of_two_connections_that_synced_the_most_recent_sync_wins() -> None:
    a, b = _connection("a", created=1, synced=7), _connection("b", created=2, synced=6)

    assert covering_account(b, [a, b]) == a
    assert covering_account(a, [a, b]) is None


def test_connections_of_other_organisations_or_aws_accounts_do_not_cover() -> None:
    mine = _connection("mine", created=1)
    theirs = _connection("theirs", org="org2", created=2)
    elsewhere = replace(
        _connection("elsewhere", created=3), role_arn="arn:aws:iam::999999999999:role/R"
    )

    assert covering_account(mine, [mine, theirs, elsewhere]) is None


def test_the_newer_connection_of_a_role_and_external_id_in_another_organisation_is_refused() -> (
    None
):
    first = _connection("first", org="org1", created=1)
    second = _connection("second", org="org2", created=2)
    shouting = replace(second, role_arn=ROLE_ARN.upper().replace("ARN:AWS:IAM", "arn:aws:iam"))

    assert shares_external_id(second, [first, second])
    assert shares_external_id(shouting, [first, shouting])
    assert not shares_external_id(first, [first, second])
    assert not shares_external_id(replace(second, org_id="org1"), [first, second])
    assert not shares_external_id(replace(second, external_id="another-id"), [first, second])


# --- partition keys ------------------------------------------------------------------------


@pytest.mark.parametrize("part", REFUSED_SUBSTRINGS)
def test_what_the_sensor_refuses_in_a_key_dagster_refuses_too(part: str) -> None:
    with pytest.raises(dg.DagsterInvalidDefinitionError):
        dg.StaticPartitionsDefinition([f"acc{part}1"])
    assert partition_key_problem(f"acc{part}1") == (
        f"contains {part!r}, which Dagster does not allow in a partition key"
    )


def test_partition_keys_are_limited_in_utf8_bytes() -> None:
    assert partition_key_problem("é" * (MAX_PARTITION_KEY_BYTES // 2)) is None
    assert partition_key_problem("é" * (MAX_PARTITION_KEY_BYTES // 2) + "x") == (
        "is 1,025 bytes long, more than the 1,024 bytes a partition key can have in Dagster's "
        "storage"
    )
    assert partition_key_problem("") == "is empty"
    assert partition_key_problem("clx1b2c3d0000qz8r5t6y7u8i") is None
