"""The API key store, and the command line's keys group and bind rule."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from qualia.cli.main import _may_bind
from qualia.errors import InvalidProfileName
from qualia.workspace import Workspace
from service import keys

from tests.helpers import run_qualia


def test_only_the_hash_is_stored(ws: Workspace) -> None:
    key = keys.create_key(ws, "alice")
    assert key.startswith("qk_") and len(key) >= 40
    keys.create_key(ws, "alice")  # a second one, so the raw key must not hide in a freed page either
    raw = b"".join(p.read_bytes() for p in ws.root.iterdir() if p.name.startswith(keys.KEYS_FILE))
    secret = key[keys.PREFIX_LEN:]
    assert secret.encode() not in raw and key.encode() not in raw
    with sqlite3.connect(keys.keys_path(ws)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute("SELECT prefix, sha256, profile FROM api_keys").fetchall()
    assert len(rows) == 2
    assert (key[: keys.PREFIX_LEN], keys._digest(key), "alice") in [(p, bytes(h), n) for p, h, n in rows]


def test_verify_wrong_and_malformed_keys(ws: Workspace) -> None:
    assert keys.KeyRing(ws).profile_of("qk_anything-at-all-long-enough") is None  # no store at all
    assert not keys.keys_path(ws).exists()  # and asking did not create one
    assert not keys.KeyRing(ws).configured()
    alice, bob = keys.create_key(ws, "alice"), keys.create_key(ws, "bob")
    assert keys.KeyRing(ws).configured()
    assert keys.KeyRing(ws).profile_of(alice) == "alice" and keys.KeyRing(ws).profile_of(bob) == "bob"
    tampered = alice[:-1] + ("A" if alice[-1] != "A" else "B")  # right prefix, wrong secret
    for bad in (tampered, alice + "x", alice[: keys.PREFIX_LEN], "", "qk_", bob.upper(), alice[3:]):
        assert keys.KeyRing(ws).profile_of(bad) is None, bad
    with pytest.raises(InvalidProfileName):
        keys.create_key(ws, "../etc")


def test_list_and_revoke(ws: Workspace) -> None:
    alice = keys.create_key(ws, "alice")
    keys.create_key(ws, "bob")
    listed = keys.list_keys(ws)
    assert [k["profile"] for k in listed] == ["alice", "bob"]
    assert all(set(k) == {"prefix", "profile", "created_at"} for k in listed)
    assert alice not in json.dumps(listed)
    assert keys.revoke_key(ws, alice[: keys.PREFIX_LEN])
    assert not keys.revoke_key(ws, alice[: keys.PREFIX_LEN])
    assert keys.KeyRing(ws).profile_of(alice) is None
    assert [k["profile"] for k in keys.list_keys(ws)] == ["bob"]


def test_keyring_sees_keys_created_and_revoked_while_it_runs(ws: Workspace) -> None:
    ring = keys.KeyRing(ws)
    assert not ring.configured() and ring.profile_of("qk_whatever-long-enough") is None
    alice = keys.create_key(ws, "alice")
    assert ring.configured() and ring.profile_of(alice) == "alice"
    assert ring.profile_of(alice[:-2]) is None and ring.profile_of(None) is None
    bob = keys.create_key(ws, "bob")
    assert ring.profile_of(bob) == "bob"
    keys.revoke_key(ws, bob[: keys.PREFIX_LEN])
    assert ring.profile_of(bob) is None and ring.profile_of(alice) == "alice"


def test_may_bind(ws: Workspace) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert _may_bind(ws, host)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        assert not _may_bind(ws, host)
    keys.create_key(ws, "alice")
    assert _may_bind(ws, "0.0.0.0") and _may_bind(ws, "::")


def test_cli_keys_create_list_revoke(ws: Workspace) -> None:
    env = {"QUALIA_HOME": str(ws.root)}
    out = run_qualia("keys", "create", "alice", "--json", env=env)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["profile"] == "alice" and keys.KeyRing(ws).profile_of(created["key"]) == "alice"
    plain = run_qualia("keys", "create", "alice", env=env)
    assert plain.returncode == 0 and keys.KeyRing(ws).profile_of(plain.stdout.strip()) == "alice"
    listed = json.loads(run_qualia("keys", "list", "--json", env=env).stdout)["keys"]
    assert len(listed) == 2 and created["key"] not in json.dumps(listed)
    prefix = created["key"][: keys.PREFIX_LEN]
    assert run_qualia("keys", "revoke", prefix, env=env).returncode == 0
    assert keys.KeyRing(ws).profile_of(created["key"]) is None
    again = run_qualia("keys", "revoke", prefix, env=env)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    bad = run_qualia("keys", "create", "Bad Name", env=env)
    assert bad.returncode == 2 and "invalid profile name" in bad.stderr
    assert run_qualia("keys", env=env).returncode == 2


def test_cli_serve_refuses_public_bind_without_keys(ws: Workspace) -> None:
    started = time.monotonic()
    out = run_qualia("serve", "--host", "0.0.0.0", "--port", "9", env={"QUALIA_HOME": str(ws.root)}, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "0.0.0.0" in lines[0] and "qualia keys create" in lines[0]
    assert time.monotonic() - started < 20  # refused before loading anything heavy
    assert not keys.keys_path(ws).exists()
