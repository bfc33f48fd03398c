"""Re-conversion of CostRecords marked fxProvisional once newer ECB rates are stored, without AWS.

Each row is converted again from its own stored `amount` by the sync's conversion (`to_eur`, the
rate of its day or the last ECB business day before it), so a re-converted row is exactly the
row a new sync would write; its `fxRate`, `fxRateDate`, `fxProvisional` and `amountEUR` change
together. One transaction per account, holding the account's row like a sync's write does.
"""

import logging
from dataclasses import dataclass, field

from pulse_pipeline.costs import MalformedPayloadError, to_eur
from pulse_pipeline.db import queries
from pulse_pipeline.db.database import Database
from pulse_pipeline.fx import RateTable


@dataclass
class Reconverted:
    """What a re-conversion did: rows given a newer rate, rows still provisional, per account."""

    rows: int = 0
    still_provisional: int = 0
    accounts: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def reconvert_provisional(database: Database, log: logging.Logger) -> Reconverted:
    """Convert every fxProvisional CostRecord again at the stored rates; one account that cannot
    be converted (a currency without any rate) is logged and never stops the others."""
    done = Reconverted()
    with database.begin() as conn:
        account_ids = queries.accounts_with_provisional_rows(conn)
    for account_id in account_ids:
        label = f"CloudAccount {account_id}" if account_id else "CostRecords without an account"
        try:
            with database.begin() as conn:
                if account_id is not None:
                    queries.load_account(conn, account_id, lock=True)
                rows = queries.provisional_rows(conn, account_id)
                if not rows:
                    continue
                since = min(row.line.day for row in rows)
                currencies = {row.line.currency for row in rows}
                rates = RateTable(queries.load_rates(conn, currencies, since))
                costs = to_eur([row.line for row in rows], rates)
                changed = [
                    (row.id, cost)
                    for row, cost in zip(rows, costs, strict=True)
                    if (cost.fx_rate, cost.fx_rate_date, cost.fx_provisional)
                    != (row.fx_rate, row.fx_rate_date, True)
                ]
                queries.update_conversions(conn, changed)
        except MalformedPayloadError as error:
            done.failed[account_id or ""] = str(error)
            log.warning(f"{label}: provisional rows not re-converted: {error}")
            continue
        done.rows += len(changed)
        done.still_provisional += sum(1 for cost in costs if cost.fx_provisional)
        if changed:
            done.accounts.append(account_id or "")
            log.info(f"{label}: re-converted {len(changed)} provisional CostRecords")
    return done
