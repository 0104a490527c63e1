"""Delta sync end to end: a real DuckDB file, a real local HTTP fake DSP, injected faults.

After every scenario the platform must hold exactly the segment's desired members.
Time is injected (``now=``, a recording ``sleep``); nothing here sleeps for real.
"""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest
import requests
from requests.adapters import HTTPAdapter

from dmp.activation import add_destination, history, link_segment, sync, unlink_segment
from dmp.identity.expiry import expire
from dmp.identity.privacy import optout
from dmp.store import open_store
from jobs import JOBS
from tests.conftest import NOW
from tests.fake_dsp import SECRET, TOKEN, FakeDSP

ENV = {"DSP_TOKEN": TOKEN, "DSP_SECRET": SECRET}


def maid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def make_segment(store, name: str) -> int:
    segment_id = store.con.execute("SELECT nextval('segment_id_seq')").fetchall()[0][0]
    store.con.execute(
        "INSERT INTO segments VALUES (?, ?, 'rule', '{}', NULL, NULL, 30, ?, ?, 'live')",
        [segment_id, name, NOW, NOW],
    )
    return segment_id


def add_members(store, segment_id: int, ids: list[str], id_type="maid", last_seen=NOW) -> None:
    """Devices (if new) and current memberships, straight into the tables of the contract."""
    params = {"ids": ids, "type": id_type, "seen": last_seen}
    store.con.execute(
        """
        INSERT INTO devices SELECT i, $type, $seen, $seen, 1, false FROM unnest($ids) t(i)
        WHERE i NOT IN (SELECT id FROM devices)
        """,
        params,
    )
    store.con.execute(
        "INSERT INTO segment_members SELECT $seg, i, $type, $seen, $expires FROM unnest($ids) t(i)",
        {**params, "seg": segment_id, "expires": NOW + timedelta(days=60)},
    )


def drop_members(store, segment_id: int, ids: list[str]) -> None:
    store.con.execute(
        "DELETE FROM segment_members WHERE segment_id = ? AND list_contains(?, id)",
        [segment_id, ids],
    )


def destination(store, dsp, name: str, kind: str, **options) -> None:
    base = {
        "ttd": {"advertiser_id": "adv", "token_env": "DSP_TOKEN", "base_url": dsp.url},
        "meta": {"token_env": "DSP_TOKEN", "base_url": dsp.url},
        "xandr": {"token_env": "DSP_TOKEN", "base_url": dsp.url},
        "webhook": {"secret_env": "DSP_SECRET", "url": f"{dsp.url}/hook"},
        "file": {},
    }[kind]
    add_destination(store, name, kind, {**base, **options}, now=NOW)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def dsp():
    with FakeDSP() as fake:
        yield fake


@pytest.fixture
def run(store, config):
    """sync() with the fake's secrets and a sleep that only records; results by destination."""
    sleeps = Sleeps()

    def _run(now=NOW, **kwargs) -> dict[str, list[dict]]:
        results = sync(store, config, now=now, env=ENV, sleep=sleeps, **kwargs)
        by_destination: dict[str, list[dict]] = {}
        for result in results:
            by_destination.setdefault(result["destination"], []).append(result)
        return by_destination

    _run.sleeps = sleeps
    return _run


@pytest.fixture
def sports(store):
    """A segment of 250 MAIDs."""
    segment_id = make_segment(store, "sports")
    ids = [maid(i) for i in range(250)]
    add_members(store, segment_id, ids)
    return segment_id, ids


def held(store, name: str) -> int:
    return store.con.execute(
        "SELECT count(*) FROM destination_state JOIN destinations USING (destination_id) "
        "WHERE name = ?",
        [name],
    ).fetchall()[0][0]


