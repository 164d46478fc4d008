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
