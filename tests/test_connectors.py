"""Connector unit tests: each platform's edge cases against `responses`, time injected."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
import responses

from dmp.activation.base import Capabilities, Item, Options, Stats, parse_options
from dmp.activation.connectors import CONNECTORS
from dmp.activation.connectors.meta import MetaAudiences
from dmp.activation.connectors.ttd import TradeDesk
from dmp.activation.connectors.webhook import Webhook
from dmp.activation.connectors.xandr import XandrSegments
from dmp.errors import DmpError

BASE = "https://dsp.test"
WALL = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def maids(n: int, start: int = 0) -> list[Item]:
    return [
        Item(m, "maid")
        for m in (f"{i:08x}-0000-4000-8000-000000000000" for i in range(start, start + n))
    ]


class Clock:
    """A fake monotonic clock that sleeping advances; records every sleep."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(cls, clock=None, env=None, dry_run=False, **options):
    defaults = {
        "ttd": {"advertiser_id": "adv1", "token_env": "TOK", "base_url": BASE},
        "meta": {"token_env": "TOK", "base_url": BASE},
        "xandr": {"token_env": "TOK", "base_url": BASE},
        "webhook": {"url": f"{BASE}/hook", "secret_env": "TOK"},
    }[cls.kind]
    clock = clock or Clock()
    opts = parse_options(cls.Options, cls.kind, {"requests_per_second": 0, **defaults, **options})
    return cls(
        "dest",
        opts,
        dry_run=dry_run,
        sleep=clock.sleep,
        clock=clock,
        rand=lambda: 0.5,
        wall=lambda: WALL,
        env={"TOK": "secret-1"} if env is None else env,
    )


def deliver(connector, items, op="add", target="sports"):
    stats = Stats()
    results = []
    connector.deliver(op, target, items, len(items), stats, results.append)
    accepted = [i for r in results for i in r.accepted]
    rejected = [x for r in results for x in r.rejected]
    failed = [i for r in results for i in r.failed]
    return accepted, rejected, failed, stats


def bodies(rsps) -> list[dict]:
    return [json.loads(call.request.body) for call in rsps.calls]


# --- The Trade Desk ------------------------------------------------------------------


def test_ttd_request_shape_and_failed_lines_on_http_200():
    items = maids(3) + [Item("11111111-2222-3333-4444-555555555555", "cookie")]
    with responses.RequestsMock() as rsps:
        rsps.post(
            f"{BASE}/data/advertiser",
            json={"FailedLines": [{"ErrorCode": "UserNotMapped", "ItemNumber": "2"}]},
        )
        accepted, rejected, failed, stats = deliver(make(TradeDesk), items)
        body = bodies(rsps)[0]
        assert rsps.calls[0].request.headers["TTD-Auth"] == "secret-1"
    assert body["AdvertiserId"] == "adv1"
    assert body["Items"][0] == {
        "DAID": items[0].pid,
        "Data": [{"Name": "sports", "TtlInMinutes": 30 * 1440}],
    }
    assert body["Items"][3]["TDID"] == items[3].pid
    assert rejected == [(items[1], "UserNotMapped")]
    assert accepted == [items[0], items[2], items[3]] and not failed
    assert stats.errors == {"UserNotMapped": 1}


def test_ttd_remove_is_ttl_zero_and_ttl_is_capped_at_180_days():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", json={})
        deliver(make(TradeDesk, ttl_days=400), maids(1), op="add")
        deliver(make(TradeDesk), maids(1), op="remove")
        adds, removes = bodies(rsps)
    assert adds["Items"][0]["Data"][0]["TtlInMinutes"] == 180 * 24 * 60
    assert removes["Items"][0]["Data"][0]["TtlInMinutes"] == 0


