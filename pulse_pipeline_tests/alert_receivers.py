"""Where the tests' alerts arrive: an HTTP server and a real SMTP server (aiosmtpd) on loopback,
each able to refuse on demand."""

import json
import threading
from collections.abc import Iterator
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
