"""Signed request ids and the workspace secret."""

from __future__ import annotations

import stat
import threading

from shopsearch.serve.request_ids import RequestIds, workspace_secret
from shopsearch.store.workspace import Workspace


def test_ids_carry_domain_and_user_and_resist_tampering():
    ids = RequestIds(b"k" * 32)
    rid = ids.issue("us", "ünïcode user")
    issued = ids.verify(rid)
    assert (issued.domain, issued.user_id) == ("us", "ünïcode user")
    assert ids.issue("us", "u") != ids.issue("us", "u")
    assert RequestIds(b"j" * 32).verify(rid) is None
    payload, tag = rid.split(".")
    for bad in (f"{payload}x.{tag}", f"{payload}.{tag[:-1]}", payload, "", "!!.??", f"A{rid}"):
        assert ids.verify(bad) is None
    assert len(ids.issue("x" * 32, "u" * 128)) <= 256


def test_the_secret_is_private_shared_and_created_once(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    secrets: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: secrets.append(workspace_secret(ws))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(secrets)) == 1
    assert len(secrets[0]) == 32
    assert stat.S_IMODE((ws.root / "secret").stat().st_mode) == 0o600
    assert not list(ws.root.glob(".secret*"))