def test_every_platform_ends_with_exactly_the_segment(store, dsp, run, sports):
    segment_id, ids = sports
    for kind in ("ttd", "meta", "xandr", "webhook"):
        destination(store, dsp, kind, kind)
    link_segment(store, "ttd", "sports")
    link_segment(store, "meta", "sports", "123")
    link_segment(store, "xandr", "sports", "77")
    link_segment(store, "webhook", "sports")

    first = run()
    assert {r[0]["status"] for r in first.values()} == {"succeeded"}
    expected = set(ids)
    assert dsp.segment("ttd", "sports") == expected
    assert dsp.segment("meta", "123") == expected
    assert dsp.segment("xandr", "77") == expected
    assert dsp.segment("webhook", "sports") == expected
    assert first["xandr"][0]["requests"] == 1 and first["ttd"][0]["accepted"] == 250

    drop_members(store, segment_id, ids[:30])
    add_members(store, segment_id, [maid(i) for i in range(1000, 1010)])
    second = run()
    expected = set(ids[30:]) | {maid(i) for i in range(1000, 1010)}
    for platform, name in (("ttd", "sports"), ("meta", "123"), ("xandr", "77")):
        assert dsp.segment(platform, name) == expected
    assert second["meta"][0]["adds_sent"] == 10 and second["meta"][0]["removes_sent"] == 30

    requests_before = len(dsp.requests)
    third = run()
    assert len(dsp.requests) == requests_before
    assert all(r[0]["accepted"] == 0 and r[0]["status"] == "succeeded" for r in third.values())


def test_throttling_outages_and_rejections_converge(store, dsp, run, sports):
    _, ids = sports
    destination(store, dsp, "hook", "webhook", max_batch_items=100)
    link_segment(store, "hook", "sports")
    dsp.fail_next(2, 429, {"Retry-After": "3"})
    dsp.fail_next(1, 503)
    dsp.reject(ids[:5], "unknown user")

    result = run()["hook"][0]
    assert result["status"] == "partial"
    assert result["rejected"] == 5 and result["errors"] == {"unknown user": 5}
    assert result["retries"] == 3 and result["throttled_seconds"] == 6.0
    assert run.sleeps[:2] == [3.0, 3.0]
    assert dsp.segment("webhook", "sports") == set(ids[5:])

    dsp.rejected.clear()
    again = run()["hook"][0]
    assert again["status"] == "succeeded" and again["adds_sent"] == 5
    assert dsp.segment("webhook", "sports") == set(ids)
    assert [r["status"] for r in history(store)] == ["succeeded", "partial"]


def test_opted_out_ids_never_reach_a_platform_and_leave_it_after_a_sync(store, dsp, run, sports):
    _, ids = sports
    destination(store, dsp, "ttd", "ttd")
    link_segment(store, "ttd", "sports")
    never = ids[:3]
    optout(store, never, id_type="maid", now=NOW)
    run()
    assert dsp.received.isdisjoint(never)
    assert dsp.segment("ttd", "sports") == set(ids[3:])

    later = ids[3:6]
    optout(store, later, id_type="maid", now=NOW)
    result = run()["ttd"][0]
    assert result["removes_sent"] == 3
    assert dsp.segment("ttd", "sports") == set(ids[6:])
    assert dsp.received.isdisjoint(never)
    # No platform holds them any more, so the removal queue forgets them.
    queued = store.con.execute("SELECT count(*) FROM identity_removals").fetchall()[0][0]
    assert queued == 0


def test_expired_devices_are_removed(store, config, dsp, run):
    segment_id = make_segment(store, "sports")
    fresh = [maid(i) for i in range(200)]
    stale = [maid(i) for i in range(200, 220)]
    add_members(store, segment_id, fresh)
    add_members(store, segment_id, stale, last_seen=NOW - timedelta(days=100))
    destination(store, dsp, "xandr", "xandr")
    link_segment(store, "xandr", "sports", "77")
    run()
    assert dsp.segment("xandr", "77") == set(fresh + stale)

    expire(store, config, NOW)
    assert store.con.execute("SELECT count(*) FROM identity_removals").fetchall()[0][0] == 20
    assert run()["xandr"][0]["removes_sent"] == 20
    assert dsp.segment("xandr", "77") == set(fresh)
    assert store.con.execute("SELECT count(*) FROM identity_removals").fetchall()[0][0] == 0


class Crash(BaseException):
    """Stands in for kill -9: nothing in dmp catches it."""


class CrashAfter(HTTPAdapter):
    """Delivers ``n`` requests, then dies right after the platform answered the last one,
    before dmp could record it."""

    def __init__(self, n: int):
        super().__init__()
        self.left = n

    def send(self, *args, **kwargs):
        response = super().send(*args, **kwargs)
        self.left -= 1
        if self.left == 0:
            response.close()
            raise Crash
        return response


