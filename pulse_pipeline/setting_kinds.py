"""How a setting's text becomes the value its resource field carries: one parser per kind of value.

A parser takes the text of an environment variable (never empty: empty means unset) and returns
the value, or raises ValueError with the reason; `settings.Setting.parse` turns the reason into
the sentence that names the variable. A reason never quotes a value that may be secret.
"""

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import UnknownRegionError

from pulse_pipeline.alerts.channels import split_addresses
from pulse_pipeline.alerts.telegram import check_bot_token, check_chat_id
from pulse_pipeline.aws.pages import FOCUS_CHARGE_CATEGORY
from pulse_pipeline.aws.regions import aws_partition
from pulse_pipeline.db.urls import to_sqlalchemy_url
from pulse_pipeline.ecb_download import LOOPBACK_HOSTS, acceptable_url
from pulse_pipeline.ecb_history import BUNDLED

Parser = Callable[[str], Any]

# AWS's RECORD_TYPE names, exactly as Cost Explorer spells them.
RECORD_TYPES = tuple(FOCUS_CHARGE_CATEGORY)


def text(value: str) -> str:
    """Any text, taken as is: a host name, a login, a password, an AWS profile."""
    return value


def database_url(value: str) -> str:
    """A SQLAlchemy or Prisma URL of PULSE's database. Raises DatabaseUrlError, whose message is
    already a whole sentence naming DATABASE_URL, and never quotes the URL."""
    to_sqlalchemy_url(value)
    return value


def whole_number(minimum: int, unit: str | None = None, note: str | None = None) -> Parser:
    """A whole number of `unit` (seconds, hours...), at least `minimum`; `note` says what for."""
    wanted = f"of {unit}, at least {minimum}" if unit else f"of at least {minimum}"
    reason = f"must be a whole number {wanted}" + (f" ({note})" if note else "")

    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(reason) from None
        if number < minimum:
            raise ValueError(reason)
        return number

    return parse


def tcp_port(value: str) -> int:
    """A TCP port number, 1 to 65535."""
    try:
        port = int(value.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError("must be a TCP port, 1 to 65535")
    return port


def choice(names: Sequence[str], what: str) -> Parser:
    """One of `names`, spelled exactly; `what` names the thing chosen (e.g. "cost metric")."""
    options = " or ".join(names) if len(names) == 2 else f"one of {', '.join(names)}"

    def parse(value: str) -> str:
        if value not in names:
            raise ValueError(f"unknown {what} {value!r}; choose {options}")
        return value

    return parse


def aws_region(value: str) -> str:
    """An AWS region botocore knows, e.g. us-east-1 (from its own data, without an API call)."""
    try:
        aws_partition(value)
    except UnknownRegionError:
        raise ValueError(
            f"unknown AWS region {value!r}; use one such as us-east-1 or eu-central-1"
        ) from None
    return value


def http_url(*, secret: bool) -> Parser:
    """An http(s) URL without a user name or password. A `secret` URL (a Slack webhook's path
    is its credential) must be https unless it is on this machine."""

    def parse(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not hold a user name or password")
        if secret and parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError("must be an https:// URL (http:// only on this machine)")
        return value

    return parse


def ecb_history_location(value: str) -> str:
    """Where the ECB history is read: an https URL (plain http on loopback), a path, `bundled`."""
    if value != BUNDLED and "://" in value and not acceptable_url(value):
        raise ValueError(
            "must be an https:// URL (plain http:// only on 127.0.0.1 or localhost), a file "
            "path, or `bundled`"
        )
    return value


def email_addresses(value: str) -> str:
    """Comma-separated e-mail addresses (name@domain)."""
    if any("@" not in address for address in split_addresses(value)):
        raise ValueError("must be e-mail addresses (name@domain), comma-separated")
    return value


def record_type_set(value: str) -> frozenset[str] | None:
    """The record types of a comma-separated list (None: empty, all of them).

    Names must be AWS's exact RECORD_TYPE names; raises ValueError listing them otherwise.
    """
    chosen = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not chosen:
        if value.strip():
            raise ValueError("names no record type; leave it empty to write all of them")
        return None
    unknown = [name for name in chosen if name not in RECORD_TYPES]
    if unknown:
        by_lower = {name.lower(): name for name in RECORD_TYPES}
        meant = [by_lower[name.lower()] for name in unknown if name.lower() in by_lower]
        hint = f" (did you mean {', '.join(meant)}?)" if meant else ""
        raise ValueError(
            f"unknown record type {', '.join(repr(name) for name in unknown)}{hint}; use AWS's "
            f"exact names ({', '.join(RECORD_TYPES)}) or leave it empty for all"
        )
    return frozenset(chosen)


def record_types(value: str) -> str:
    """A comma-separated list of AWS record types (see `record_type_set`), kept as written."""
    record_type_set(value)
    return value


def telegram_bot_token(value: str) -> str:
    """A Telegram bot token as BotFather gives it (never quoted in the reason)."""
    check_bot_token(value)
    return value


def telegram_chat_id(value: str) -> str:
    """A Telegram chat's numeric id or a public channel's @username."""
    check_chat_id(value)
    return value
