"""The Telegram channel: the alert as a message from a bot to one chat, through the Bot API's
`sendMessage`.

The bot token is part of the request's path (`/bot<token>/sendMessage`), so it is a secret of
the URL: it is checked to be a token's shape (nothing that could change the path), sent only
over https (or to this machine), and every sentence this module raises is free of it.
"""

import http.client
import json
import re
import time
from typing import Any

from pulse_pipeline.alerts.delivery import AlertNotDelivered, Deadline, post
from pulse_pipeline.printable import printable

TELEGRAM_API_URL = "https://api.telegram.org"
# How a BotFather token looks: the bot's numeric id, a colon, then its secret.
_BOT_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,100}")
# A chat's numeric id (negative for groups and channels) or a public channel's @username.
_CHAT_ID = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")
# Attempts per alert: a 429 is tried again only after its retry_after, within the deadline.
MAX_ATTEMPTS = 3


def check_bot_token(value: str) -> None:
    """Raise ValueError (never quoting the value) unless it has a bot token's shape."""
    if not _BOT_TOKEN.fullmatch(value):
        raise ValueError(
            "must be a Telegram bot token as BotFather gives it (digits, a colon, then letters, "
            "digits, - or _)"
        )


def check_chat_id(value: str) -> None:
    """Raise ValueError unless it is a chat's numeric id or a public channel's @username."""
    if not _CHAT_ID.fullmatch(value):
        raise ValueError("must be a chat's numeric id (e.g. -1001234567890) or @channelname")


def send_telegram(api_url: str, token: str, chat_id: str, text: str, deadline: Deadline) -> None:
    """Send `text` to the chat, within the deadline. A 429 is tried again after the
    `retry_after` Telegram asks for, if that still ends before the deadline; any other answer
    but 200 raises AlertNotDelivered with Telegram's own description."""
    url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
    body = json.dumps({"chat_id": chat_id, "text": text}).encode()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            answer = post(
                url, body, deadline, f"Telegram did not answer within {deadline.seconds:.4g} s"
            )
        except (OSError, http.client.HTTPException) as error:
            reason = f"Telegram could not be reached ({type(error).__name__}: {error})"
            raise AlertNotDelivered(reason.replace(token, "***")) from None
        if answer.status == 200:
            return
        said = _error_of(answer.body)
        description = printable(" ".join(str(said.get("description", "")).split()))[:200]
        description = description.replace(token, "***")
        if answer.status != 429:
            raise AlertNotDelivered(
                f"Telegram refused it (HTTP {answer.status}"
                + (f": {description})" if description else ")")
            )
        wait = _retry_after(said)
        if wait is None or wait >= deadline.left() or attempt == MAX_ATTEMPTS:
            asked = f"to wait {wait} s" if wait is not None else "to slow down"
            raise AlertNotDelivered(
                f"Telegram asked {asked} (HTTP 429) and the channel's {deadline.seconds:.4g} s "
                "deadline does not allow another attempt"
            )
        time.sleep(wait)


def _error_of(body: bytes) -> dict[str, Any]:
    """The Bot API's error object ({"ok": false, "description": ..., "parameters": ...})."""
    try:
        said = json.loads(body)
    except ValueError:
        return {}
    return said if isinstance(said, dict) else {}


def _retry_after(said: dict[str, Any]) -> int | None:
    parameters = said.get("parameters")
    wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if isinstance(wait, bool) or not isinstance(wait, int) or wait < 0:
        return None
    return wait
