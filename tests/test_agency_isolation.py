"""Agency isolation: an agency reaches only its own segments and those granted to it.

Two agencies (``acme``, ``rivalco``) each hold a seed list and a lookalike built on
the same cookies (so their audiences overlap), and staff hold rule segments,
one of them named like acme's lookalike. Every route of the app is probed as an
acme user, with its API token and with its dashboard session: nothing of
``rivalco``'s or the staff's may show, and a request naming one of their objects
must be answered exactly like a request naming a missing one. The probes run with a
staff segment built on ``staffonly`` and rivalco's lookalike granted to acme: the
grant shows its audience, never the names it was built from. The routes are read
from the app's url_map, so a new route without a probe here fails.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from dmp.config import load_config
from dmp.errors import DmpError
from dmp.lookalike import audience, seeds
from dmp.scheduler import Runner, load_schedule
from dmp.segments import insights, registry, rule_segments
from dmp.store import open_store
from dmp.web import create_app
from dmp.web.users import add_user, create_token
from tests.conftest import NOW
from tests.web_helpers import PASSWORD, RULE, build_world, copy_world, seed_csv

# What acme must never see, each with the name of a missing object of the same shape.
SECRETS = {
    "rivalco": "nobodyco",
    "secret-campaign": "missing-campaign",
    "staffonly": "missingstaff",
    "everyone": "no-one-here",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The web world plus two agencies' seed lists and lookalikes (acme has two), staff
    rule segments
    (``everyone``, ``staffonly`` and one named ``acme/like``) and users with tokens."""
    folder = tmp_path_factory.mktemp("agencies")
    world = build_world(folder)
    config = load_config(folder / "home", env={})
    seed_file = folder / "seeds.csv"
    seed_file.write_bytes(seed_csv(world))
    with open_store(config) as store:
        for agency, seed, lookalike in [
            ("acme", "converters", "like"),
            ("rivalco", "rivalco-seeds", "secret-campaign"),
        ]:
            seeds.upload_seed_list(store, config, seed_file, seed, agency, "cookie", now=NOW)
            audience.create_lookalike(
                store, config, lookalike, seed, agency, "5%", now=NOW, force=True
            )
        audience.create_lookalike(
            store, config, "other-like", "converters", "acme", 0.1, now=NOW, force=True
        )
        rule_segments.create(store, config, "staffonly", RULE, now=NOW)
        rule_segments.create(store, config, "acme/like", {"id_type": "maid"}, now=NOW)
        tokens = {}
        for name, role, agency in [
            ("root", "admin", None),
            ("acme-user", "agency", "acme"),
            ("rival-user", "agency", "rivalco"),
        ]:
            add_user(store, name, role, agency, PASSWORD)
            tokens[name] = create_token(store, name)["token"]
    return {**world, "tokens": tokens}


@pytest.fixture
def app(world, home, config):
    """The app over a copy of the world, its clock frozen at the world's NOW."""
    from jobs import JOBS

    copy_world(world, home)
    with open_store(config) as store:
        runner = Runner(store, config, JOBS, load_schedule(config), clock=lambda: NOW)
        app = create_app(config, runner=runner)
        app.config["TESTING"] = True
        yield app


def bearer(world: dict, user: str = "acme-user") -> dict:
    return {"Authorization": f"Bearer {world['tokens'][user]}"}


def session_client(app, user: str = "acme-user"):
    """A test client logged in as ``user``, and the headers its changes need."""
    client = app.test_client()
    page = client.get("/login")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)[1]
    logged_in = client.post("/login", data={"name": user, "password": PASSWORD,
                                            "csrf_token": token})  # fmt: skip
    assert logged_in.status_code == 302, logged_in.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/seeds").text)[1]
    return client, {"X-CSRF-Token": csrf}, csrf


OWN = "acme/like"


# -- finding 3 and the staff-name collision -------------------------------------------


