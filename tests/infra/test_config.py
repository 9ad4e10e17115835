"""The deployment config: the sample loads; a bad config is refused with the file and the key path of each problem."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import ApiKeysOnlyUnit, ConfigError, FullUnit, load_config, parse_config
from tests.infra.conftest import sample_data


def test_sample_has_a_full_unit_and_an_api_keys_only_unit_attached_to_it() -> None:
    config = load_config()
    full, keys_only = config.units
    assert isinstance(full, FullUnit) and isinstance(keys_only, ApiKeysOnlyUnit)
    assert keys_only.parent == full.name
    assert full.transform.engine == "duckdb"
    assert all(team.keys for unit in config.units for team in unit.teams)


def _broken(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(sample_data())
    edit(data)
    return data


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["units"][0].update(vpc_cidr="10.0.0.0/8"), "units[0].vpc_cidr: '10.0.0.0/8' must be an IPv4 block"),
    (lambda d: d["units"][0]["teams"][0]["quota"].update(limit=0),
     "units[0].teams[0].quota.limit: Input should be greater than 0"),
    (lambda d: d["units"][0]["teams"][1].update(tema_id="x"), "units[0].teams[1].tema_id: unknown key"),
    (lambda d: d["units"][1].update(parent="nowhere"), "units[1].parent: 'nowhere' is not a full unit"),
    (lambda d: d["units"][1]["teams"][0].update(team_id="search"),
     "team ids must be unique on the API of unit 'research': search repeated"),
    (lambda d: d["units"][0]["transform"].update(schedule="every hour"),
     "units[0].transform.schedule: 'every hour' is not an EventBridge schedule"),
    (lambda d: d["units"][0]["transform"].update(engine="spark"), "units[0].transform.engine: Input should be"),
    (lambda d: d["units"][0].update(reporting_timezone="Mars/Olympus"),
     "units[0].reporting_timezone: 'Mars/Olympus' is not an IANA time zone"),
    (lambda d: d["units"][0]["quicksight"].update(enabled=True),
     "units[0].quicksight: enabled QuickSight needs at least one principal"),
    (lambda d: d["units"][0]["teams"][0].update(team_id="Data Science"),
     "units[0].teams[0].team_id: 'Data Science' is not a team id"),
    (lambda d: d["units"][0].update(lambda_package="image", dependency_layer_arns=[
        "arn:aws:lambda:eu-west-1:123456789012:layer:deps:1"]),
     "units[0]: dependency_layer_arns apply to zip functions only"),
    (lambda d: d["units"][1].update(kind="partial"), "units[1]: Input tag 'partial' found using 'kind'"),
    (lambda d: d["units"].append(copy.deepcopy(d["units"][1])), "unit names must be unique: marketing repeated"),
    (lambda d: d["units"][0]["teams"][0].update(keys=["ci", "ci"]), "units[0].teams[0].keys: key names must be unique"),
    (lambda d: d["units"][0].update(billing={"enabled": True}),
     "units[0].billing: enabled billing needs payer_account"),
    (lambda d: d["units"][0].update(billing={"payer_account": "12345"}),
     "units[0].billing.payer_account: '12345' is not an AWS account id: write its 12 digits"),
    (lambda d: d["units"][0].update(billing={"payer_account": "210987654321", "schedule": "every 6 hours"}),
     "units[0].billing.schedule: 'every 6 hours' is not an EventBridge schedule"),
    (lambda d: d["units"][0].update(billing={"export_name": "cur 2.0"}),
     "units[0].billing.export_name: 'cur 2.0' is not a Data Exports name"),
    (lambda d: d["units"][0].update(billing={"enabled": True, "payer": "210987654321"}),
     "units[0].billing.payer: unknown key"),
])
def test_a_bad_config_is_refused_naming_the_file_and_the_key(edit: Any, expected: str) -> None:
    # GIVEN the sample config with one mistake
    data = _broken(edit)
    # WHEN it is validated THEN the error names the file and the key path, in words a platform engineer can act on
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="units.yaml")
    message = str(caught.value)
    assert message.startswith("units.yaml: invalid deployment config:")
    assert expected in message, message
    assert "Traceback" not in message and "pydantic" not in message


def test_an_api_keys_only_unit_cannot_carry_full_unit_settings() -> None:
    data = _broken(lambda d: d["units"][1].update(vpc_cidr="10.9.0.0/16"))
    with pytest.raises(ConfigError, match=r"units\[1\]\.vpc_cidr: unknown key"):
        parse_config(data)


def test_unreadable_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: cannot read the deployment config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("units:\n  - name: a\n    teams: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+: not valid YAML"):
        load_config(bad)


def test_app_refuses_a_bad_config_with_status_1_before_synthesizing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a config whose api_keys_only unit names no existing parent
    path = tmp_path / "units.yaml"
    path.write_text(yaml.safe_dump(_broken(lambda d: d["units"][1].update(parent="gone"))))
    monkeypatch.setenv("MODELMETER_UNITS_CONFIG", str(path))
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path / "out"))
    import app

    # WHEN app.py runs THEN it exits 1 with the problem on stderr, and writes no template
    assert app.main() == 1
    err = capsys.readouterr().err
    assert f"{path}: invalid deployment config" in err and "units[1].parent: 'gone' is not a full unit" in err
    assert not list((tmp_path / "out").glob("*.template.json"))


def test_billing_is_off_by_default_and_a_block_takes_the_documented_defaults() -> None:
    assert load_config().unit("research").billing.enabled is False
    data = _broken(lambda d: d["units"][0].update(billing={"enabled": True, "payer_account": "210987654321"}))
    billing = parse_config(data).unit("research").billing
    assert (billing.export_name, billing.schedule, billing.include_tax) == ("modelmeter-cur2", "rate(6 hours)", False)
