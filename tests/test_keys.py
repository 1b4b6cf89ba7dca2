"""The API key store, and the command line's keys group and bind rule."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from qualia import keys
from qualia.cli.main import _may_bind
from qualia.workspace import InvalidProfileName

from tests.conftest import run_qualia


def test_only_the_hash_is_stored(tmp_path: Path) -> None:
    key = keys.create_key("alice", tmp_path)
    assert key.startswith("qk_") and len(key) >= 40
    keys.create_key("alice", tmp_path)  # a second one, so the raw key must not hide in a freed page either
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(keys.KEYS_FILE))
    secret = key[keys.PREFIX_LEN:]
    assert secret.encode() not in raw and key.encode() not in raw
    with sqlite3.connect(keys.keys_path(tmp_path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute("SELECT prefix, sha256, profile FROM api_keys").fetchall()
    assert len(rows) == 2
    assert (key[: keys.PREFIX_LEN], keys._digest(key), "alice") in [(p, bytes(h), n) for p, h, n in rows]


def test_verify_wrong_and_malformed_keys(tmp_path: Path) -> None:
    assert keys.verify_key("qk_anything-at-all-long-enough", tmp_path) is None  # no store at all
    assert not keys.keys_path(tmp_path).exists()  # and asking did not create one
    assert not keys.any_keys(tmp_path)
    alice, bob = keys.create_key("alice", tmp_path), keys.create_key("bob", tmp_path)
    assert keys.any_keys(tmp_path)
    assert keys.verify_key(alice, tmp_path) == "alice" and keys.verify_key(bob, tmp_path) == "bob"
    tampered = alice[:-1] + ("A" if alice[-1] != "A" else "B")  # right prefix, wrong secret
    for bad in (tampered, alice + "x", alice[: keys.PREFIX_LEN], "", "qk_", bob.upper(), alice[3:]):
        assert keys.verify_key(bad, tmp_path) is None, bad
    with pytest.raises(InvalidProfileName):
        keys.create_key("../etc", tmp_path)


def test_list_and_revoke(tmp_path: Path) -> None:
    alice = keys.create_key("alice", tmp_path)
    keys.create_key("bob", tmp_path)
    listed = keys.list_keys(tmp_path)
    assert [k["profile"] for k in listed] == ["alice", "bob"]
    assert all(set(k) == {"prefix", "profile", "created_at"} for k in listed)
    assert alice not in json.dumps(listed)
    assert keys.revoke_key(alice[: keys.PREFIX_LEN], tmp_path)
    assert not keys.revoke_key(alice[: keys.PREFIX_LEN], tmp_path)
    assert keys.verify_key(alice, tmp_path) is None
    assert [k["profile"] for k in keys.list_keys(tmp_path)] == ["bob"]


def test_keyring_sees_keys_created_and_revoked_while_it_runs(tmp_path: Path) -> None:
    ring = keys.KeyRing(tmp_path)
    assert not ring.configured() and ring.profile_of("qk_whatever-long-enough") is None
    alice = keys.create_key("alice", tmp_path)
    assert ring.configured() and ring.profile_of(alice) == "alice"
    assert ring.profile_of(alice[:-2]) is None and ring.profile_of(None) is None
    bob = keys.create_key("bob", tmp_path)
    assert ring.profile_of(bob) == "bob"
    keys.revoke_key(bob[: keys.PREFIX_LEN], tmp_path)
    assert ring.profile_of(bob) is None and ring.profile_of(alice) == "alice"


def test_may_bind(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert _may_bind(host, tmp_path)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        assert not _may_bind(host, tmp_path)
    keys.create_key("alice", tmp_path)
    assert _may_bind("0.0.0.0", tmp_path) and _may_bind("::", tmp_path)


def test_cli_keys_create_list_revoke(tmp_path: Path) -> None:
    env = {"QUALIA_HOME": str(tmp_path)}
    out = run_qualia("keys", "create", "alice", "--json", env=env)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["profile"] == "alice" and keys.verify_key(created["key"], tmp_path) == "alice"
    plain = run_qualia("keys", "create", "alice", env=env)
    assert plain.returncode == 0 and keys.verify_key(plain.stdout.strip(), tmp_path) == "alice"
    listed = json.loads(run_qualia("keys", "list", "--json", env=env).stdout)["keys"]
    assert len(listed) == 2 and created["key"] not in json.dumps(listed)
    prefix = created["key"][: keys.PREFIX_LEN]
    assert run_qualia("keys", "revoke", prefix, env=env).returncode == 0
    assert keys.verify_key(created["key"], tmp_path) is None
    again = run_qualia("keys", "revoke", prefix, env=env)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    bad = run_qualia("keys", "create", "Bad Name", env=env)
    assert bad.returncode == 1 and "invalid profile name" in bad.stderr
    assert run_qualia("keys", env=env).returncode == 2


def test_cli_serve_refuses_public_bind_without_keys(tmp_path: Path) -> None:
    started = time.monotonic()
    out = run_qualia("serve", "--host", "0.0.0.0", "--port", "9", env={"QUALIA_HOME": str(tmp_path)}, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "0.0.0.0" in lines[0] and "qualia keys create" in lines[0]
    assert time.monotonic() - started < 20  # refused before loading anything heavy
    assert not keys.keys_path(tmp_path).exists()
