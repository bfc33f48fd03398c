"""How one account's sync ended, and the secret-free sentence PULSE shows for it."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

MAX_ERROR_LENGTH = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Things that must never reach PULSE's UI even if an unexpected error quotes them.
_SECRETS = [
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"), "<aws-key>"),
    (re.compile(r"(://[^:/@\s]*:)[^@\s]+@"), r"\1***@"),
    (
        re.compile(r"(?i)\b(externalid|external_id|secret[_a-z]*|token|password)(\s*[=:]\s*)\S+"),
        r"\1\2***",
    ),
]


@dataclass(frozen=True)
class SyncOutcome:
    """How one sync run of one account ended."""

    account_id: str
    run_id: str
    finished_at: datetime
    error: str | None


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """One line, at most MAX_ERROR_LENGTH characters, with the given secret values and anything
    credential-shaped (AWS keys, URL passwords, `password=...`) masked, and control characters
    (a NUL would fail the whole status write on PostgreSQL) shown as `?`."""
    line = _CONTROL.sub("?", " ".join(text.split()))
    for secret in secrets:
        if secret and len(secret) >= 2:
            line = line.replace(secret, "***")
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    return line[:MAX_ERROR_LENGTH]