def test_ttd_413_splits_the_batch_until_it_fits():
    sizes = []

    def answer(request):
        items = json.loads(request.body)["Items"]
        sizes.append(len(items))
        if len(items) > 2:
            return 413, {}, json.dumps({"ErrorCode": "MaxRequestSizeExceeded"})
        return 200, {}, json.dumps({})

    with responses.RequestsMock() as rsps:
        rsps.add_callback("POST", f"{BASE}/data/advertiser", callback=answer)
        accepted, rejected, failed, _ = deliver(make(TradeDesk), maids(8))
    assert sizes == [8, 4, 2, 2, 4, 2, 2]
    assert len(accepted) == 8 and not rejected and not failed


def test_ttd_invalid_ids_are_counted_not_sent():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", json={})
        accepted, rejected, _, stats = deliver(make(TradeDesk), [Item("x", "maid"), *maids(1)])
        assert len(bodies(rsps)[0]["Items"]) == 1
    assert rejected == [(Item("x", "maid"), "invalid ID for this platform")]


@pytest.mark.parametrize(
    "retry_after, expected",
    [("7", 7.0), ("Fri, 20 Nov 2026 12:00:30 GMT", 30.0)],
    ids=["seconds", "http-date"],
)
def test_429_honours_retry_after_as_seconds_or_date(retry_after, expected):
    clock = Clock()
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", status=429, headers={"Retry-After": retry_after})
        rsps.post(f"{BASE}/data/advertiser", json={})
        accepted, _, failed, stats = deliver(make(TradeDesk, clock=clock), maids(2))
    assert clock.sleeps == [expected]
    assert len(accepted) == 2 and not failed
    assert stats.retries == 1 and stats.throttled_seconds == expected


def test_503_backs_off_with_full_jitter_then_gives_the_batch_to_the_next_run():
    clock = Clock()
    connector = make(TradeDesk, clock=clock, max_retries=3, breaker_failures=5)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", status=503)
        accepted, _, failed, stats = deliver(connector, maids(2))
        assert len(rsps.calls) == 4
    # rand() = 0.5 of the ceiling 1, 2, 4 seconds
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert not accepted and len(failed) == 2
    assert stats.errors == {"HTTP 503": 2} and not connector.breaker_open


def test_a_retry_after_longer_than_max_wait_leaves_the_batch_for_the_next_run():
    clock = Clock()
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", status=429, headers={"Retry-After": "3600"})
        _, _, failed, _ = deliver(make(TradeDesk, clock=clock), maids(1))
    assert clock.sleeps == [] and len(failed) == 1


def test_401_refreshes_credentials_once_then_gives_up():
    env = {"TOK": "old"}
    connector = make(TradeDesk, env=env)
    seen = []

    def answer(request):
        seen.append(request.headers["TTD-Auth"])
        env["TOK"] = "rotated"
        return (200, {}, "{}") if request.headers["TTD-Auth"] == "rotated" else (401, {}, "")

    with responses.RequestsMock() as rsps:
        rsps.add_callback("POST", f"{BASE}/data/advertiser", callback=answer)
        accepted, *_ = deliver(connector, maids(1))
    assert seen == ["old", "rotated"] and len(accepted) == 1

    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", status=401)
        _, _, failed, _ = deliver(make(TradeDesk), maids(1))
        assert len(rsps.calls) == 2  # the first try and one after the refresh


def test_missing_secret_is_an_error_naming_the_variable_not_a_value():
    with pytest.raises(DmpError, match="environment variable TOK"):
        deliver(make(TradeDesk, env={}), maids(1))


# --- Meta ----------------------------------------------------------------------------


def test_meta_session_batches_and_delete_for_removes():
    url = f"{BASE}/v21.0/123/users"
    with responses.RequestsMock() as rsps:
        rsps.post(url, json={"num_received": 2, "num_invalid_entries": 0})
        rsps.delete(url, json={"num_received": 2})
        items = [Item(i.pid.upper(), i.id_type) for i in maids(5)]
        deliver(make(MetaAudiences, max_batch_items=2), items, target="123")
        deliver(make(MetaAudiences), maids(1), op="remove", target="123")
        sent = bodies(rsps)
        assert [c.request.method for c in rsps.calls] == ["POST"] * 3 + ["DELETE"]
        assert "secret-1" not in rsps.calls[0].request.url
    sessions = [b["session"] for b in sent[:3]]
    assert [s["batch_seq"] for s in sessions] == [1, 2, 3]
    assert [s["last_batch_flag"] for s in sessions] == [False, False, True]
    assert {s["session_id"] for s in sessions} == {sessions[0]["session_id"]}
    assert sessions[0]["estimated_num_total"] == 5
    assert sent[0]["payload"] == {
        "schema": "MADID",
        "data": [[items[0].pid.lower()], [items[1].pid.lower()]],
    }
    assert sent[0]["access_token"] == "secret-1"


