"""Landing mode: only regular files of the folder are read; raw files are kept keep_days."""

from __future__ import annotations

import os
from datetime import UTC, timedelta

from dmp.ingest import ingest_landing
from jobs import JOBS
from tests.conftest import NOW

HEADER = "ts,id,id_type,url,event,category,keywords,country,consent,gpc\n"
ROW = "2026-11-19T10:00:00Z,ck1,cookie,,,,,,,\n"


def _landing(config):
    landing = config.path("ingest.landing")
    landing.mkdir(parents=True, exist_ok=True)
    return landing


def test_symlinks_are_refused_unread_and_unquoted(store, config, tmp_path):
    landing = _landing(config)
    outside = tmp_path / "outside.csv"
    outside.write_text(HEADER + "2026-11-19T10:00:00Z,ck-outside,cookie,,,,,,,\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:secret-first-line\n")
    (landing / "linked.csv").symlink_to(outside)
    (landing / "quoted.csv").symlink_to(secret)
    (landing / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    (landing / "dir.csv").symlink_to(tmp_path)

    results = ingest_landing(store, config, now=NOW)

    assert {r.status for r in results} == {"rejected"}
    assert all("symbolic link" in r.error for r in results)
    assert store.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    failed = landing / "failed"
    for name in ("linked.csv", "quoted.csv", "dangling.csv", "dir.csv"):
        assert (failed / name).is_symlink()  # the link moved, never its target
        assert "secret-first-line" not in (failed / f"{name}.reason").read_text()
    assert outside.exists() and secret.exists()
    assert "secret-first-line" not in " ".join(r.error for r in results)


def test_regular_files_still_load_beside_refused_links(store, config, tmp_path):
    landing = _landing(config)
    (landing / "a.csv").write_text(HEADER + ROW)
    (landing / "b.csv").symlink_to(landing / "a.csv")  # inside, but a link all the same
    results = {os.path.basename(r.file): r for r in ingest_landing(store, config, now=NOW)}
    assert results["a.csv"].status == "loaded" and results["a.csv"].loaded == 1
    assert results["b.csv"].status == "rejected"
    assert (landing / "done" / "a.csv").is_file()


def test_raw_files_are_removed_after_keep_days_by_the_expire_job(store, config):
    landing = _landing(config)
    (landing / "a.csv").write_text(HEADER + ROW)
    (landing / "b.csv").write_text("nope\n")
    ingest_landing(store, config, now=NOW)
    filed = sorted(p.name for p in landing.glob("*/*"))
    assert filed == ["a.csv", "b.csv", "b.csv.reason"]
    # Filed at the run's time, whatever the file's own modification time was.
    assert (landing / "done" / "a.csv").stat().st_mtime == NOW.replace(tzinfo=UTC).timestamp()
    synced = landing / "idsync" / "ttd" / "done" / "collector-1.csv"
    synced.parent.mkdir(parents=True)
    synced.write_text("ck1,tdid1\n")
    moment = NOW.replace(tzinfo=UTC).timestamp()
    os.utime(synced, (moment, moment))

    early = JOBS["expire"](store, config, now=NOW + timedelta(days=6, hours=23))
    assert early["raw_files_past_keep_days"] == 0
    dry = JOBS["expire"](store, config, now=NOW + timedelta(days=7), dry_run=True)
    assert dry["raw_files_past_keep_days"] == 4
    assert len([p for p in landing.rglob("*") if p.is_file()]) == 4
    result = JOBS["expire"](store, config, now=NOW + timedelta(days=7))
    assert result["raw_files_past_keep_days"] == 4
    assert [p for p in landing.rglob("*") if p.is_file()] == []


def test_keep_days_is_configurable(store, home):
    from dmp.config import load_config
    from dmp.ingest.landing import prune

    config = load_config(home, env={"DMP_LANDING__KEEP_DAYS": "1"})
    landing = _landing(config)
    (landing / "a.csv").write_text(HEADER + ROW)
    ingest_landing(store, config, now=NOW)
    assert prune(config, NOW + timedelta(hours=23))["raw_files_past_keep_days"] == 0
    assert prune(config, NOW + timedelta(days=1))["raw_files_past_keep_days"] == 1