def test_an_agencys_lookalike_overlaps_only_its_own_segments(app, world):
    """Finding 3: acme's lookalike page listed rivalco's lookalike and staff segments,
    with their shared counts (the staff rule named like acme's is the next test's)."""
    store = app.extensions["dmp.runner"].store
    registry.delete_segment(store, registry.get_segment(store, OWN, "rule")["segment_id"])
    response = app.test_client().get("/api/v1/segments/acme/like", headers=bearer(world))
    assert response.status_code == 200, response.json
    assert [o["segment"] for o in response.json["segment"]["overlap"]] == ["acme/other-like"]
    for secret in SECRETS:
        assert secret not in response.text
    staff = app.test_client().get("/api/v1/segments/acme/like", headers=bearer(world, "root"))
    assert {o["segment"] for o in staff.json["segment"]["overlap"]} >= {
        "rivalco/secret-campaign", "everyone", "staffonly",
    }  # fmt: skip


def test_a_staff_segment_named_like_an_agencys_does_not_break_its_view(app, world):
    """Finding 11: a staff rule segment ``acme/like`` made acme's own segment a 400
    ("names segments of several kinds"), naming the staff segment's kind."""
    response = app.test_client().get("/api/v1/segments/acme/like", headers=bearer(world))
    assert response.status_code == 200, response.json
    assert response.json["segment"]["kind"] == "lookalike"
    listed = app.test_client().get("/api/v1/segments", headers=bearer(world)).json["segments"]
    staff, root = app.test_client(), bearer(world, "root")
    assert staff.get("/api/v1/segments/acme/like", headers=root).status_code == 400
    for kind in ("rule", "lookalike"):
        assert staff.get(f"/segments/acme/like?kind={kind}", headers=root).status_code == 200
        api = staff.get(f"/api/v1/segments/acme/like?kind={kind}", headers=root)
        assert api.json["segment"]["kind"] == kind
    assert [(s["name"], s["kind"]) for s in listed] == [
        ("acme/like", "lookalike"), ("acme/other-like", "lookalike"),
    ]  # fmt: skip


def test_the_library_filter_scopes_lookups_listings_and_overlaps(app):
    store = app.extensions["dmp.runner"].store
    mine = registry.get_segment(store, OWN, viewer="acme")
    assert mine["kind"] == "lookalike"
    assert registry.get_segment(store, "rivalco/secret-campaign", viewer="acme") is None
    assert registry.get_segment(store, "everyone", viewer="acme") is None
    names = [s["name"] for s in registry.list_segments(store, viewer="acme")]
    assert names == [OWN, "acme/other-like"]
    assert len(registry.list_segments(store)) == 6  # staff see all
    other = registry.get_segment(store, "acme/other-like")["segment_id"]
    pairs = insights.overlap(store.con, NOW, viewer="acme")
    assert [(p["a"], p["b"]) for p in pairs] == [(mine["segment_id"], other)]
    everyone = registry.get_segment(store, "everyone")["segment_id"]
    assert any(everyone in (p["a"], p["b"]) for p in insights.overlap(store.con, NOW))
    with pytest.raises(DmpError, match="no segment named 'everyone'"):
        insights.describe(store, "everyone", viewer="acme")


# -- grants ---------------------------------------------------------------------------


