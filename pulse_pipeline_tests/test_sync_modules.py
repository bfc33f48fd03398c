"""The sync as plain code, without Dagster: one account end to end, failures, and the batch loop."""

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from botocore.exceptions import EndpointConnectionError
from psycopg import errors as pg
from sqlalchemy import exc
from sqlalchemy.exc import OperationalError

from pulse_pipeline.accounts import SyncError
from pulse_pipeline.aws.cost_explorer import keep_as_sent
from pulse_pipeline.costs import MalformedPayloadError
from pulse_pipeline.db import queries
from pulse_pipeline.defs.resources import AwsCostExplorer, PulseDatabase
from pulse_pipeline.ecb_history import parse_ecb_history
from pulse_pipeline.sync import batch
from pulse_pipeline.sync.batch import Synced, sync_accounts
from pulse_pipeline.sync.failures import AccountFailure, BatchFailure, failing_cleanly
from pulse_pipeline.sync.run import SyncRun
from pulse_pipeline.sync_window import WindowRequest
from pulse_pipeline_tests.ce_results import ecb_history_csv, queue_results
from pulse_pipeline_tests.support import D1, D3, EXPECTED_ACC1, RATES, TWO_PAGES, stored_rows

LOG = logging.getLogger("test")


def sync_run(database_url: str, run_id: str = "run-1", **changes: object) -> SyncRun:
    values: dict[str, object] = {
        "run_id": run_id,
        "database": PulseDatabase(url=database_url),
        "cost_explorer": AwsCostExplorer().cost_explorer_client,
        "metric": "UnblendedCost",
        "record_types": None,
        "window": WindowRequest(D1, D3, today=D3 + timedelta(days=1)),
        "fetch": True,
        "write": True,
    }
    return SyncRun(**{**values, **changes})  # type: ignore[arg-type]


def load_rates(database_url: str) -> None:
    with PulseDatabase(url=database_url).begin() as conn:
        queries.upsert_rates(conn, list(parse_ecb_history(ecb_history_csv(RATES).encode())), "test")


def test_one_account_is_fetched_stored_and_written_without_dagster(
    pulse: str, moto_aws: None
) -> None:
    load_rates(pulse)
    queue_results("111111111111", TWO_PAGES)

    synced = list(sync_accounts(sync_run(pulse), ["acc-1"], LOG, retry_delay=0))

    assert [(s.asset, s.account_id) for s in synced] == [("raw", "acc-1"), ("costs", "acc-1")]
    raw, costs = synced
    # Which accounts the role sees (one page), then the two pages of costs.
    assert raw.metadata["pages"] == 3 and raw.metadata["groups"] == 5
    assert costs.metadata["dagster/row_count"] == 5
    assert Decimal(costs.metadata["total_eur_exact"]) == sum(row[7] for row in EXPECTED_ACC1)
    assert [check.passed for check in costs.checks] == [True] * 4
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1


def test_writing_alone_reconverts_the_latest_stored_fetch_without_aws(
    pulse: str, moto_aws: None
) -> None:
    load_rates(pulse)
    queue_results("111111111111", TWO_PAGES)
    list(sync_accounts(sync_run(pulse, write=False), ["acc-1"], LOG, retry_delay=0))
    assert stored_rows(pulse, "acc-1") == []

    def no_aws(connection: object) -> None:
        raise AssertionError("writing alone must not call AWS")

    run = sync_run(pulse, run_id="run-2", fetch=False, cost_explorer=no_aws)
    (costs,) = sync_accounts(run, ["acc-1"], LOG, retry_delay=0)

    assert costs.asset == "costs" and stored_rows(pulse, "acc-1") == EXPECTED_ACC1


