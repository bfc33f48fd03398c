"""The e-mail channel: one message over SMTP, encrypted whenever the server allows it."""

import smtplib
import socket
import ssl
from contextlib import suppress
from email.message import EmailMessage

from pulse_pipeline.alerts.delivery import AlertNotDelivered, Deadline, closing_at
from pulse_pipeline.printable import printable

# Implicit TLS (SMTPS) instead of STARTTLS on this port.
SMTPS_PORT = 465


def send_email(
    message: EmailMessage, host: str, port: int, user: str, password: str, deadline: Deadline
) -> None:
    """Send over SMTP, greeting to accepted message within the deadline: STARTTLS whenever the
    server offers it (implicit TLS on port 465), and a login only over an encrypted connection.
    Raises AlertNotDelivered saying why."""
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if port == SMTPS_PORT:
        smtp = smtplib.SMTP_SSL(timeout=deadline.left(), context=context)
    else:
        smtp = smtplib.SMTP(timeout=deadline.left())

    def current_socket() -> socket.socket | None:
        return smtp.sock

    missed = f"the SMTP server did not finish within {deadline.seconds:.4g} s"
    try:
        with closing_at(deadline, current_socket, missed):
            _exchange(smtp, message, host, port, user, password, context)
        # Sent: a QUIT left unanswered changes nothing.
        with suppress(AlertNotDelivered, smtplib.SMTPException, OSError):
            with closing_at(deadline, current_socket, missed):
                smtp.quit()
    except smtplib.SMTPResponseException as error:
        text = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else error.smtp_error
        )
        raise AlertNotDelivered(
            f"the SMTP server refused it ({error.smtp_code} {printable(text[:200])})"
        ) from None
    except smtplib.SMTPRecipientsRefused as error:
        codes = sorted({code for code, _ in error.recipients.values()})
        raise AlertNotDelivered(f"the SMTP server refused every recipient ({codes})") from None
    except (smtplib.SMTPException, OSError) as error:
        raise AlertNotDelivered(
            f"the SMTP server could not be used ({type(error).__name__}: {error})"
        ) from None
    finally:
        smtp.close()


def _exchange(
    smtp: smtplib.SMTP,
    message: EmailMessage,
    host: str,
    port: int,
    user: str,
    password: str,
    context: ssl.SSLContext,
) -> None:
    # What SMTP(host) sets before connecting; TLS checks the certificate against it. Connecting
    # here instead lets the deadline's watchdog reach the socket while the server greets.
    smtp._host = host  # type: ignore[attr-defined]
    smtp.connect(host, port)
    smtp.ehlo()
    encrypted = port == SMTPS_PORT
    if not encrypted and smtp.has_extn("starttls"):
        smtp.starttls(context=context)
        smtp.ehlo()
        encrypted = True
    if user:
        if not encrypted:
            raise AlertNotDelivered(
                "the SMTP server does not offer STARTTLS, and the password is never sent "
                "unencrypted"
            )
        smtp.login(user, password)
    smtp.send_message(message)