@pytest.mark.parametrize("code", [4, 17, 613, 80003, 80004])
def test_meta_throttle_codes_on_400_back_off_and_retry(code):
    clock = Clock()
    url = f"{BASE}/v21.0/123/users"
    with responses.RequestsMock() as rsps:
        rsps.post(url, status=400, json={"error": {"code": code, "message": "slow down"}})
        rsps.post(url, json={"num_received": 1})
        accepted, _, _, stats = deliver(make(MetaAudiences, clock=clock), maids(1), target="123")
    assert len(accepted) == 1 and clock.sleeps == [0.5] and stats.throttled_seconds == 0.5


def test_meta_bad_token_refreshes_once_then_opens_the_breaker():
    url = f"{BASE}/v21.0/123/users"
    connector = make(MetaAudiences)
    with responses.RequestsMock() as rsps:
        rsps.post(url, status=400, json={"error": {"code": 190, "message": "expired"}})
        _, _, failed, _ = deliver(connector, maids(3), target="123")
        assert len(rsps.calls) == 2
    assert len(failed) == 3 and "error 190" in connector.breaker_reason


def test_meta_invalid_entries_are_counted():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/v21.0/123/users", json={"num_received": 2, "num_invalid_entries": 1})
        accepted, _, _, stats = deliver(make(MetaAudiences), maids(2), target="123")
    assert len(accepted) == 2 and stats.errors == {"invalid entry": 1}


def test_meta_and_xandr_links_need_numeric_ids():
    with pytest.raises(DmpError, match="Custom Audience ID"):
        MetaAudiences.check_external_id("sports")
    with pytest.raises(DmpError, match="seg_id"):
        XandrSegments.check_external_id("sports")


# --- Xandr ---------------------------------------------------------------------------


def test_xandr_never_sends_more_than_1000_users_or_1mb():
    long_ids = [Item(f"{i:0900d}", "maid") for i in range(1500)]
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/rt-segment", json={"response": {"status": "OK"}})
        accepted, *_ = deliver(make(XandrSegments), maids(2500), target="77")
        counts = [len(b["rt_segment"]) for b in bodies(rsps)]
        deliver(make(XandrSegments), long_ids, target="77")
        sizes = [len(c.request.body) for c in rsps.calls[3:]]
        first = bodies(rsps)[0]["rt_segment"][0]
    assert counts == [1000, 1000, 500] and len(accepted) == 2500
    assert max(sizes) <= 1_000_000 and len(sizes) == 2
    assert first["domain"] == "aaid"
    assert first["seg_block"] == [{"seg_id": 77, "expiration": 30 * 1440}]


def test_xandr_remove_is_expiration_minus_one_and_warnings_are_counted():
    with responses.RequestsMock() as rsps:
        rsps.post(
            f"{BASE}/rt-segment",
            json={"response": {"status": "OK", "warnings": ["user 1 unknown"]}},
        )
        _, _, _, stats = deliver(make(XandrSegments), maids(1), op="remove", target="77")
        block = bodies(rsps)[0]["rt_segment"][0]["seg_block"][0]
    assert block["expiration"] == -1
    assert stats.errors == {"warning: user 1 unknown": 1}


def test_xandr_status_other_than_ok_is_a_failure():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/rt-segment", json={"response": {"status": "error", "error": "no"}})
        _, _, failed, _ = deliver(make(XandrSegments), maids(1), target="77")
    assert len(failed) == 1


# --- Webhook -------------------------------------------------------------------------