@pytest.mark.parametrize(
    ("error", "cause", "retryable"),
    [
        (SyncError("CloudAccount a (x): AWS denied AssumeRole"), "CloudAccount a (x): AWS denied AssumeRole", False),
        (SyncError("CloudAccount a (x): throttled", retryable=True), "CloudAccount a (x): throttled", True),
        (MalformedPayloadError("EC2 on 2026-01-01 has a non-numeric Amount"), "CloudAccount a: Cost Explorer's response was rejected, nothing was written: EC2 on 2026-01-01 has a non-numeric Amount", False),
        (OperationalError("INSERT", {}, ConnectionError("gone")), "CloudAccount a: PULSE's database failed during the sync (ConnectionError); nothing was written", True),
        (KeyError("surprise"), "CloudAccount a: the sync failed unexpectedly (KeyError: 'surprise')", False),
    ],
)  # fmt: skip
def test_every_failure_becomes_one_sentence_naming_the_account(
    error: Exception, cause: str, retryable: bool
) -> None:
    with pytest.raises(AccountFailure) as failure, failing_cleanly("a"):
        raise error

    assert (failure.value.account_id, failure.value.cause) == ("a", cause)
    assert failure.value.retryable is retryable


REFUSED = "CloudAccount a: PULSE's database refused the sync's data ({}); nothing was written"
FAILED = "CloudAccount a: PULSE's database failed during the sync ({}); nothing was written"


def wrapped(kind: type[exc.DBAPIError], orig: Exception, **flags: bool) -> exc.DBAPIError:
    return kind("COPY", {}, orig, **flags)


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (wrapped(exc.DataError, pg.NumericValueOutOfRange("numeric field overflow")), REFUSED.format("numeric field overflow")),
        (pg.NumericValueOutOfRange("numeric field overflow\nDETAIL: A field with precision 28"), REFUSED.format("numeric field overflow")),
        (pg.StringDataRightTruncation("value too long for type character varying(3)"), REFUSED.format("value too long for type character varying(3)")),
        (wrapped(exc.DataError, pg.UntranslatableCharacter("unsupported Unicode escape sequence")), REFUSED.format("unsupported Unicode escape sequence")),
        (wrapped(exc.IntegrityError, pg.CheckViolation('violates check constraint "c"')), REFUSED.format('violates check constraint "c"')),
        (wrapped(exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")), REFUSED.format("UNIQUE constraint failed")),
        # psycopg files "program limit exceeded" (an index row too large) under OperationalError.
        (pg.ProgramLimitExceeded("index row requires 9032 bytes, maximum size is 8191"), REFUSED.format("index row requires 9032 bytes, maximum size is 8191")),
        (wrapped(exc.OperationalError, pg.ProgramLimitExceeded("index row too big")), REFUSED.format("index row too big")),
        (wrapped(exc.ProgrammingError, pg.UndefinedColumn('column "metric" does not exist')), REFUSED.format('column "metric" does not exist')),
        (exc.StatementError("money must be a Decimal", "INSERT", {}, TypeError("x")), REFUSED.format("TypeError")),
        (exc.ArgumentError("Could not parse URL postgresql://u:pw@h/db"), REFUSED.format("ArgumentError")),
    ],
)  # fmt: skip
def test_data_the_database_refuses_is_permanent_and_said_in_its_words(
    error: Exception, cause: str
) -> None:
    with pytest.raises(AccountFailure) as failure, failing_cleanly("a"):
        raise error

    assert failure.value.cause == cause and not failure.value.retryable


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (wrapped(exc.OperationalError, psycopg.OperationalError("connection failed")), "OperationalError"),
        (wrapped(exc.OperationalError, pg.AdminShutdown("terminating connection")), "AdminShutdown"),
        (wrapped(exc.OperationalError, pg.QueryCanceled("canceling statement due to statement timeout")), "QueryCanceled"),
        (wrapped(exc.OperationalError, pg.LockNotAvailable("could not obtain lock")), "LockNotAvailable"),
        (wrapped(exc.OperationalError, pg.DeadlockDetected("deadlock detected")), "DeadlockDetected"),
        (wrapped(exc.OperationalError, pg.TooManyConnections("too many clients")), "TooManyConnections"),
        (wrapped(exc.InterfaceError, psycopg.InterfaceError("the connection is closed")), "InterfaceError"),
        (wrapped(exc.DBAPIError, psycopg.Error("server closed the connection"), connection_invalidated=True), "Error"),
        (psycopg.OperationalError("consuming input failed: server closed the connection"), "OperationalError"),
        (wrapped(exc.OperationalError, sqlite3.OperationalError("database is locked")), "OperationalError"),
        (exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), "TimeoutError"),
    ],
)  # fmt: skip
def test_only_connection_type_database_faults_are_transient(error: Exception, name: str) -> None:
    with pytest.raises(AccountFailure) as failure, failing_cleanly("a"):
        raise error

    assert failure.value.cause == FAILED.format(name) and failure.value.retryable


