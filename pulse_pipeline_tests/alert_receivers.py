"""Where the tests' alerts arrive: an HTTP server and a real SMTP server (aiosmtpd) on loopback,
each able to refuse on demand; and peers that misbehave on purpose (a trickling webhook, a
redirect, a huge answer, an SMTP server that greets one byte at a time, Telegram's Bot API
answering 429 or an error)."""

import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from pulse_pipeline_tests.daemon import free_port


class WebhookReceiver:
    """Records every JSON body POSTed to it (`tried`) and those it accepted (`received`);
    answers `status` (200, or 500 to fail)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.tried: list[dict[str, Any]] = []
        self.attempts = 0
        self.status = 200
        self.url = ""


class MailReceiver:
    """aiosmtpd's handler: keeps each message it is sent (`tried`) and each it accepts
    (`messages`); refuses DATA while `refuse` is set."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.tried: list[EmailMessage] = []
        self.attempts = 0
        self.refuse = False
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.tried.append(message)
        if self.refuse:
            return "554 5.7.1 refused by the test"
        self.messages.append(message)
        return "250 OK"


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.attempts += 1
            receiver.tried.append(json.loads(body))
            if receiver.status == 200:
                assert self.headers["Content-Type"] == "application/json"
                receiver.received.append(json.loads(body))
            self.send_response(receiver.status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/s3cr3t-token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def mail_receiver() -> Iterator[MailReceiver]:
    receiver = MailReceiver()
    receiver.port = free_port()
    controller = Controller(receiver, hostname="127.0.0.1", port=receiver.port)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()


# An answer: writes to the handler; `stopped` is set when the server is stopping.
Respond = Callable[[BaseHTTPRequestHandler, threading.Event], None]


class HttpPeer:
    """An HTTP server that records every request (`requests`: method, path, JSON body) and
    answers each with the next of `answers` (the last one repeats). Peers that misbehave on
    purpose are answers: see `trickle`, `redirect`, `huge` and `json_answer`."""

    def __init__(self, answers: list[Respond]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, Any]] = []
        self.url = ""
        self.stopped = threading.Event()


@contextmanager
def http_peer(*answers: Respond) -> Iterator[HttpPeer]:
    peer = HttpPeer(list(answers))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            peer.requests.append((self.command, self.path, json.loads(body) if body else None))
            answer = peer.answers[min(len(peer.requests), len(peer.answers)) - 1]
            try:
                answer(self, peer.stopped)
            except OSError:  # the client hung up, as it should at its deadline
                self.close_connection = True

        do_POST = do_GET = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    peer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        peer.stopped.set()
        server.shutdown()
        server.server_close()


def trickle(every: float) -> Respond:
    """A 200 answer written one byte every `every` seconds, its last header never ending."""

    def answer(handler: BaseHTTPRequestHandler, stopped: threading.Event) -> None:
        start = b"HTTP/1.1 200 OK\r\nX-Slow: "
        position = 0
        while not stopped.wait(every):
            handler.wfile.write(start[position : position + 1] or b"a")
            handler.wfile.flush()
            position += 1

    return answer


def redirect(location: str, status: int = 302) -> Respond:
    def answer(handler: BaseHTTPRequestHandler, stopped: threading.Event) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def huge(status: int, size: int) -> Respond:
    """An answer of `size` bytes, written as fast as the client takes them."""

    def answer(handler: BaseHTTPRequestHandler, stopped: threading.Event) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        chunk = b"x" * 65536
        for _ in range(size // len(chunk)):
            handler.wfile.write(chunk)

    return answer


def json_answer(status: int, body: dict[str, Any]) -> Respond:
    def answer(handler: BaseHTTPRequestHandler, stopped: threading.Event) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def telegram_sent(chat_id: str = "-100200300") -> Respond:
    """sendMessage's answer when the message was sent."""
    return json_answer(200, {"ok": True, "result": {"message_id": 1, "chat": {"id": chat_id}}})


def telegram_error(status: int, description: str, **parameters: Any) -> Respond:
    """The Bot API's error answer, e.g. 429 with `retry_after`."""
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return json_answer(status, body)


@contextmanager
def slow_smtp_greeting(every: float) -> Iterator[int]:
    """A TCP server on loopback that greets each client like SMTP, one byte every `every`
    seconds, without end. Yields its port."""
    stopped = threading.Event()

    class Greeter(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            greeting = b"220-slow.example.com ESMTP " + b"a" * 1_000_000
            for byte in greeting:
                if stopped.wait(every):
                    return
                try:
                    self.request.sendall(bytes([byte]))
                except OSError:
                    return

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Greeter)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        stopped.set()
        server.shutdown()
        server.server_close()
