"""The key lifecycle against the local registry file: ``keys create|list|revoke|rotate`` in-process, expiry and
revocation as the gateway sees them (a real server for the refusals), and "last used" written in batches."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from common.contracts import Team
from common.errors import Unauthorized, UserError
from ingest import tenants as tenants_module
from ingest.auth import authenticate
from ingest.providers.registry import build_router
from ingest.tenants import LocalTenantRegistry
from modelmeter.cli import main
from tests.clocks import Clocks

from .conftest import Gateway, run_gateway

NOVA = "amazon.nova-micro-v1:0"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)




def _registry(path: Path, clocks: Clocks, **kwargs: Any) -> LocalTenantRegistry:
    return LocalTenantRegistry(path, clock=clocks.wall, monotonic=clocks.monotonic, **kwargs)


def _table(out: str) -> list[dict[str, str]]:
    header, *rows = out.splitlines()
    return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]


# --- the commands ---------------------------------------------------------------------------------------------------

def test_keys_create_list_rotate_and_revoke_through_the_cli(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    tenants = str(tmp_path / "tenants.json")
    assert main(["tenants", "add", "search", "--tenants", tenants, "--lake", str(tmp_path / "lake")]) == 0
    capsys.readouterr()
    # GIVEN a key that expires in 90 days
    assert main(["keys", "create", "search", "--expires-in", "90d", "--tenants", tenants]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert out == secret + "\n" and "expiring at " in err
    # WHEN the keys are listed
    assert main(["keys", "list", "--tenants", tenants]) == 0
    out = capsys.readouterr().out
    (row,) = _table(out)
    # THEN id, team, created, last used, expiry and status are shown, never the secret or its hash
    assert secret not in out and secret.split(".", 1)[1] not in out
    assert (row["team_id"], row["last_used_at"], row["status"]) == ("search", "-", "active")
    created, expires = (datetime.fromisoformat(row[c]) for c in ("created_at", "expires_at"))
    assert timedelta(days=90) - timedelta(seconds=5) < expires - created <= timedelta(days=90)
    old_id = row["api_key_id"]
    assert secret.startswith(old_id + ".")
    # WHEN it is rotated with a one-hour grace
    assert main(["keys", "rotate", old_id, "--grace", "1h", "--tenants", tenants]) == 0
    out, err = capsys.readouterr()
    new_secret = out.strip()
    assert out == new_secret + "\n" and new_secret != secret
    assert f"the old key {old_id} keeps working until " in err and "(grace 1h), then is refused" in err
    # THEN both work now; the new key inherits the old one's 90-day lifetime; the old one is marked
    registry = LocalTenantRegistry(tenants, recheck_seconds=0)
    assert registry.lookup_key(secret) is not None and registry.lookup_key(new_secret) is not None
    assert main(["keys", "list", "search", "--tenants", tenants]) == 0
    old_row, new_row = _table(capsys.readouterr().out)
    assert old_row["status"] == f"rotated (by {new_row['api_key_id']})" and new_row["status"] == "active"
    grace_end = datetime.fromisoformat(old_row["expires_at"]) - datetime.fromisoformat(new_row["created_at"])
    assert timedelta(minutes=59) < grace_end <= timedelta(hours=1)
    lifetime = datetime.fromisoformat(new_row["expires_at"]) - datetime.fromisoformat(new_row["created_at"])
    assert timedelta(days=90) - timedelta(seconds=5) < lifetime <= timedelta(days=90)
    # WHEN the old key is revoked before its grace ends: refused at once, listed as revoked
    assert main(["keys", "revoke", old_id, "--tenants", tenants]) == 0
    assert "refuses it within 1 s" in capsys.readouterr().err
    assert registry.lookup_key(secret) is None and registry.lookup_key(new_secret) is not None
    assert main(["keys", "list", "--tenants", tenants]) == 0
    assert [r["status"] for r in _table(capsys.readouterr().out)] == ["revoked", "active"]
    # and tenants list names only the live key
    assert main(["tenants", "list", "--tenants", tenants]) == 0
    assert _table(capsys.readouterr().out)[0]["keys"] == new_row["api_key_id"]
    # and a revoked key cannot be rotated (one line, exit 1)
    assert main(["keys", "rotate", old_id, "--tenants", tenants]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"modelmeter keys rotate: key {old_id} is revoked: create a new key with `modelmeter keys create`"]


def test_a_key_is_created_with_an_expiry_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tenants = str(tmp_path / "tenants.json")
    LocalTenantRegistry(tenants).put_team(Team(team_id="ops"))
    day = (datetime.now(UTC) + timedelta(days=30)).date()
    assert main(["keys", "create", "ops", "--expires-in", day.isoformat(), "--tenants", tenants]) == 0
    capsys.readouterr()
    (record,) = LocalTenantRegistry(tenants).list_keys()
    assert record.expires_at == f"{day.isoformat()}T00:00:00.000+00:00"


@pytest.mark.parametrize("value", ["90", "90x", "d", "-1d", "0d", "1.5h", "2001-01-01", "soon"])
def test_a_bad_expires_in_is_a_usage_error_naming_the_flag(tmp_path: Path, value: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["keys", "create", "ops", "--expires-in", value, "--tenants", str(tmp_path / "t.json")])
    assert exc.value.code == 2
    assert "argument --expires-in:" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("value", ["24", "1w", "-1h"])
def test_a_bad_grace_is_a_usage_error_naming_the_flag(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["keys", "rotate", "mk_live_000000000000", "--grace", value])
    assert exc.value.code == 2 and "argument --grace:" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["keys", "revoke", "mk_live_nope"], ["keys", "rotate", "mk_live_nope"]])
def test_a_key_id_that_does_not_exist_is_exit_1_with_one_line(tmp_path: Path, command: list[str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    tenants = str(tmp_path / "tenants.json")
    LocalTenantRegistry(tenants).put_team(Team(team_id="ops"))
    assert main([*command, "--tenants", tenants]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"modelmeter {' '.join(command[:2])}: no key 'mk_live_nope' in {tenants} (see `modelmeter keys list`)"]


def test_keys_list_of_an_unknown_team_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tenants = str(tmp_path / "tenants.json")
    LocalTenantRegistry(tenants).put_team(Team(team_id="ops"))
    assert main(["keys", "list", "nobody", "--tenants", tenants]) == 1
    assert capsys.readouterr().err.splitlines() == [f"modelmeter keys list: no team 'nobody' in {tenants}"]
    assert main(["keys", "list", "ops", "--tenants", tenants]) == 0
    assert f"no keys of team ops in {tenants}" in capsys.readouterr().err


# --- expiry, rotation, revocation as the gateway sees them ----------------------------------------------------------

def test_an_expired_key_is_refused_at_its_instant_without_any_write(tmp_path: Path) -> None:
    clocks = Clocks(T0)
    registry = _registry(tmp_path / "t.json", clocks)
    registry.put_team(Team(team_id="ops"))
    _record, secret = registry.create_key("ops", expires_at=T0 + timedelta(hours=1))
    before = (tmp_path / "t.json").stat().st_mtime_ns
    clocks.advance(3600 - 0.001)
    assert authenticate(registry, secret)[1].team_id == "ops"
    clocks.advance(0.001)
    with pytest.raises(Unauthorized, match="invalid API key"):  # the unknown key's error, word for word
        authenticate(registry, secret)
    assert (tmp_path / "t.json").stat().st_mtime_ns == before


def test_after_a_rotation_both_keys_work_during_the_grace_and_the_old_one_is_refused_after(tmp_path: Path) -> None:
    clocks = Clocks(T0)
    registry = _registry(tmp_path / "t.json", clocks)
    registry.put_team(Team(team_id="ops"))
    old, old_secret = registry.create_key("ops")
    # WHEN the key is rotated with the default grace of the command (24 h)
    new, new_secret, old_after = registry.rotate_key(old.api_key_id, grace=timedelta(hours=24))
    assert (old_after.replaced_by, old_after.expires_at) == (new.api_key_id, "2026-11-26T09:00:00.000+00:00")
    assert new.team_id == "ops" and new.expires_at is None
    # a key in its grace cannot be rotated again (its replacement is named)
    with pytest.raises(UserError, match=f"already rotated: its replacement is {new.api_key_id}"):
        registry.rotate_key(old.api_key_id, grace=timedelta(hours=1))
    # THEN during the grace both keys authenticate, as the same team
    clocks.advance(24 * 3600 - 1)
    assert authenticate(registry, old_secret)[1].team_id == authenticate(registry, new_secret)[1].team_id == "ops"
    # AND after it the old key is refused like an unknown key, the new one still works
    clocks.advance(1)
    with pytest.raises(Unauthorized, match="invalid API key"):
        authenticate(registry, old_secret)
    assert authenticate(registry, new_secret)[0].api_key_id == new.api_key_id


def test_a_rotation_never_lengthens_a_key_that_expires_sooner_than_the_grace(tmp_path: Path) -> None:
    clocks = Clocks(T0)
    registry = _registry(tmp_path / "t.json", clocks)
    registry.put_team(Team(team_id="ops"))
    old, _ = registry.create_key("ops", expires_at=T0 + timedelta(hours=2))
    _new, _, old_after = registry.rotate_key(old.api_key_id, grace=timedelta(hours=24))
    assert old_after.expires_at == "2026-11-25T11:00:00.000+00:00"


def test_a_revocation_reaches_a_running_gateway_within_recheck_seconds(tmp_path: Path) -> None:
    # GIVEN a gateway's registry (re-checks the file once a second) that has just accepted a key
    clocks = Clocks(T0)
    path = tmp_path / "t.json"
    gateway = _registry(path, clocks, recheck_seconds=1.0)
    cli = LocalTenantRegistry(path)
    cli.put_team(Team(team_id="ops"))
    record, secret = cli.create_key("ops")
    assert gateway.lookup_key(secret) is not None
    # WHEN the command revokes it (another process: another registry object on the same file)
    assert cli.revoke_key(record.api_key_id)
    # THEN the gateway may still accept it until its next check of the file, and refuses it from then on:
    # the longest delay is recheck_seconds (1 s)
    clocks.advance(0.999)
    assert gateway.lookup_key(secret) is not None
    clocks.advance(0.001)
    assert gateway.lookup_key(secret) is None


def test_a_file_rewritten_twice_within_one_timestamp_tick_is_read_again(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # File times tick in jiffies: a key created and revoked a few ms apart can leave the same mtime. The re-read
    # must not depend on the mtime alone (each write is a new file: new inode, ctime, size).
    path = tmp_path / "t.json"
    gateway = LocalTenantRegistry(path, recheck_seconds=0)
    cli = LocalTenantRegistry(path)
    cli.put_team(Team(team_id="ops"))
    record, secret = cli.create_key("ops")
    assert gateway.lookup_key(secret) is not None
    mtime = path.stat().st_mtime_ns
    assert cli.revoke_key(record.api_key_id)
    os.utime(path, ns=(mtime, mtime))  # the same mtime as before the revocation
    assert gateway.lookup_key(secret) is None


def test_an_expired_or_revoked_key_is_refused_by_a_real_gateway_exactly_like_an_unknown_one(tmp_path: Path) -> None:
    runner = run_gateway(tmp_path, build_router(upstream="simulator"))
    gw: Gateway = next(runner)
    try:
        _expired, expired = gw.registry.create_key("alpha", expires_at=datetime.now(UTC) - timedelta(seconds=1))
        revoked_record, revoked = gw.registry.create_key("alpha")
        assert gw.registry.revoke_key(revoked_record.api_key_id)
        unknown = "mk_live_000000000000.not-a-key-at-all-not-a-key-at-all-0000000"

        def seed(key: str) -> requests.Response:
            return requests.post(f"{gw.url}/invoke_model?model_id={NOVA}", json={"inputs": "hi"},
                                 headers={"x-api-key": key, "team_id": "alpha"}, timeout=10)

        def v1(key: str) -> requests.Response:
            return requests.post(f"{gw.url}/v1/chat/completions", timeout=10,
                                 json={"model": NOVA, "messages": [{"role": "user", "content": "hi"}]},
                                 headers={"Authorization": f"Bearer {key}"})

        events_before = len(gw.events())
        for call in (seed, v1):
            answers = {(r.status_code, r.content, r.headers.get("content-type"))
                       for r in (call(unknown), call(expired), call(revoked))}
            assert len(answers) == 1, answers  # status, body and type: indistinguishable from an unknown key
            assert next(iter(answers))[0] in (401, 403)
        assert len(gw.events()) == events_before  # not authenticated: no usage event
        assert seed(gw.keys["alpha"]).status_code == 200
    finally:
        with contextlib.suppress(StopIteration):
            next(runner)
    # AND the gateway's shutdown wrote the key's last use to the sidecar, not into the registry file
    used = json.loads(gw.registry.last_used_path.read_text())["last_used"]
    assert set(used) == {gw.key_ids["alpha"]}
    assert "last_used_at" not in gw.registry.path.read_text()


# --- last used, batched -------------------------------------------------------------------------------------------

def test_n_authentications_cost_at_most_one_write_per_flush_interval(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = Clocks(T0)
    registry = _registry(tmp_path / "t.json", clocks, flush_seconds=60.0)
    registry.put_team(Team(team_id="ops"))
    _, first = registry.create_key("ops")
    _, second = registry.create_key("ops")
    writes: list[Path] = []
    real_write = tenants_module._write_json
    monkeypatch.setattr(tenants_module, "_write_json", lambda path, payload: (writes.append(path),
                                                                               real_write(path, payload)))
    registry_file = (tmp_path / "t.json").read_bytes()
    # WHEN 1,000 calls authenticate over 59 s, the registry asked to flush after every one (as Lambda does)
    for i in range(1000):
        authenticate(registry, first if i % 2 else second)
        registry.flush()
        clocks.advance(0.059)
    # THEN one write: the first flush (so a key's first use shows at once), none after within the interval
    assert writes == [registry.last_used_path]
    # AND once the interval has passed, one more write carries the latest use of both keys
    clocks.advance(2.0)
    authenticate(registry, first)
    assert registry.flush() == 2 and len(writes) == 2
    assert registry.flush(force=True) == 0  # nothing new: nothing written
    assert (tmp_path / "t.json").read_bytes() == registry_file  # the registry file itself is never rewritten
    last = {k.api_key_id: k.last_used_at for k in registry.list_keys()}
    assert sorted(last.values()) == ["2026-11-25T09:00:58.882+00:00",   # the second key's last of 500 uses
                                     "2026-11-25T09:01:01.000+00:00"]   # the first key, after the interval


def test_an_older_use_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    # GIVEN two gateway processes on one registry; the second saw the key later but flushes first
    early, late = Clocks(T0), Clocks(T0)
    late.advance(300)
    path = tmp_path / "t.json"
    LocalTenantRegistry(path).put_team(Team(team_id="ops"))
    record, _ = LocalTenantRegistry(path).create_key("ops")
    a, b = _registry(path, early), _registry(path, late)
    b.record_use(record)
    assert b.flush() == 1
    a.record_use(record)
    assert a.flush() == 1
    # THEN the later time stays
    (listed,) = LocalTenantRegistry(path).list_keys()
    assert listed.last_used_at == "2026-11-25T09:05:00.000+00:00"


def test_a_damaged_last_used_file_costs_only_last_used(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    registry = LocalTenantRegistry(path)
    registry.put_team(Team(team_id="ops"))
    record, secret = registry.create_key("ops")
    registry.last_used_path.write_text("{not json")
    assert registry.list_keys()[0].last_used_at is None and registry.lookup_key(secret) is not None
    registry.record_use(record)
    assert registry.flush() == 1 and registry.list_keys()[0].last_used_at is not None