def test_a_crash_mid_run_is_picked_up_by_the_next_run(store, dsp, run, sports):
    _, ids = sports
    destination(store, dsp, "hook", "webhook", max_batch_items=50)
    link_segment(store, "hook", "sports")
    with requests.Session() as session, pytest.raises(Crash):
        session.mount("http://", CrashAfter(3))
        run(session=session)
    assert len(dsp.segment("webhook", "sports")) == 150  # the platform got three batches
    assert held(store, "hook") == 100  # dmp recorded two before it died
    assert [r["status"] for r in history(store)] == ["running"]

    result = run()["hook"][0]
    assert result["adds_sent"] == 150 and result["status"] == "succeeded"
    assert dsp.segment("webhook", "sports") == set(ids)
    assert held(store, "hook") == 250
    assert [r["status"] for r in history(store)] == ["succeeded", "interrupted"]


def test_sync_runs_older_than_the_history_are_pruned(store, dsp, run, sports):
    destination(store, dsp, "ttd", "ttd")
    link_segment(store, "ttd", "sports")
    run()
    later = NOW + timedelta(days=366)
    run(now=later)
    assert [r["started_at"][:10] for r in history(store)] == [later.date().isoformat()]


def test_one_failing_destination_does_not_block_another(store, dsp, run, sports):
    _, ids = sports
    other = make_segment(store, "news")
    add_members(store, other, ids[:120])
    dsp.down.add("/hook-down")
    destination(
        store,
        dsp,
        "broken",
        "webhook",
        url=f"{dsp.url}/hook-down",
        max_batch_items=50,
        max_retries=1,
        breaker_failures=2,
    )
    destination(store, dsp, "ttd", "ttd")
    for name in ("broken", "ttd"):
        link_segment(store, name, "sports")
        link_segment(store, name, "news")

    results = run()
    broken = {r["segment"]: r for r in results["broken"]}
    assert broken["news"]["status"] == "failed"
    assert broken["news"]["reason"].startswith("circuit open after 2 failed batch(es): HTTP 503")
    assert broken["sports"]["status"] == "skipped" and "circuit open" in broken["sports"]["reason"]
    assert len([r for r in dsp.requests if r[1] == "/hook-down"]) == 4  # 2 batches x 2 tries
    assert [r["status"] for r in results["ttd"]] == ["succeeded", "succeeded"]
    assert dsp.segment("ttd", "sports") == set(ids)
    assert dsp.segment("ttd", "news") == set(ids[:120])

    dsp.down.clear()  # the next run probes it again and it has recovered
    recovered = run(destination="broken")["broken"]
    assert [r["status"] for r in recovered] == ["succeeded", "succeeded"]
    assert dsp.segment("webhook", "sports") == set(ids)


def test_dry_run_sends_nothing_and_changes_nothing(store, dsp, run, sports):
    destination(store, dsp, "ttd", "ttd")
    link_segment(store, "ttd", "sports")
    result = run(dry_run=True)["ttd"][0]
    assert result["dry_run"] and result["adds_sent"] == 250 and result["requests"] == 1
    assert dsp.requests == [] and dsp.received == set()
    assert held(store, "ttd") == 0 and history(store) == []


def test_small_audiences_are_not_pushed_and_a_shrinking_one_is_removed_whole(
    store, dsp, run, sports
):
    segment_id, ids = sports
    tiny = make_segment(store, "tiny")
    add_members(store, tiny, ids[:50])
    destination(store, dsp, "meta", "meta")
    link_segment(store, "meta", "tiny", "1")
    link_segment(store, "meta", "sports", "2")

    results = {r["segment"]: r for r in run()["meta"]}
    assert results["tiny"]["status"] == "skipped"
    assert results["tiny"]["reason"] == "audience of 50 is below the minimum of 100"
    assert dsp.segment("meta", "1") == set() and dsp.segment("meta", "2") == set(ids)

    drop_members(store, segment_id, ids[:160])
    shrunk = {r["segment"]: r for r in run()["meta"]}["sports"]
    assert "whole audience removed" in shrunk["reason"]
    assert shrunk["removes_sent"] == 250 and dsp.segment("meta", "2") == set()


