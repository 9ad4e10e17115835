"""``modelmeter dashboard --lake s3://…``: the page from a lake in S3 (moto's S3 server on 127.0.0.1)."""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path

import pytest

from modelmeter.cli import main
from tests.dashboards.browser import parse_dom
from tests.fixture_lake import build_fixture_lake


@pytest.mark.slow
def test_dashboard_from_an_s3_lake(s3_lake_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the fixture lake in an S3 bucket
    facts = build_fixture_lake(s3_lake_uri)
    # WHEN the dashboard is rendered from it through the command line
    out = tmp_path / "report.html"
    assert main(["dashboard", "--lake", s3_lake_uri, "--out", str(out)]) == 0
    # THEN the page is written locally and its KPIs are the lake's exact figures
    assert capsys.readouterr().out.strip() == str(out.resolve())
    dom = parse_dom(out.read_text(encoding="utf-8"))
    assert Decimal(dom.by_id("kpi-total-spend").attrs["data-value"]) == facts.total_cost
    assert int(dom.by_id("kpi-invocations").attrs["data-value"]) == facts.invocations


@pytest.mark.slow  # pyarrow's S3 client retries with back-off (about 6 s) before it gives up
def test_an_unreachable_s3_lake_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an S3 endpoint where nothing listens
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    # WHEN the dashboard is asked for
    status = main(["dashboard", "--lake", "s3://lake/modelmeter", "--out", str(tmp_path / "r.html")])
    # THEN it fails with one line naming the command, and writes nothing
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("modelmeter dashboard: ") and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()