def test_an_admin_grants_a_segment_and_the_agency_sees_it_everywhere(app, world):
    client, acme, root = app.test_client(), bearer(world), bearer(world, "root")
    missing = client.get("/api/v1/segments/everyone", headers=acme)
    assert missing.status_code == 404

    refused = client.post("/api/v1/grants", headers=acme,
                          json={"segment": "everyone", "agency": "acme"})  # fmt: skip
    assert refused.status_code == 403
    unknown = client.post("/api/v1/grants", headers=root,
                          json={"segment": "everyone", "agency": "acmee"})  # fmt: skip
    assert unknown.status_code == 404 and "acmee" in unknown.json["error"]["message"]
    granted = client.post("/api/v1/grants", headers=root,
                          json={"segment": "everyone", "agency": "acme"})  # fmt: skip
    assert granted.status_code == 201, granted.json
    assert granted.json["grant"] == {"segment": "everyone", "kind": "rule", "agency": "acme"}

    names = {s["name"] for s in client.get("/api/v1/segments", headers=acme).json["segments"]}
    assert names == {OWN, "acme/other-like", "everyone"}
    seen = client.get("/api/v1/segments/everyone", headers=acme)
    assert seen.status_code == 200 and seen.json["destinations"] == []
    assert {o["segment"] for o in seen.json["segment"]["overlap"]} == {OWN, "acme/other-like"}
    own = client.get("/api/v1/segments/acme/like", headers=acme).json["segment"]
    assert {o["segment"] for o in own["overlap"]} == {"everyone", "acme/other-like"}
    assert (
        "everyone" not in client.get("/api/v1/segments", headers=bearer(world, "rival-user")).text
    )
    listed = client.get("/api/v1/grants", headers=root).json["grants"]
    assert [(g["segment"], g["agency"]) for g in listed] == [("everyone", "acme")]
    assert client.get("/api/v1/grants", headers=acme).status_code == 403

    revoked = client.delete("/api/v1/grants/acme/everyone", headers=root)
    assert revoked.status_code == 200 and revoked.json == {"revoked": {
        "segment": "everyone", "kind": "rule", "agency": "acme"}}  # fmt: skip
    gone = client.get("/api/v1/segments/everyone", headers=acme)
    assert (gone.status_code, gone.json) == (missing.status_code, missing.json)
    again = client.delete("/api/v1/grants/acme/everyone", headers=root)
    assert again.status_code == 404


def test_a_granted_lookalike_is_seen_as_a_segment_but_not_managed(app, world):
    """A grant is read access: another agency's lookalike shows in the segment views,
    never among the agency's own lookalikes (its seeds, model and runs stay private)."""
    store, client, acme = app.extensions["dmp.runner"].store, app.test_client(), bearer(world)
    registry.grant(store, "rivalco/secret-campaign", "acme", now=NOW)
    seen = client.get("/api/v1/segments/rivalco/secret-campaign", headers=acme)
    assert seen.status_code == 200 and seen.json["segment"]["agency"] == "rivalco"
    own = client.get("/api/v1/lookalikes", headers=acme).json["lookalikes"]
    assert [x["segment"] for x in own] == [OWN, "acme/other-like"]
    assert client.get("/api/v1/lookalikes/secret-campaign", headers=acme).status_code == 404
    with pytest.raises(DmpError, match="no lookalike named"):
        audience.refresh_lookalike(store, app.extensions["dmp.config"], "secret-campaign", "acme")


def test_a_deleted_segment_takes_its_grants_along(app):
    store = app.extensions["dmp.runner"].store
    registry.grant(store, "staffonly", "acme", now=NOW)
    registry.delete_segment(store, registry.get_segment(store, "staffonly")["segment_id"])
    assert registry.grants(store) == []
    rule_segments.create(store, app.extensions["dmp.config"], "staffonly", RULE, now=NOW)
    assert registry.get_segment(store, "staffonly", viewer="acme") is None