def test_ttd_sends_cookies_only_as_matched_partner_ids(store, dsp, run, sports):
    segment_id, ids = sports
    cookies = [f"ck{i}" for i in range(20)]
    add_members(store, segment_id, cookies, id_type="cookie")
    tdids = {c: maid(5000 + i) for i, c in enumerate(cookies[:10])}
    for cookie, tdid in tdids.items():
        store.con.execute("INSERT INTO partner_ids VALUES ('ttd', ?, ?, ?)", [cookie, tdid, NOW])
    destination(store, dsp, "ttd", "ttd")
    destination(store, dsp, "meta", "meta")
    link_segment(store, "ttd", "sports")
    link_segment(store, "meta", "sports", "9")

    results = run()
    assert results["ttd"][0]["unmapped"] == 10 and results["ttd"][0]["desired"] == 260
    assert dsp.segment("ttd", "sports") == set(ids) | set(tdids.values())
    assert dsp.segment("meta", "9") == set(ids)  # Meta takes MAIDs only
    assert dsp.received.isdisjoint(cookies)


def test_per_item_ttl_is_refreshed_before_it_runs_out(store, dsp, run, sports):
    destination(store, dsp, "ttd", "ttd", ttl_days=30)
    link_segment(store, "ttd", "sports")
    run()
    assert run(now=NOW + timedelta(days=10))["ttd"][0]["refreshes_sent"] == 0
    refreshed = run(now=NOW + timedelta(days=16))["ttd"][0]
    assert refreshed["refreshes_sent"] == 250 and refreshed["adds_sent"] == 0
    expiry = store.con.execute("SELECT DISTINCT expires_at FROM destination_state").fetchall()
    assert expiry == [(NOW + timedelta(days=46),)]


def test_unlink_removes_what_was_pushed_then_forgets_the_link(store, dsp, run, sports):
    _, ids = sports
    destination(store, dsp, "xandr", "xandr")
    link_segment(store, "xandr", "sports", "77")
    run()
    assert unlink_segment(store, "xandr", "sports")["pending_removals"] == 250
    result = run()["xandr"][0]
    assert result["removes_sent"] == 250 and result["reason"].startswith("unlinked")
    assert dsp.segment("xandr", "77") == set()
    assert store.con.execute("SELECT count(*) FROM destination_segments").fetchall()[0][0] == 0
    assert run() == {}


def test_file_export_writes_the_whole_audience(store, config, run, sports):
    segment_id, ids = sports
    add_destination(store, "files", "file", {}, now=NOW)
    link_segment(store, "files", "sports")
    run()
    path = config.home / "exports" / "sports.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["id"] for r in rows} == set(ids) and {r["id_type"] for r in rows} == {"maid"}

    drop_members(store, segment_id, ids[:10])
    result = run()["files"][0]
    assert result["removes_sent"] == 10 and held(store, "files") == 240
    unlink_segment(store, "files", "sports")
    run()
    assert not path.exists() and held(store, "files") == 0


def test_sync_job_is_registered(store, config, dsp, sports):
    destination(store, dsp, "hook", "webhook", secret_env="NOT_SET_ANYWHERE")
    link_segment(store, "hook", "sports")
    dry = JOBS["sync"](store, config, NOW, dry_run=True)  # `dmp run sync --dry-run`
    assert dry["by_status"] == {"succeeded": 1} and dsp.requests == []
    summary = JOBS["sync"](store, config, NOW)
    assert summary["by_status"] == {"failed": 1}
    assert "NOT_SET_ANYWHERE" in summary["warnings"][0]


def test_cli_destinations_and_sync(config, cli, dsp, monkeypatch):
    with open_store(config) as store:
        add_members(store, make_segment(store, "sports"), [maid(i) for i in range(150)])
    refused = cli("destinations", "add", "x", "--kind", "ttd", "--option", "token=abc")
    assert refused.exit_code == 1 and "environment variable" in refused.output
    assert "abc" not in refused.output

    monkeypatch.setenv("DSP_TOKEN", TOKEN)
    added = cli(
        "destinations", "add", "ttd-main", "--kind", "ttd",
        "--option", "advertiser_id=adv", "--option", "token_env=DSP_TOKEN",
        "--option", f"base_url={dsp.url}",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert cli("destinations", "link", "ttd-main", "sports").exit_code == 0

    dry = cli("sync", "--dry-run")
    assert dry.exit_code == 0 and "DRY RUN" in dry.output and dsp.requests == []
    done = cli("sync", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)[0]["accepted"] == 150
    assert len(dsp.segment("ttd", "sports")) == 150

    listed = cli("destinations", "list", "--json")
    assert json.loads(listed.output)[0]["links"][0]["held"] == 150
    assert TOKEN not in listed.output
    past = json.loads(cli("sync", "history", "--json").output)
    assert [r["status"] for r in past] == ["succeeded"]
