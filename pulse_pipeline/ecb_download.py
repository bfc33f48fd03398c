"""One download of the ECB's history file, whole or not at all, within a deadline per attempt.

Each attempt has one total deadline (connect, redirects, headers and body together), enforced
however slowly the server sends: a watchdog shuts the socket down when the time is up. The body
must be as long as the server's Content-Length promised and at most `max_bytes`. Redirects are
followed only to https URLs on the same host (at most MAX_REDIRECTS); the answer names the URL
the bytes came from.
"""

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from pulse_pipeline.printable import printable

DOWNLOAD_ATTEMPTS = 3
MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# The longest URL or header value a message quotes from the peer.
SHOWN_CHARS = 200


class HistoryUnavailable(RuntimeError):
    """The ECB history could not be read; the message is one secret-free sentence."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Downloaded:
    """The file's bytes, and the URL they came from (the last one of any redirects)."""

    body: bytes
    url: str


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
    if "://" not in location:
        return location
    parts = urlsplit(location)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return printable(f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}", SHOWN_CHARS)


def download_history(
    url: str,
    timeout_seconds: float,
    max_bytes: int,
    sleep: Callable[[float], None] = time.sleep,
) -> Downloaded:
    """The file at `url`, whole, at most `max_bytes` long, each attempt within `timeout_seconds`.

    A server error (5xx, 429), a missed deadline, a connection cut short of its Content-Length
    or a refused connection is tried again, up to DOWNLOAD_ATTEMPTS in all (1 s, then 2 s apart);
    any other HTTP status, a redirect elsewhere and a file larger than `max_bytes` are permanent
    and fail at once. Raises HistoryUnavailable naming the host only.
    """
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            return _attempt(url, time.monotonic() + timeout_seconds, timeout_seconds, max_bytes)
        except HistoryUnavailable as cause:
            if cause.permanent:
                raise
            if attempt == DOWNLOAD_ATTEMPTS:
                raise HistoryUnavailable(
                    f"{cause} ({DOWNLOAD_ATTEMPTS} attempts)", permanent=False
                ) from None
        sleep(float(attempt))
    raise AssertionError("unreachable")


def _attempt(url: str, deadline: float, seconds: float, max_bytes: int) -> Downloaded:
    """One attempt: the GET and any redirects it is allowed, all before `deadline`."""
    first_host = urlsplit(url).hostname or "the ECB"
    for _ in range(MAX_REDIRECTS + 1):
        host = urlsplit(url).hostname or "the ECB"
        with _connection(url, deadline) as watched:
            expired = watched.expired
            try:
                response = watched.get(url)
                if 300 <= response.status < 400:
                    url = _redirect_target(url, response.getheader("Location"), response.status)
                    continue
                if response.status != 200:
                    permanent = not (response.status >= 500 or response.status == 429)
                    raise HistoryUnavailable(
                        f"{host} answered HTTP {response.status} to the ECB history download",
                        permanent,
                    )
                body = _body(response, host, max_bytes)
            except HistoryUnavailable:
                if expired.is_set():
                    raise _too_slow(host, seconds) from None
                raise
            except (OSError, http.client.HTTPException, ValueError) as error:
                if expired.is_set():
                    raise _too_slow(host, seconds) from None
                raise HistoryUnavailable(
                    f"the ECB history download from {host} failed "
                    f"({type(error).__name__}: {printable(str(error), SHOWN_CHARS)})",
                    permanent=False,
                ) from None
            if expired.is_set():
                raise _too_slow(host, seconds)
            return Downloaded(body, url)
    raise HistoryUnavailable(
        f"{first_host} redirected the ECB history download more than {MAX_REDIRECTS} times",
        permanent=True,
    )


@dataclass
class _Watched:
    """A connection whose sockets a watchdog shuts down at the deadline, and whether it did."""

    conn: http.client.HTTPConnection
    expired: threading.Event
    sockets: list[socket.socket]

    def cut(self) -> None:
        self.expired.set()
        for sock in [self.conn.sock, *self.sockets]:
            _shut(sock)

    def get(self, url: str) -> http.client.HTTPResponse:
        """GET `url` on this connection, its socket watched from connect to the last byte (the
        response keeps reading from it after http.client lets go of it)."""
        self.conn.connect()
        self.sockets.append(self.conn.sock)
        if self.expired.is_set():
            _shut(self.conn.sock)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Accept-Encoding": "identity", "User-Agent": "pulse-pipeline"}
        self.conn.request("GET", target, headers=headers)
        return self.conn.getresponse()


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        with suppress(OSError):
            # The plain socket's shutdown: it wakes a read blocked inside TLS as well.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextmanager
def _connection(url: str, deadline: float) -> Iterator[_Watched]:
    """A connection to `url`'s host, shut down at `deadline` whatever it is waiting for."""
    parts = urlsplit(url)
    left = max(deadline - time.monotonic(), 0.001)
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    watched = _Watched(
        connection_type(parts.hostname or "", parts.port, timeout=left), threading.Event(), []
    )
    watchdog = threading.Timer(left, watched.cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield watched
    finally:
        watchdog.cancel()
        watched.conn.close()


def _redirect_target(url: str, location: str | None, status: int) -> str:
    """Where a redirect leads, if it stays on https on the same host; else a permanent failure."""
    host = urlsplit(url).hostname or "the ECB"
    if not location:
        raise HistoryUnavailable(
            f"{host} answered HTTP {status} without a Location to the ECB history download",
            permanent=True,
        )
    target = urljoin(url, location.strip())
    parts = urlsplit(target)
    if parts.scheme != "https" or parts.hostname != urlsplit(url).hostname:
        raise HistoryUnavailable(
            f"{host} redirected the ECB history download (HTTP {status}) to "
            f"{shown_location(target)}; only https on {host} is followed",
            permanent=True,
        )
    return target


def _body(response: http.client.HTTPResponse, host: str, max_bytes: int) -> bytes:
    """The whole body: at most `max_bytes`, and exactly as long as a Content-Length promised."""
    declared = response.getheader("Content-Length")
    promised = int(declared) if declared is not None and declared.strip().isdigit() else None
    if declared is not None and promised is None:
        raise HistoryUnavailable(
            f"{host} sent an unreadable Content-Length ({printable(declared, SHOWN_CHARS)}) with the ECB "
            "history",
            permanent=True,
        )
    if promised is not None and promised > max_bytes:
        raise _too_large(host, max_bytes)
    chunks: list[bytes] = []
    received = 0
    while chunk := response.read(CHUNK_BYTES):
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(host, max_bytes)
        chunks.append(chunk)
    if promised is not None and received != promised:
        raise HistoryUnavailable(
            f"{host} closed the ECB history download after {received} of the {promised} bytes "
            "it announced; the partial file was not used",
            permanent=False,
        )
    return b"".join(chunks)


def _too_large(host: str, max_bytes: int) -> HistoryUnavailable:
    return HistoryUnavailable(
        f"the ECB history from {host} is larger than {max_bytes} bytes; not read", permanent=True
    )


def _too_slow(host: str, seconds: float) -> HistoryUnavailable:
    return HistoryUnavailable(
        f"the ECB history download from {host} did not finish within {seconds:g} s "
        "(the deadline of one attempt)",
        permanent=False,
    )