def scripted(outcomes: dict[str, list[str]], calls: list[str]) -> object:
    """A stand-in for one account's sync: each call takes the account's next scripted outcome."""

    def sync_account(
        run: SyncRun,
        account_id: str,
        log: logging.Logger,
        peers: object,
        prefetched: object = None,
    ) -> Iterator[Synced]:
        calls.append(account_id)
        outcome = outcomes[account_id].pop(0)
        if outcome != "ok":
            raise AccountFailure(
                account_id, f"{account_id}: {outcome}", retryable=outcome == "transient"
            )
        yield Synced("costs", account_id, {})

    return sync_account


def test_a_batch_isolates_failures_and_retries_only_transient_ones_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    outcomes = {
        "a": ["ok"],
        "b": ["transient", "ok"],
        "c": ["denied"],
        "d": ["transient", "transient"],
    }
    monkeypatch.setattr(batch, "sync_account", scripted(outcomes, calls))
    run = sync_run("sqlite://", fetch=False)
    synced: list[str] = []

    with pytest.raises(BatchFailure) as failed:
        for item in sync_accounts(run, ["a", "b", "c", "d"], LOG, retry_delay=0):
            synced.append(item.account_id)

    assert synced == ["a", "b"]
    assert calls == ["a", "b", "c", "d", "b", "d"]  # c (permanent) and a (done) not again
    assert {k: f.cause for k, f in failed.value.failures.items()} == {
        "c": "c: denied",
        "d": "d: transient",
    }
    assert failed.value.summary == "2 of 4 CloudAccounts failed: c: denied; d: transient"


def test_a_single_account_raises_its_own_failure_for_the_step_retry_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(batch, "sync_account", scripted({"a": ["transient"]}, calls))

    with pytest.raises(AccountFailure) as failure:
        list(sync_accounts(sync_run("sqlite://"), ["a"], LOG, retry_delay=0))

    assert calls == ["a"] and failure.value.retryable


def test_a_network_failure_while_downloading_names_the_account_and_is_transient(
    pulse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(connection: object) -> None:
        raise EndpointConnectionError(endpoint_url="https://ce.us-east-1.amazonaws.com")

    run = sync_run(pulse, cost_explorer=unreachable)

    with pytest.raises(AccountFailure) as failure:
        list(sync_accounts(run, ["acc-1"], LOG, retry_delay=0))

    assert failure.value.retryable
    assert failure.value.cause == (
        "CloudAccount acc-1 (org-1 production): could not reach AWS for GetCostAndUsage "
        "(EndpointConnectionError)"
    )


def test_a_cost_explorer_answer_is_kept_exactly_as_sent() -> None:
    sent = {"ResultsByTime": None, "Keys": "EC2", "ResponseMetadata": "not botocore's"}
    response = {"status_code": 200, "body": json.dumps(sent).encode()}
    customized: dict[str, object] = {}

    keep_as_sent(response_dict=response, customized_response_dict=customized)

    assert customized == {"ResultsByTime": None, "Keys": "EC2"} and response["body"] == b"{}"
    error = {"status_code": 400, "body": b'{"__type": "LimitExceededException"}'}
    keep_as_sent(response_dict=error, customized_response_dict=customized)
    assert error["body"] == b'{"__type": "LimitExceededException"}'  # botocore parses errors
