"""Random bytes for per-request ids, read from the OS in blocks.

``os.urandom`` is a system call that releases the GIL: a server thread that calls it per
request must then win the GIL back from whichever thread took it meanwhile, which under load
can take up to the switch interval (5 ms). :data:`RANDOM` hands out bytes of the same source
from a block read once per few thousand ids. A forked child starts from a fresh block, so
parent and child never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading

#: Bytes read from ``os.urandom`` at a time.
BLOCK_BYTES = 64 * 1024


class RandomPool:
    """Random bytes from ``os.urandom``, read ``block`` bytes at a time; thread-safe.

    Args:
        block: bytes read per system call.
    """

    def __init__(self, block: int = BLOCK_BYTES) -> None:
        if block < 1:
            raise ValueError(f"block={block} is not allowed; use >= 1")
        self.block = block
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        """``n`` random bytes no other call of this pool returns."""
        with self._lock:
            if self._at + n > len(self._buffer):
                self._buffer, self._at = os.urandom(max(self.block, n)), 0
            out = self._buffer[self._at : self._at + n]
            self._at += n
        return out

    def hex(self, n: int) -> str:
        """``n`` random bytes as ``2n`` hex digits (``uuid.uuid4().hex``'s length for 16)."""
        return self.take(n).hex()

    def forget(self) -> None:
        """Drop the unread bytes (a forked child must not reuse its parent's)."""
        self._lock = threading.Lock()
        self._buffer, self._at = b"", 0


#: The process's pool.
RANDOM = RandomPool()
os.register_at_fork(after_in_child=RANDOM.forget)

__all__ = ["BLOCK_BYTES", "RANDOM", "RandomPool"]
