"""The `dmp` command as schedulers script it: --help everywhere, --json contracts, exit codes."""

from __future__ import annotations

import json

import pytest

from dmp.cli import main

HEADER = "ts,id,id_type\n"
CONTRACT = {"file", "status", "rows", "loaded", "duplicates", "quarantined", "reasons"}


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_init_status_and_ingest_json_contract(cli, tmp_path):
    init = json.loads(cli("init", "--json").output)
    assert init["schema_version"] >= 1
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "2026-11-19T10:00:00Z,ck1,cookie\nnever,ck2,cookie\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("nothing,useful\n")

    result = cli("ingest", "--json", str(good), str(bad))
    assert result.exit_code == 1
    loaded, rejected = json.loads(result.stdout)
    assert CONTRACT <= set(loaded) and CONTRACT | {"error"} <= set(rejected)
    assert (loaded["status"], loaded["rows"], loaded["loaded"], loaded["quarantined"]) == (
        "loaded",
        2,
        1,
        1,
    )
    assert loaded["reasons"] == {"bad_timestamp": 1}
    assert rejected["status"] == "rejected" and "missing required column" in rejected["error"]

    again = cli("ingest", "--json", str(good))
    assert again.exit_code == 0
    assert json.loads(again.stdout)[0]["status"] == "skipped"

    status = json.loads(cli("status", "--json").stdout)
    assert (status["events"], status["devices"], status["devices_by_type"]) == (
        1,
        1,
        {"cookie": 1},
    )
    assert status["last_ingest"]["status"] == "rejected"
    assert status["quarantined_by_reason"] == {"bad_timestamp": 1}


def test_human_output_and_usage_errors(cli, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "2026-11-19T10:00:00Z,ck1,cookie\n")
    result = cli("ingest", str(good))
    assert result.exit_code == 0 and "1 new events" in result.output
    assert cli("ingest").exit_code == 2
    assert "events       1" in cli("status").output
    bad_set = cli("--set", "store.threads=many", "status")
    assert bad_set.exit_code == 1 and "store.threads (from --set)" in bad_set.output


def test_landing_option_uses_configured_folder(cli, home):
    cli("init")
    (home / "landing" / "a.csv").write_text(HEADER + "2026-11-19T10:00:00Z,ck1,cookie\n")
    result = cli("ingest", "--landing", "--json")
    assert json.loads(result.stdout)[0]["status"] == "loaded"
    assert (home / "landing" / "done" / "a.csv").exists()


def test_instances_live_side_by_side(tmp_path):
    from click.testing import CliRunner

    runner = CliRunner()
    log = tmp_path / "a.csv"
    log.write_text(HEADER + "2026-11-19T10:00:00Z,ck1,cookie\n")
    runner.invoke(main, ["--home", str(tmp_path / "one"), "ingest", str(log)])
    one = runner.invoke(main, ["--home", str(tmp_path / "one"), "status", "--json"])
    two = runner.invoke(main, ["status", "--json"], env={"DMP_HOME": str(tmp_path / "two")})
    assert json.loads(one.stdout)["events"] == 1
    assert json.loads(two.stdout)["events"] == 0


def test_generate_writes_a_world_that_ingests(cli, tmp_path):
    out = tmp_path / "world"
    summary = json.loads(
        cli("generate", "--devices", "300", "--events", "3000", "--out", str(out),
            "--files", "2", "--bad-rows", "8", "--json").stdout
    )  # fmt: skip
    assert summary["events"] == 3008 and len(summary["files"]) == 2
    results = json.loads(cli("ingest", "--json", *summary["files"]).stdout)
    assert sum(r["loaded"] for r in results) == 3000
    assert sum(r["quarantined"] for r in results) == 8  # 7 bad rows + 1 short line
    assert sum(r["dropped"] for r in results) == 1  # the limited-ad-tracking MAID
    status = json.loads(cli("status", "--json").stdout)
    assert status["devices"] == 300 and status["id_links"] > 0


def test_run_ingest_job_over_landing(cli, home):
    cli("init")
    (home / "landing" / "a.csv").write_text(HEADER + "2026-11-19T10:00:00Z,ck1,cookie\n")
    result = cli("run", "ingest", "--json")
    assert result.exit_code == 0
    [run] = json.loads(result.stdout)
    assert (run["job"], run["trigger"], run["status"]) == ("ingest", "cli", "succeeded")
    assert run["result"] == {"files": 1, "loaded": 1, "quarantined": 0, "rejected": []}
    assert cli("run", "nope").exit_code == 2
