"""Size limits shared by record validation, bulk ingest and the HTTP API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Longest accepted values; anything longer is rejected with the limit in the message."""

    max_id_chars: int = 256
    max_name_chars: int = 512
    max_title_chars: int = 1_024
    max_text_chars: int = 65_536
    max_query_chars: int = 512
    max_attributes: int = 256


LIMITS = Limits()

#: The id rule in one sentence, for messages.
ID_RULE = (
    f"an id is 1 to {LIMITS.max_id_chars} printable characters (no control characters such "
    "as NUL, tab or newline) and is not '.' or '..'"
)


def id_problem(value: str, limit: int = LIMITS.max_id_chars) -> str | None:
    """Why ``value`` cannot be an id (of a product, domain, user, request or event), else ``None``.

    The one rule for ids, applied by ingest and by the HTTP API alike: at least one non-space
    character, at most ``limit`` characters, every character printable (``str.isprintable``),
    and not ``.`` or ``..``, which a URL path cannot carry.
    """
    if not value.strip():
        return "empty"
    if len(value) > limit:
        return f"too long: {len(value)} characters, the limit is {limit}"
    for position, char in enumerate(value, start=1):
        if not char.isprintable():
            return f"not printable: character {position} is U+{ord(char):04X}"
    if value in (".", ".."):
        return f"{value!r} is a path segment, not an id"
    return None
