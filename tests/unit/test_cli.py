"""The command line's contract: exit 0 / 1 (one clear line first) / 2 (usage), whatever goes wrong underneath."""

from __future__ import annotations

import json
import subprocess
import sys

from modelmeter.cli import main


def test_an_os_error_is_one_line_and_exit_1(tmp_path, capsys):
    # GIVEN a "lake" that is a plain file, so the folder cannot be opened
    not_a_folder = tmp_path / "lake"
    not_a_folder.write_text("oops")

    code = main(["report", "--lake", str(not_a_folder)])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("modelmeter report: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_every_command_with_data_accepts_lake_including_sql_render(capsys):
    assert main(["sql", "render", "--dialect", "athena", "--lake", "/nonexistent/lake"]) == 0
    assert "CREATE OR REPLACE VIEW" in capsys.readouterr().out


def test_a_closed_pipe_stops_quietly(tmp_path):
    # GIVEN a reader that is gone before the command writes (`… | head -c 0`): the import alone takes longer
    script = "import sys; from modelmeter.cli import main; sys.exit(main(sys.argv[1:]))"
    cli = subprocess.Popen([sys.executable, "-c", script, "sql", "render", "--dialect", "duckdb"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cli.stdout.close()

    # THEN it ends without a traceback, with a failure status
    _, err = cli.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert cli.returncode == 1


def test_ingest_names_a_folder_given_instead_of_files(tmp_path, capsys):
    assert main(["ingest", str(tmp_path), "--lake", str(tmp_path / "lake")]) == 1
    assert "not a file but a folder" in capsys.readouterr().err


def test_allow_takes_several_patterns_at_once_as_design_writes_it(tmp_path, capsys):
    # GIVEN the form DESIGN.md shows (`--allow MODEL_PATTERN …`) and the repeated form, in one call
    lake = str(tmp_path / "lake")
    code = main(["tenants", "add", "search", "--allow", "anthropic.*", "amazon.nova-*", "--allow", "cohere.*",
                 "--lake", lake])
    # THEN every pattern is in the team's allowlist, in order
    assert code == 0
    registry = json.loads((tmp_path / "tenants.json").read_text())
    assert registry["teams"][0]["allowed_models"] == ["anthropic.*", "amazon.nova-*", "cohere.*"]
