"""``modelmeter tenants add/list``, ``keys create`` and ``serve`` as a user runs them (subprocesses)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pyarrow.parquet as pq
import requests

from common.constants import RAW_EVENTS, REFERENCE_TEAMS
from common.lake import Lake
from ingest.ports import hash_key

# The console script's way in (``python -m modelmeter.cli`` would make a second copy of the module as __main__).
MODELMETER = [sys.executable, "-c", "import sys; from modelmeter.cli import main; sys.exit(main(sys.argv[1:]))"]


def _cli(*args, env=None, check=True):
    result = subprocess.run([*MODELMETER, *args], capture_output=True, text=True,
                            timeout=60, env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_tenants_add_keys_create_and_list(tmp_path):
    lake = str(tmp_path / "lake")
    # GIVEN a team added with its cost centre, allowlist, budget and limits
    _cli("tenants", "add", "analytics", "--cost-center", "CC-42", "--allow", "amazon.nova-*", "--allow",
         "anthropic.*", "--monthly-budget", "1250.50", "--rps", "5", "--daily-tokens", "100000", "--lake", lake)
    # WHEN a key is created
    created = _cli("keys", "create", "analytics", "--lake", lake)
    # THEN the secret alone is on stdout, and the registry (beside the lake) holds only its hash
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n" and secret.startswith("mk_live_") and len(secret) > 50
    registry = json.loads((tmp_path / "tenants.json").read_text())
    assert secret not in json.dumps(registry)
    (key,) = registry["keys"]
    assert key["key_hash"] == hash_key(secret) and secret.startswith(key["api_key_id"])
    (team,) = registry["teams"]
    assert team["monthly_budget_usd"] == "1250.50" and team["allowed_models"] == ["amazon.nova-*", "anthropic.*"]
    assert team["limits"] == {"requests_per_second": 5.0, "daily_tokens": 100000}
    if importlib.util.find_spec("sql.reference"):  # budgets reach the views through the lake's reference data
        assert Lake.open(lake).list_files(REFERENCE_TEAMS)
    listing = _cli("tenants", "list", "--lake", lake).stdout
    assert "analytics\tCC-42\t1250.50" in listing and key["api_key_id"] in listing and secret not in listing


def test_cli_errors_are_one_clear_line(tmp_path):
    tenants = str(tmp_path / "t.json")
    missing = _cli("keys", "create", "ghost", "--tenants", tenants, check=False)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.splitlines()[0].startswith("modelmeter keys create: no team 'ghost'")
    budget = _cli("tenants", "add", "x", "--monthly-budget", "lots", "--tenants", tenants, "--lake",
                  str(tmp_path / "lake"), check=False)
    # a bad option value is a usage error (exit 2), said plainly
    assert budget.returncode == 2 and "--monthly-budget: 'lots' is not an amount of USD" in budget.stderr
    bad_team = _cli("tenants", "add", "Bad Team!", "--tenants", tenants, check=False)
    assert bad_team.returncode == 2 and "'Bad Team!' is not a team id" in bad_team.stderr
    s3 = _cli("tenants", "list", "--lake", "s3://bucket/lake", check=False)
    assert s3.returncode == 1 and "--tenants" in s3.stderr


def test_updating_a_team_changes_only_what_is_given(tmp_path):
    # GIVEN a team with a cost centre, budget, allowlist and limits
    lake = str(tmp_path / "lake")
    _cli("tenants", "add", "beta", "--cost-center", "CC-200", "--allow", "amazon.nova-*", "--monthly-budget",
         "100.50", "--rps", "5", "--daily-tokens", "9000", "--lake", lake)
    # WHEN only its rate limit is changed
    updated = _cli("tenants", "add", "beta", "--rps", "2", "--lake", lake)
    # THEN everything else is kept (an update never widens the allowlist to every model)
    (team,) = json.loads((tmp_path / "tenants.json").read_text())["teams"]
    assert team["cost_center"] == "CC-200" and team["monthly_budget_usd"] == "100.50"
    assert team["allowed_models"] == ["amazon.nova-*"]
    assert team["limits"] == {"requests_per_second": 2.0, "daily_tokens": 9000}
    assert "team beta updated" in updated.stderr


def test_concurrent_cli_writes_lose_nothing(tmp_path):
    tenants, lake = str(tmp_path / "t.json"), str(tmp_path / "lake")
    procs = [subprocess.Popen([*MODELMETER, "tenants", "add", f"team{i}", "--tenants", tenants, "--lake", lake],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(4)]
    assert all(p.wait(60) == 0 for p in procs)
    assert len(json.loads((tmp_path / "t.json").read_text())["teams"]) == 4


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_flushes_every_event_on_sigterm(tmp_path):
    # GIVEN a team, a key and `modelmeter serve --upstream simulator` running as a user would start it
    lake = str(tmp_path / "lake")
    _cli("tenants", "add", "ops", "--lake", lake)
    secret = _cli("keys", "create", "ops", "--lake", lake).stdout.strip()
    port = _free_port()
    server = subprocess.Popen([*MODELMETER, "serve", "--port", str(port), "--upstream",
                               "simulator", "--lake", lake], stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
                time.sleep(0.1)
        # WHEN 25 requests are served and the server gets SIGTERM at once (well before the flush interval)
        for i in range(25):
            r = requests.post(f"{url}/invoke_model?model_id=amazon.nova-lite-v1:0", json={"inputs": f"q{i}"},
                              headers={"x-api-key": secret, "team_id": "ops"}, timeout=10)
            assert r.status_code == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    # THEN all 25 events are in the lake, one per request
    files = Lake.open(lake).list_files(RAW_EVENTS)
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert len(rows) == 25 and len({r["request_id"] for r in rows}) == 25
    assert "flushed" in server.stderr.read()


def test_serve_bedrock_without_a_region_is_one_clear_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    result = subprocess.run([*MODELMETER, "serve", "--upstream", "bedrock", "--port", str(_free_port()), "--lake",
                             str(tmp_path / "lake")], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("modelmeter serve: --upstream bedrock:")
    assert "Traceback" not in result.stderr
