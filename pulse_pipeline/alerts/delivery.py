"""What every channel shares: a total deadline that holds however slowly a peer trickles, and a
bounded HTTP POST that never follows a redirect.

A socket timeout bounds one read, not an exchange: a peer that sends one byte every few seconds
never trips it. So each exchange runs under a watchdog that shuts the socket down when the
deadline passes, which ends whatever read or write is waiting on it; the socket's own timeout
(the whole deadline) bounds the connect.
"""

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

# The most of a peer's answer that is read: enough for an error's JSON or text, never a body
# a hostile server could make huge.
MAX_ANSWER_BYTES = 4096


class AlertNotDelivered(Exception):
    """A channel did not take an alert; the message says why in words that hold no secret."""


class MissedDeadline(AlertNotDelivered):
    """The peer did not finish the exchange within the channel's deadline."""


class Deadline:
    """A point in time, `seconds` from now, by the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds until the deadline, never below zero."""
        return max(0.0, self._end - time.monotonic())


@contextmanager
def closing_at(
    deadline: Deadline, current_socket: Callable[[], socket.socket | None], missed: str
) -> Iterator[None]:
    """Shut down `current_socket()` (whichever socket the exchange uses by then, TLS included)
    when the deadline passes. A block the deadline overtook raises MissedDeadline(missed),
    whatever it raised or returned (a shut socket may also read as a clean end of the answer)."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        sock = current_socket()
        if sock is not None:
            try:  # the plain socket's shutdown, even under TLS: it wakes any blocked call
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    if deadline.left() <= 0:
        raise MissedDeadline(missed)
    watchdog = threading.Timer(deadline.left(), expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    except Exception:
        if expired.is_set() or deadline.left() <= 0:
            raise MissedDeadline(missed) from None
        raise
    finally:
        watchdog.cancel()
    if expired.is_set():
        raise MissedDeadline(missed)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status and at most MAX_ANSWER_BYTES of its body."""

    status: int
    body: bytes


def post(url: str, body: bytes, deadline: Deadline, missed: str) -> Answer:
    """POST `body` as JSON to `url` and return the answer, all within `deadline` (else
    MissedDeadline(missed)). A redirect is returned as it is, never followed. A 2xx answer's
    body is not read; another's, at most MAX_ANSWER_BYTES of it, and only while the deadline
    lasts. Network errors raise OSError or http.client.HTTPException."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, port, timeout=deadline.left(), context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=deadline.left())
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with closing_at(deadline, lambda: connection.sock, missed):
            connection.request(
                "POST", path, body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
        answer = b""
        if not 200 <= response.status < 300:
            try:  # the status is known: a body cut short by the deadline is only shorter
                with closing_at(deadline, lambda: connection.sock, missed):
                    answer = response.read(MAX_ANSWER_BYTES)
            except (MissedDeadline, OSError, http.client.HTTPException):
                pass
    finally:
        connection.close()
    return Answer(response.status, answer)
