"""Why an account's sync failed, as one secret-free sentence, and whether to try again."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError

from pulse_pipeline.accounts import SyncError
from pulse_pipeline.db.urls import DatabaseTimeout, DatabaseUrlError
from pulse_pipeline.normalise import MalformedPayloadError
from pulse_pipeline.sync_window import InvalidWindowError


class AccountFailure(Exception):
    """One account's sync failed. `cause` names the account; `retryable` marks transient faults
    (throttling, network, a database restart) that a later attempt may fix."""

    def __init__(self, account_id: str, cause: str, *, retryable: bool) -> None:
        super().__init__(cause)
        self.account_id = account_id
        self.cause = cause
        self.retryable = retryable


class BatchFailure(Exception):
    """Some accounts of a batch failed (the others were synced): their causes, per account."""

    def __init__(self, accounts: int, failures: dict[str, AccountFailure]) -> None:
        self.failures = failures
        self.summary = f"{len(failures)} of {accounts} CloudAccounts failed: " + "; ".join(
            failure.cause for failure in failures.values()
        )
        super().__init__(self.summary)


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
    except InvalidWindowError as error:
        raise AccountFailure(account_id, f"{label}: {error}", retryable=False) from None
    except MalformedPayloadError as error:
        raise AccountFailure(
            account_id,
            f"{label}: Cost Explorer's response was rejected, nothing was written: {error}",
            retryable=False,
        ) from None
    except DatabaseUrlError as error:
        raise AccountFailure(account_id, f"{label}: {error}", retryable=False) from None
    except DatabaseTimeout as error:
        # Not retried: each attempt would wait as long again; the next scheduled sync retries.
        raise AccountFailure(
            account_id, f"{label}: {error}; nothing was written", retryable=False
        ) from None
    except SQLAlchemyError as error:
        cause = type(getattr(error, "orig", None) or error).__name__
        raise AccountFailure(
            account_id,
            f"{label}: PULSE's database failed during the sync ({cause}); nothing was written",
            retryable=True,
        ) from None
    except Exception as error:
        raise AccountFailure(
            account_id,
            f"{label}: the sync failed unexpectedly ({type(error).__name__}: {error})",
            retryable=True,
        ) from error
