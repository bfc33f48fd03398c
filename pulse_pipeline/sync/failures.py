"""Why an account's sync failed, as one secret-free sentence, and whether to try again."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import exc

from pulse_pipeline.accounts import SyncError
from pulse_pipeline.costs import MalformedPayloadError
from pulse_pipeline.db.urls import DatabaseTimeout, DatabaseUrlError


class AccountFailure(Exception):
    """One account's sync failed. `cause` names the account; `retryable` marks transient faults
    (throttling, network, 5xx, a lost or busy database connection) that a later attempt may fix;
    everything else (bad payloads, data the database refuses, settings, defects) is permanent.
    `database_unusable` marks a database that could not be reached or read at all (its URL, a
    timeout, a lost connection): nothing else can be read from it in this attempt either."""

    def __init__(
        self, account_id: str, cause: str, *, retryable: bool, database_unusable: bool = False
    ) -> None:
        super().__init__(cause)
        self.account_id = account_id
        self.cause = cause
        self.retryable = retryable
        self.database_unusable = database_unusable


class BatchFailure(Exception):
    """Some accounts of a batch failed (the others were synced): their causes, per account."""

    def __init__(self, accounts: int, failures: dict[str, AccountFailure]) -> None:
        self.failures = failures
        self.summary = f"{len(failures)} of {accounts} CloudAccounts failed: " + "; ".join(
            failure.cause for failure in failures.values()
        )
        super().__init__(self.summary)


# Faults the next attempt may not meet, by SQLSTATE class: connection exception (08), transaction
# rollback (40: serialization failure, deadlock), insufficient resources (53), operator
# intervention (57: statement timeout, server shutdown), system error (58); and lock_not_available.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TRANSIENT_SQLSTATES = frozenset({"55P03"})
_DRIVER_ERRORS = (psycopg.Error, sqlite3.Error)
# Without a SQLSTATE (SQLite, or no answer from the server): PEP 249's connection-type classes.
_CONNECTION_ERRORS = (
    exc.OperationalError,
    exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
)
MAX_REASON_LENGTH = 200


def database_fault_is_transient(error: Exception) -> bool:
    """Whether a database error is a connection-type fault (connection lost or refused, timeout,
    deadlock, server restarting) rather than data or schema the database refused, which no
    retry changes."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True
    orig = error.orig if isinstance(error, exc.DBAPIError) else error
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
    return isinstance(error, _CONNECTION_ERRORS) or isinstance(orig, _CONNECTION_ERRORS)


def _refusal(error: Exception) -> str:
    """What the database refused, in its own words when the driver gives them (the server's
    primary message: no values, no URL), else only the kind of error."""
    orig = getattr(error, "orig", None) or error
    if not isinstance(orig, _DRIVER_ERRORS):
        return type(orig).__name__
    primary = getattr(getattr(orig, "diag", None), "message_primary", None)
    reason = " ".join((primary or str(orig).strip().split("\n")[0]).split())
    return reason[:MAX_REASON_LENGTH] + ("…" if len(reason) > MAX_REASON_LENGTH else "")


def _database_failure(account_id: str, label: str, error: Exception) -> AccountFailure:
    if database_fault_is_transient(error):
        cause = type(getattr(error, "orig", None) or error).__name__
        return AccountFailure(
            account_id,
            f"{label}: PULSE's database failed during the sync ({cause}); nothing was written",
            retryable=True,
            database_unusable=True,
        )
    return AccountFailure(
        account_id,
        f"{label}: PULSE's database refused the sync's data ({_refusal(error)}); nothing was "
        "written",
        retryable=False,
    )


@contextmanager
def failing_cleanly(account_id: str) -> Iterator[None]:
    """Turn any failure inside the block into an AccountFailure for `account_id`."""
    label = f"CloudAccount {account_id}"
    try:
        yield
    except AccountFailure:
        raise
    except SyncError as error:
        raise AccountFailure(account_id, str(error), retryable=error.retryable) from None
    except MalformedPayloadError as error:
        raise AccountFailure(
            account_id,
            f"{label}: Cost Explorer's response was rejected, nothing was written: {error}",
            retryable=False,
        ) from None
    except DatabaseUrlError as error:
        raise AccountFailure(
            account_id, f"{label}: {error}", retryable=False, database_unusable=True
        ) from None
    except DatabaseTimeout as error:
        # Not retried: each attempt would wait as long again; the next scheduled sync retries.
        raise AccountFailure(
            account_id,
            f"{label}: {error}; nothing was written",
            retryable=False,
            database_unusable=True,
        ) from None
    except (exc.SQLAlchemyError, *_DRIVER_ERRORS) as error:
        raise _database_failure(account_id, label, error) from None
    except Exception as error:
        # A defect, not a fault of AWS or the database: another attempt would meet it again.
        raise AccountFailure(
            account_id,
            f"{label}: the sync failed unexpectedly ({type(error).__name__}: {error})",
            retryable=False,
        ) from error
