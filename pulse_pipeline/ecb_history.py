"""The ECB's published history (`eurofxref-hist.zip`, or its CSV): its download and its rates.

The file is a wide table, one row per ECB business day and one column per currency, with
`N/A` where a currency was not quoted; pandas turns it into one row per (day, currency). It is
imported here only, so the daily rate refresh pays for it and the sync runs do not.
"""

import io
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from pulse_pipeline.fx import EcbRate

ECB_HISTORY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip"
# The zip is about 0.6 MB and its CSV about 2 MB (2026); anything far larger is not the ECB's file.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
DOWNLOAD_ATTEMPTS = 3
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class HistoryUnavailable(RuntimeError):
    """The ECB history could not be read; the message is one secret-free sentence."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def is_download(location: str) -> bool:
    """Whether `location` is a URL to download (https, or plain http on loopback for tests)."""
    return location.startswith(("https://", "http://"))


def acceptable_url(location: str) -> bool:
    """https anywhere; plain http only on this machine's loopback (a local mirror, the tests)."""
    parts = urlsplit(location)
    return parts.scheme == "https" or (
        parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS
    )


def shown_location(location: str) -> str:
    """The location as logs and metadata may show it: a URL without user, password or query."""
    if not is_download(location):
        return location
    parts = urlsplit(location)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def download_history(
    url: str,
    timeout_seconds: float,
    max_bytes: int,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """The file at `url`, at most `max_bytes` long, each attempt bounded by `timeout_seconds`.

    A server error (5xx, 429), a timeout or a refused connection is tried again, up to
    DOWNLOAD_ATTEMPTS in all (1 s, then 2 s apart); any other HTTP status and a file larger than
    `max_bytes` are permanent and fail at once. Raises HistoryUnavailable naming the host only.
    """
    host = urlsplit(url).hostname or "the ECB"
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
                body: bytes = response.read(max_bytes + 1)
        except urllib.error.HTTPError as error:
            permanent = not (error.code >= 500 or error.code == 429)
            cause = HistoryUnavailable(
                f"{host} answered HTTP {error.code} to the ECB history download", permanent
            )
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            cause = HistoryUnavailable(
                f"the ECB history download from {host} failed ({type(reason).__name__}: {reason})",
                permanent=False,
            )
        else:
            if len(body) > max_bytes:
                raise HistoryUnavailable(
                    f"the ECB history from {host} is larger than {max_bytes} bytes; not read",
                    permanent=True,
                )
            return body
        if cause.permanent or attempt == DOWNLOAD_ATTEMPTS:
            if not cause.permanent:
                cause = HistoryUnavailable(
                    f"{cause} ({DOWNLOAD_ATTEMPTS} attempts)", permanent=False
                )
            raise cause
        sleep(float(attempt))
    raise AssertionError("unreachable")


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


def parse_ecb_history(
    archive: bytes, since: date | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[EcbRate]:
    """Every published rate (on or after `since`), exact as written, `N/A` cells skipped.

    Raises ValueError when the file is not the ECB's history.
    """
    import pandas as pd

    try:
        table = pd.read_csv(
            io.BytesIO(_csv_bytes(archive, max_bytes)),
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"the ECB history is not a CSV ({type(error).__name__})") from None
    table.columns = [str(column).strip() for column in table.columns]
    if not len(table.columns) or table.columns[0] != "Date":
        raise ValueError("the ECB history has no Date column first")
    currencies = [c for c in table.columns[1:] if c and not c.startswith("Unnamed:")]
    rates = table.melt(id_vars=table.columns[0], value_vars=currencies, var_name="currency")
    rates["value"] = rates["value"].str.strip()
    rates = rates[(rates["value"] != "") & (rates["value"] != "N/A")]
    try:
        days = pd.to_datetime(rates[table.columns[0]].str.strip(), format="%Y-%m-%d").dt.date
    except ValueError:
        raise ValueError("the ECB history has a Date that is not YYYY-MM-DD") from None
    parsed = []
    for day, currency, value in zip(days, rates["currency"], rates["value"], strict=True):
        if since is not None and day < since:
            continue
        try:
            parsed.append(EcbRate(currency, day, Decimal(value)))
        except InvalidOperation:
            raise ValueError(
                f"ECB history has a non-numeric rate for {currency} on {day}"
            ) from None
    return parsed