def test_webhook_signs_the_body_and_keys_it_for_idempotency():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/hook", json={"rejected": [{"index": 1, "reason": "unknown"}]})
        items = maids(2)
        _, rejected, _, _ = deliver(make(Webhook), items)
        deliver(make(Webhook), items)
        first, again = rsps.calls
    expected = hmac.new(b"secret-1", first.request.body, hashlib.sha256).hexdigest()
    assert first.request.headers["X-Signature"] == f"sha256={expected}"
    assert first.request.headers["Idempotency-Key"] == again.request.headers["Idempotency-Key"]
    assert json.loads(first.request.body)["ids"][0] == {"id": items[0].pid, "id_type": "maid"}
    assert rejected == [(items[1], "unknown")]


# --- The base: batching, rate limit, breaker, dry-run, options ------------------------


class TinyDesk(TradeDesk):
    capabilities = Capabilities(id_types=("maid",), max_items=100, max_bytes=1_000)


def test_batches_respect_the_byte_cap():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", json={})
        accepted, *_ = deliver(make(TinyDesk), maids(40))
        sizes = [len(c.request.body) for c in rsps.calls]
    assert len(accepted) == 40 and max(sizes) <= 1_000 and len(sizes) > 3


def test_token_bucket_spaces_requests():
    clock = Clock()
    connector = make(TradeDesk, clock=clock, requests_per_second=2, burst=1, max_batch_items=1)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", json={})
        _, _, _, stats = deliver(connector, maids(3))
    assert clock.sleeps == [0.5, 0.5] and stats.throttled_seconds == 1.0


def test_breaker_opens_after_consecutive_failures_and_stops_sending():
    connector = make(TradeDesk, max_retries=0, breaker_failures=2, max_batch_items=1)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", status=503)
        _, _, failed, _ = deliver(connector, maids(5))
        assert len(rsps.calls) == 2
    assert len(failed) == 2 and connector.breaker_reason.startswith("circuit open after 2")


def test_a_failure_while_recording_stops_the_batches_still_queued():
    def record(result):
        raise RuntimeError("disk full")

    connector = make(TradeDesk, max_batch_items=1)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", json={})
        with pytest.raises(RuntimeError, match="disk full"):
            connector.deliver("add", "sports", maids(20), 20, Stats(), record)
        # the batch whose result could not be kept, and at most the ones queued behind it
        assert 1 <= len(rsps.calls) <= 1 + TradeDesk.QUEUED_BATCHES


def test_fatal_answer_opens_the_breaker_at_once():
    connector = make(TradeDesk)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/data/advertiser", status=403, body="AdvertiserMisconfigured")
        deliver(connector, maids(1))
    assert "HTTP 403: AdvertiserMisconfigured" in connector.breaker_reason


def test_dry_run_builds_requests_but_sends_nothing():
    with responses.RequestsMock():  # any real request would fail: nothing is registered
        accepted, _, _, stats = deliver(make(TradeDesk, env={}, dry_run=True), maids(3))
    assert len(accepted) == 3 and stats.requests == 1 and stats.bytes > 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"token": "abc"}, "secrets are never stored"),
        ({"api_key": "abc"}, "secrets are never stored"),
        ({"colour": "red"}, "unknown option colour"),
        ({}, "needs option"),
        ({"advertiser_id": "a", "token_env": "T", "ttl_days": "soon"}, "expected a number"),
    ],
)
def test_options_are_checked(options, message):
    with pytest.raises(DmpError, match=message):
        parse_options(TradeDesk.Options, "ttd", options)


def test_options_convert_text_to_their_types():
    opts = parse_options(
        TradeDesk.Options, "ttd", {"advertiser_id": "a", "token_env": "T", "ttl_days": "7"}
    )
    assert opts.ttl_days == 7 and isinstance(opts, Options)


def test_every_connector_declares_capabilities():
    for kind, cls in CONNECTORS.items():
        assert cls.kind == kind
        assert set(cls.capabilities.id_types) <= {"cookie", "maid"}