def test_cli_grants_revokes_and_lists_as_an_agency(world, home, cli):
    copy_world(world, home)
    listed = cli("segments", "list", "--agency", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    assert [s["name"] for s in json.loads(listed.output)] == [OWN, "acme/other-like"]
    hidden = cli("segments", "show", "everyone", "--agency", "acme")
    assert hidden.exit_code == 1 and hidden.output == "error: no segment named 'everyone'\n"

    granted = cli("segments", "grant", "everyone", "--agency", "acme")
    assert granted.exit_code == 0, granted.output
    assert "everyone" in granted.output and "acme" in granted.output
    shown = cli("segments", "show", "everyone", "--agency", "acme", "--json")
    assert shown.exit_code == 0, shown.output
    assert {o["segment"] for o in json.loads(shown.output)["overlap"]} <= {OWN, "acme/other-like"}
    assert "everyone\tacme" in cli("segments", "grants").output

    ambiguous = cli("segments", "grant", "acme/like", "--agency", "rivalco")
    assert ambiguous.exit_code == 1 and "say which kind" in ambiguous.output
    assert cli("segments", "revoke", "everyone", "--agency", "acme").exit_code == 0
    assert cli("segments", "grants").output == ""
    listed = cli("segments", "list", "--agency", "acme", "--json")
    assert [s["name"] for s in json.loads(listed.output)] == [OWN, "acme/other-like"]


# -- what a grant shows: the audience, not how it was built -----------------------------

GRANTED = "active-home-buyers"
# A staff segment built on segments acme may not see: a staff one and rivalco's.
GRANTED_RULE = {"all": [{"segment": "staffonly"}, {"not": {"segment": "rivalco/secret-campaign"}}]}


def grant_a_staff_rule(store, config) -> None:
    """Staff build ``active-home-buyers`` out of ``staffonly`` and rivalco's lookalike,
    describe it by those names, record a staff-only event in its history, and grant it
    to acme."""
    rule_segments.create(store, config, GRANTED, GRANTED_RULE, "staffonly minus secret-campaign",
                         now=NOW)  # fmt: skip
    sid = registry.get_segment(store, GRANTED)["segment_id"]
    registry.record_history(store.con, sid, "held", "staffonly churned; linked to ttd", NOW)
    registry.grant(store, GRANTED, "acme", now=NOW)


def test_a_granted_segment_shows_its_audience_not_how_it_was_built(app, world):
    """Reviewer's finding: acme, reading its grant ``active-home-buyers``, saw its
    definition ``{"not": {"segment": "auto-intenders"}}`` naming a staff segment that
    answers 404 to acme. A grant shows name, size, trend, top categories and overlaps;
    the definition, description and history stay with the owner."""
    store, client, acme = app.extensions["dmp.runner"].store, app.test_client(), bearer(world)
    grant_a_staff_rule(store, app.extensions["dmp.config"])
    seen = client.get(f"/api/v1/segments/{GRANTED}", headers=acme)
    assert seen.status_code == 200, seen.json
    for secret in (*SECRETS, "ttd"):
        assert secret not in seen.text, secret
    shown = seen.json["segment"]
    assert (shown["definition"], shown["description"], seen.json["history"]) == (None, None, [])
    assert shown["size"] > 0 and shown["trend"] and shown["top_categories"]
    listed = client.get("/api/v1/segments", headers=acme)
    assert GRANTED in listed.text and not any(secret in listed.text for secret in SECRETS)
    staff = client.get(f"/api/v1/segments/{GRANTED}", headers=bearer(world, "root")).json
    assert staff["segment"]["definition"] == GRANTED_RULE and staff["history"]
    own = client.get("/api/v1/segments/acme/like", headers=acme).json["segment"]
    assert own["definition"]["seed"] == "converters"  # its own: all of it


def test_a_granted_lookalike_hides_its_seed_list_and_model(app, world):
    """Another agency's lookalike granted to acme: no seed-list name, reach or
    description of rivalco's reaches acme, in the segment views or a listing."""
    store, client, acme = app.extensions["dmp.runner"].store, app.test_client(), bearer(world)
    config = app.extensions["dmp.config"]
    audience.create_lookalike(store, config, "shared", "rivalco-seeds", "rivalco", "7%",
                              "built from rivalco-seeds for Q3", now=NOW, force=True)  # fmt: skip
    registry.grant(store, "rivalco/shared", "acme", now=NOW)
    shown = client.get("/api/v1/segments/rivalco/shared", headers=acme).json["segment"]
    listed = client.get("/api/v1/segments?kind=lookalike", headers=acme).json["segments"]
    for granted in (shown, next(s for s in listed if s["name"] == "rivalco/shared")):
        assert granted["agency"] == "rivalco" and granted["size"] > 0
        for secret in ("rivalco-seeds", "Q3", "0.07", "reach"):
            assert secret not in json.dumps(granted), secret
    assert client.get("/api/v1/lookalikes/shared", headers=acme).status_code == 404


def test_cli_shows_a_granted_segment_as_the_agency_sees_it(world, home, cli):
    copy_world(world, home)
    with open_store(load_config(home, env={})) as store:
        grant_a_staff_rule(store, load_config(home, env={}))
    for args in [("show", GRANTED), ("show", GRANTED, "--json"), ("list", "--json"), ("list",)]:
        shown = cli("segments", *args, "--agency", "acme")
        assert shown.exit_code == 0, shown.output
        assert GRANTED in shown.output and "staffonly" not in shown.output, args
    assert (
        json.loads(cli("segments", "show", GRANTED, "--agency", "acme", "--json").output)[
            "definition"
        ]
        is None
    )
    staff = json.loads(cli("segments", "show", GRANTED, "--json").output)
    assert staff["definition"] == GRANTED_RULE


# -- every route, as a hostile agency --------------------------------------------------

# Endpoint -> the requests acme makes of it: (method, path, JSON body or form). The
# names of rivalco's and the staff's objects are attacks; each is compared with the
# same request naming a missing object. Attack paths use slashes, URL-encoded
# slashes, case variants, dot segments and another agency's parameter.
SEGMENT_NAMES = [
    OWN, "acme/other-like", "rivalco/secret-campaign", "rivalco%2Fsecret-campaign",
    "RIVALCO/secret-campaign", "acme/../rivalco/secret-campaign", "everyone", "staffonly",
    "Everyone", "like", GRANTED,
]  # fmt: skip
RULE_BODY = {"name": "x", "rule": {"any": [{"category": "IAB1"}]}}


def _seed_form(name: str) -> dict:
    return {"name": name, "id_type": "cookie", "agency": "rivalco",
            "file": (io.BytesIO(b"cookie_id\nabc\n"), "seeds.csv")}  # fmt: skip


PROBES: dict[str, list[tuple]] = {
    "static": [("GET", "/static/dmp.css", None)],
    "auth.login": [("GET", "/login?next=/lookalikes/secret-campaign", None)],
    "auth.logout": [("POST", "/logout", {})],
    "pages.overview": [("GET", "/", None)],
    "pages.taxonomy": [("GET", "/taxonomy", None)],
    "pages.segments": [("GET", "/segments", None)],
    "pages.new_segment": [("GET", "/segments/new", None), ("POST", "/segments/new", {})],
    "pages.segment": [("GET", f"/segments/{n}", None) for n in SEGMENT_NAMES],
    "pages.accept": [("POST", f"/segments/{n}/accept", {}) for n in SEGMENT_NAMES],
    "pages.clusters": [("GET", "/clusters", None)],
    "pages.seed_lists": [
        ("GET", "/seeds", None),
        ("GET", "/seeds?agency=rivalco", None),
        ("POST", "/seeds", {"name": "x", "id_type": "cookie", "agency": "rivalco"}),
    ],
    "pages.lookalikes": [
        ("GET", "/lookalikes", None),
        ("GET", "/lookalikes?agency=rivalco", None),
        ("POST", "/lookalikes", {"name": "new", "seed": "rivalco-seeds", "reach": "5"}),
        (
            "POST",
            "/lookalikes?agency=rivalco",
            {"name": "new", "seed": "rivalco-seeds", "reach": "5", "agency": "rivalco"},
        ),
    ],
    "pages.lookalike": [
        ("GET", "/lookalikes/like", None),
        ("GET", "/lookalikes/secret-campaign", None),
        ("GET", "/lookalikes/secret-campaign?agency=rivalco", None),
        ("GET", "/lookalikes/rivalco%2Fsecret-campaign", None),
    ],
    "pages.destinations": [("GET", "/destinations", None)],
    "pages.add_destination": [("POST", "/destinations", {"name": "d", "kind": "file"})],
    "pages.link": [
        ("POST", "/destinations/link", {"destination": "d", "segment": "rivalco/secret-campaign"})
    ],
    "pages.sync_now": [("POST", "/destinations/sync", {})],
    "pages.jobs": [("GET", "/jobs", None)],
    "pages.run_job": [("POST", "/jobs/lookalike/run", {})],
    "api.jobs": [("GET", "/api/jobs", None)],
    "api.run_job": [("POST", "/api/jobs/lookalike/run", None)],
    "api.get_run": [("GET", "/api/runs/1", None)],
    "api_v1.openapi": [("GET", "/api/v1/openapi.json", None)],
    "api_v1.get_status": [("GET", "/api/v1/status", None)],
    "api_v1.taxonomy": [("GET", "/api/v1/taxonomy", None)],
    "api_v1.clusters": [("GET", "/api/v1/clusters", None)],
    "api_v1.list_segments": [
        ("GET", "/api/v1/segments", None),
        ("GET", "/api/v1/segments?kind=rule", None),
        ("GET", "/api/v1/segments?kind=lookalike&agency=rivalco", None),
        ("GET", "/api/v1/segments?status=all", None),
    ],
    "api_v1.accept_segment": [
        ("POST", f"/api/v1/segments/{n}/accept", None) for n in SEGMENT_NAMES
    ],
    "api_v1.create_segment": [("POST", "/api/v1/segments", RULE_BODY)],
    "api_v1.preview_segment": [("POST", "/api/v1/segments/preview", RULE_BODY)],
    "api_v1.get_segment": [("GET", f"/api/v1/segments/{n}", None) for n in SEGMENT_NAMES]
    + [("GET", "/api/v1/segments/acme/like?kind=rule", None)],
    "api_v1.update_segment": [("PUT", f"/api/v1/segments/{n}", RULE_BODY) for n in SEGMENT_NAMES],
    "api_v1.delete_segment": [("DELETE", f"/api/v1/segments/{n}", None) for n in SEGMENT_NAMES],
    "api_v1.list_seeds": [
        ("GET", "/api/v1/seeds", None),
        ("GET", "/api/v1/seeds?agency=rivalco", None),
    ],
    "api_v1.upload_seeds": [("POST", "/api/v1/seeds", "seed-form:rivalco-seeds")],
    "api_v1.get_seeds": [
        ("GET", "/api/v1/seeds/converters", None),
        ("GET", "/api/v1/seeds/rivalco-seeds", None),
        ("GET", "/api/v1/seeds/rivalco-seeds?agency=rivalco", None),
    ],
    "api_v1.delete_seeds": [("DELETE", "/api/v1/seeds/rivalco-seeds?agency=rivalco", None)],
    "api_v1.list_lookalikes": [
        ("GET", "/api/v1/lookalikes", None),
        ("GET", "/api/v1/lookalikes?agency=rivalco", None),
    ],
    "api_v1.create_lookalike": [
        ("POST", "/api/v1/lookalikes", {"name": "n", "seed": "rivalco-seeds", "reach": "5%"}),
        (
            "POST",
            "/api/v1/lookalikes",
            {"name": "n", "seed": "rivalco-seeds", "reach": "5%", "agency": "rivalco"},
        ),
        ("POST", "/api/v1/lookalikes", {"name": "like", "seed": "converters", "reach": "5%"}),
    ],
    "api_v1.get_lookalike": [
        ("GET", "/api/v1/lookalikes/like", None),
        ("GET", "/api/v1/lookalikes/secret-campaign", None),
        ("GET", "/api/v1/lookalikes/secret-campaign?agency=rivalco", None),
    ],
    "api_v1.list_destinations": [("GET", "/api/v1/destinations", None)],
    "api_v1.add_destination": [("POST", "/api/v1/destinations", {"name": "d", "kind": "file"})],
    "api_v1.link_segment": [
        ("POST", "/api/v1/destinations/d/links", {"segment": "rivalco/secret-campaign"})
    ],
    "api_v1.unlink_segment": [
        ("DELETE", "/api/v1/destinations/d/links/rivalco/secret-campaign", None)
    ],
    "api_v1.list_syncs": [("GET", "/api/v1/syncs?segment=rivalco/secret-campaign", None)],
    "api_v1.run_sync": [("POST", "/api/v1/syncs", {"segment": "rivalco/secret-campaign"})],
    "api_v1.jobs": [("GET", "/api/v1/jobs", None)],
    "api_v1.run_job": [("POST", "/api/v1/jobs/lookalike/run", {})],
    "api_v1.get_run": [("GET", "/api/v1/runs/1", None)],
    "api_v1.add_optouts": [("POST", "/api/v1/optouts", {"ids": ["x"]})],
    "api_v1.list_grants": [("GET", "/api/v1/grants", None)],
    "api_v1.add_grant": [("POST", "/api/v1/grants", {"segment": "everyone", "agency": "acme"})],
    "api_v1.remove_grant": [("DELETE", "/api/v1/grants/rivalco/rivalco/secret-campaign", None)],
    "collector.pixel": [("GET", "/px.gif?id=abc&url=https://a.example/", None)],
    "collector.collect": [("POST", "/collect", {"id": "abc", "id_type": "cookie"})],
    "collector.optout": [("GET", "/optout", None)],
    "collector.cookie_sync": [("GET", "/sync/partner?partner_uid=1", None)],
}


def test_every_route_has_agency_probes(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints == set(PROBES), "add probes for new routes (and drop gone ones)"


def _hide(text: str) -> str:
    for secret, missing in SECRETS.items():
        text = text.replace(secret, missing)
    return text


def _send(client, headers: dict, csrf: str, method: str, path: str, payload):
    """One request; JSON for the API, a form (with the CSRF token) for pages."""
    if isinstance(payload, str) and payload.startswith("seed-form:"):
        data = _seed_form(payload.split(":", 1)[1])
        return client.open(path, method=method, headers=headers, data=data)
    if path.startswith("/api") or path == "/collect":
        return client.open(path, method=method, headers=headers, json=payload)
    form = None if payload is None else {**payload, "csrf_token": csrf}
    return client.open(path, method=method, headers=headers, data=form)


@pytest.mark.parametrize("via", ["token", "session"])
@pytest.mark.parametrize("endpoint", sorted(PROBES))
def test_an_agency_reaches_nothing_of_others_on_any_route(app, world, endpoint, via):
    store = app.extensions["dmp.runner"].store
    grant_a_staff_rule(store, app.extensions["dmp.config"])
    if via == "token":
        client, headers, csrf = app.test_client(), bearer(world), ""
    else:
        client, headers, csrf = session_client(app)
    for method, path, payload in PROBES[endpoint]:
        probe = json.dumps([path, payload])
        response = _send(client, headers, csrf, method, path, payload)
        text = response.get_data().decode(errors="replace")  # the pixel is binary
        response.close()
        assert response.status_code < 500, (probe, text)
        if _hide(probe) == probe:
            for secret in SECRETS:
                assert secret not in text, (probe, secret)
            continue
        missing = _send(client, headers, csrf, method, _hide(path), _hide_payload(payload))
        assert response.status_code == missing.status_code, (probe, text, missing.text)
        if response.status_code != 201:
            assert _hide(text) == missing.text, probe
    assert registry.get_segment(store, "rivalco/secret-campaign") is not None
    assert seeds.get_seed_list(store, "rivalco-seeds", "rivalco")["ids"] == 300
    assert [(g["segment"], g["agency"]) for g in registry.grants(store)] == [(GRANTED, "acme")]


def _hide_payload(payload):
    if isinstance(payload, str):
        return _hide(payload)
    return None if payload is None else json.loads(_hide(json.dumps(payload)))
