"""Self-validating request ids, so any server process can check an id without shared state.

A search's ``request_id`` is ``<payload>.<tag>``, both base64url without padding:

- ``payload`` = 12 random bytes, then the domain and the user of the search as UTF-8, the
  domain preceded by its length in 2 bytes (big-endian). The domain is ``*`` for a search over
  every domain.
- ``tag`` = the first 16 bytes of HMAC-SHA256(secret, payload).

The secret is 32 random bytes in ``W/secret`` (mode 0600), made once per workspace and shared by
every worker and every restart, so ``POST /events`` on any worker accepts exactly the ids that
some worker of this workspace issued, and learns from the id alone the request's domain and
user (the interaction's default ``user_id``). Forging an id needs the secret. An id is not
secret itself and is not single-use: events for one search may be posted any number of times.

With a user of at most :data:`MAX_USER_BYTES` bytes and a domain id of at most 32 bytes an id is
at most 256 characters, the workspace's id limit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from shopsearch.errors import WorkspaceError
from shopsearch.random_pool import RANDOM
from shopsearch.store.atomic import fsync_dir
from shopsearch.store.workspace import Workspace

SECRET_FILE = "secret"
#: Longest accepted ``user`` (UTF-8 bytes).
MAX_USER_BYTES = 128
_NONCE = 12
_TAG = 16


@dataclass(frozen=True)
class IssuedRequest:
    """What a valid request id says about its search."""

    domain: str
    user_id: str


class RequestIds:
    """Issues and verifies request ids signed with one secret.

    Args:
        secret: the HMAC key (see :func:`workspace_secret`).
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the request id secret must be at least 16 bytes")
        self._secret = secret

    def issue(self, domain: str, user_id: str) -> str:
        """A new request id for a search by ``user_id`` in ``domain``."""
        raw_domain = domain.encode()
        payload = b"".join(
            (RANDOM.take(_NONCE), len(raw_domain).to_bytes(2, "big"), raw_domain, user_id.encode())
        )
        return f"{_b64(payload)}.{_b64(self._tag(payload))}"

    def verify(self, request_id: str) -> IssuedRequest | None:
        """The domain and user of a request id this secret issued, else ``None``."""
        payload_text, dot, tag_text = request_id.partition(".")
        if not dot:
            return None
        payload, tag = _unb64(payload_text), _unb64(tag_text)
        if payload is None or tag is None or len(payload) < _NONCE + 2:
            return None
        if not hmac.compare_digest(tag, self._tag(payload)):
            return None
        size = int.from_bytes(payload[_NONCE : _NONCE + 2], "big")
        rest = payload[_NONCE + 2 :]
        if size > len(rest):
            return None
        try:
            return IssuedRequest(rest[:size].decode(), rest[size:].decode())
        except UnicodeDecodeError:
            return None

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_TAG]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def workspace_secret(workspace: Workspace) -> bytes:
    """The workspace's request-id secret, created atomically (mode 0600) on first use.

    The secret is written to a private temporary file, flushed, then hard-linked to
    ``W/secret``; linking fails if another process linked first, and then its secret is used.
    """
    path = workspace.root / SECRET_FILE
    if not path.exists():
        tmp = path.with_name(f".{SECRET_FILE}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            fsync_dir(path.parent)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes()
    if len(secret) < 16:
        raise WorkspaceError(
            f"{path} holds {len(secret)} bytes, not a request-id secret; delete it and restart "
            "(ids issued before stop being accepted)"
        )
    return secret
