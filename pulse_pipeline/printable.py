"""Text from the database or a peer, made safe to write into a log line."""

import unicodedata

# Control characters, line and paragraph separators, format characters (bidi overrides) and
# lone surrogates: each could start a new log line or make one read as something else.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str, limit: int | None = None) -> str:
    """`text` with every character that could forge or disguise a log line written as its
    Python escape (a line break becomes the two characters `\\n`); everything else unchanged.
    With a `limit`, at most that many characters of it, then `…`."""
    shown = "".join(
        character.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(character) in _UNPRINTABLE
        else character
        for character in text
    )
    return shown if limit is None or len(shown) <= limit else shown[:limit] + "…"
