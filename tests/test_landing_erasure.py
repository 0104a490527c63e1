"""Landing ingest and erasure exclude each other: an opt-out made while a file loads is
recorded, wins over the events loaded meanwhile, and leaves no raw line or temp file."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import pytest

from dmp.identity import erasure
from dmp.identity.erasure import Erasure
from dmp.identity.privacy import optout
from dmp.ingest import ingest_landing, landing, loader
from dmp.web import create_app
from dmp.web.users import add_user, create_token
from tests.conftest import NOW

HEADER = "ts,id,id_type,url,event,category,keywords,country,consent,gpc\n"
VICTIM = "racevictim3"
OTHERS = [f"ck-crowd-{n}" for n in range(5)]
JOB_TOKEN = "test-token-1234"


def _rows(*ids: str) -> str:
    return HEADER + "".join(
        f"2026-11-19T10:00:00Z,{i},cookie,https://cars.example/,,,,,,\n" for i in ids
    )


def _landing(config) -> Path:
    folder = config.path("ingest.landing")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _holding(folder: Path, text: str) -> list[str]:
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and text.encode() in p.read_bytes()
    )


def _events(store, cookie: str) -> int:
    return store.con.execute("SELECT count(*) FROM events WHERE id = ?", [cookie]).fetchone()[0]


class WatchedLock:
    """The landing lock, telling the test when a thread has to wait for it."""

    def __init__(self, waiting: threading.Event) -> None:
        self.lock = threading.RLock()
        self.waiting = waiting

    def __enter__(self) -> WatchedLock:
        if not self.lock.acquire(blocking=False):
            self.waiting.set()
            self.lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()


@pytest.fixture
def staff(store) -> dict:
    add_user(store, "admin", "admin", password="correct horse battery")
    return {"Authorization": f"Bearer {create_token(store, 'admin')['token']}"}


def test_an_optout_made_while_its_file_loads_wins(config, store, staff, monkeypatch):
    """The ingest has read the file (the ID not yet opted out) when the opt-out comes."""
    folder = _landing(config)
    (folder / "big3.csv").write_text(_rows(VICTIM, *OTHERS))
    monkeypatch.setenv("DMP_API_TOKEN", JOB_TOKEN)
    app = create_app(config, store)
    read, release = threading.Event(), threading.Event()
    filtered = loader._drop_opted_out

    def gate(con) -> None:
        filtered(con)
        read.set()
        assert release.wait(30), "never released"

    monkeypatch.setattr(loader, "_drop_opted_out", gate)
    parked = threading.Event()  # the opt-out waits for the ingest, or is already done
    monkeypatch.setattr(landing, "_LOCK", WatchedLock(parked), raising=False)
    answers: dict = {}

    def run_ingest() -> None:
        answers["run"] = app.test_client().post(
            "/api/jobs/ingest/run?wait=1", headers={"Authorization": f"Bearer {JOB_TOKEN}"}
        )

    def opt_out() -> None:
        answers["optout"] = app.test_client().post(
            "/api/v1/optouts", json={"ids": [VICTIM]}, headers=staff
        )
        parked.set()

    ingest = threading.Thread(target=run_ingest)
    ingest.start()
    assert read.wait(30)
    request = threading.Thread(target=opt_out)
    request.start()
    assert parked.wait(30)
    release.set()
    ingest.join(30)
    request.join(30)

    assert answers["run"].json["run"]["status"] == "succeeded", answers["run"].json
    answer = answers["optout"]
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert _events(store, VICTIM) == 0  # loaded meanwhile, then forgotten
    assert answer.json["new_optouts"] == 1 and answer.json["files"]["errors"] == []
    assert str(folder / "done" / "big3.csv") in answer.json["files"]["files_rewritten"]
    assert all(_events(store, cookie) == 1 for cookie in OTHERS)
    assert _holding(folder, VICTIM) == []
    assert OTHERS[0] in (folder / "done" / "big3.csv").read_text()
    assert list(folder.rglob("*.erasing")) == []


def test_an_optout_is_recorded_when_a_file_cannot_be_cleaned(config, store, staff):
    folder = _landing(config)
    (folder / "a.csv").write_text(_rows(VICTIM, OTHERS[0]))
    ingest_landing(store, config, now=NOW)
    (folder / "done" / ".a.csv.erasing").mkdir()  # in the way of the rewrite
    answer = (
        create_app(config, store)
        .test_client()
        .post("/api/v1/optouts", json={"ids": [VICTIM]}, headers=staff)
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    (error,) = answer.json["files"]["errors"]
    assert error.startswith(f"{folder / 'done' / 'a.csv'}: ")
    assert answer.json["new_optouts"] == 1 and answer.json["rows_deleted"]["events"] == 1
    assert store.con.execute("SELECT id FROM optouts").fetchall() == [(VICTIM,)]
    assert _events(store, VICTIM) == 0 and _events(store, OTHERS[0]) == 1
    assert VICTIM in (folder / "done" / "a.csv").read_text()  # left whole, nobody's line lost
    assert (folder / "done" / ".a.csv.erasing").is_dir()  # not dmp's: left alone


def test_a_file_moved_while_it_is_rewritten_is_tolerated(config, store, monkeypatch):
    """Someone else's `mv` from the landing folder to done/ while the rewrite runs."""
    folder = _landing(config)
    (folder / "a.csv").write_text(_rows(VICTIM, OTHERS[0]))
    (folder / "done").mkdir()
    create = erasure._create

    def create_then_move(partial: Path, gzipped: bool):
        if partial.parent == folder:
            (folder / "a.csv").rename(folder / "done" / "a.csv")
        return create(partial, gzipped)

    monkeypatch.setattr(erasure, "_create", create_then_move)
    summary = optout(store, [VICTIM], now=NOW, erasure=Erasure(config))
    assert summary["new_optouts"] == 1 and summary["files"]["errors"] == []
    assert summary["files"]["files_rewritten"] == [str(folder / "done" / "a.csv")]
    assert not (folder / "a.csv").exists()
    assert _holding(folder, VICTIM) == [] and list(folder.rglob("*.erasing")) == []
    assert OTHERS[0] in (folder / "done" / "a.csv").read_text()


def test_a_broken_gzip_holding_the_id_is_still_removed_whole(config, store):
    """Refused at ingest, so nothing of it is lost; the narrower error handling that
    leaves unwritable files alone must not leave this one."""
    failed = _landing(config) / "failed"
    failed.mkdir()
    crowd = "".join(f"2026-11-19T10:00:00Z,ck-{n:07d},cookie,,,,,,,\n" for n in range(120_000))
    broken = failed / "t.csv.gz"
    broken.write_bytes(gzip.compress(_rows(VICTIM).encode() + crowd.encode())[:-12])
    summary = optout(store, [VICTIM], now=NOW, erasure=Erasure(config))
    assert summary["files"]["files_removed"] == [str(broken)]
    assert summary["files"]["errors"] == [] and not broken.exists()


def test_the_cli_names_a_file_it_could_not_clean_and_exits_1(cli, config):
    assert cli("init").exit_code == 0
    done = _landing(config) / "done"
    done.mkdir()
    (done / "a.csv").write_text(_rows(VICTIM, OTHERS[0]))
    (done / ".a.csv.erasing").mkdir()
    result = cli("optout", "add", VICTIM)
    assert result.exit_code == 1
    assert "1 new opt-outs" in result.output
    assert f"error: {done / 'a.csv'}: not cleaned, left as it was" in result.output
