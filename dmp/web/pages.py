"""The dashboard: server-rendered pages, each a thin view over library functions.

Changes are ordinary form posts (CSRF-checked in ``auth``); a library refusal
(``DmpError``) is shown to the user as a message on the same page.
"""

from __future__ import annotations

import functools
import json

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from dmp.activation import destinations as dest_lib
from dmp.activation.connectors import CONNECTORS
from dmp.activation.sync import history, sync
from dmp.errors import DmpError
from dmp.interests.taxonomy import browse
from dmp.lookalike import audience, seeds
from dmp.segments import cluster_segments, insights, registry, rule_segments
from dmp.status import status
from dmp.web import queries
from dmp.web.api_v1 import store_upload
from dmp.web.auth import login_required
from dmp.web.context import config, db, now, runner

bp = Blueprint("pages", __name__)
STAFF = ("admin", "buyer")


def refusals(view):
    """A library refusal: a 404 page for a GET (nothing to show), else a message on the
    page the form came from."""

    @functools.wraps(view)
    def wrapped(**kwargs):
        try:
            return view(**kwargs)
        except DmpError as exc:
            if request.method == "GET":
                abort(404, str(exc))
            flash(str(exc), "error")
            return redirect(request.referrer or url_for(".overview"))

    return wrapped


def agency() -> str | None:
    """An agency user's agency; admins and buyers pick one with ``?agency=``."""
    if g.user["role"] == "agency":
        return g.user["agency"]
    return (request.values.get("agency") or "").strip() or None


@bp.get("/")
@login_required()
def overview():
    if g.user["role"] == "agency":
        return redirect(url_for(".seed_lists"))
    store = db()
    jobs = runner().overview(limit=10)
    failures = [r for r in jobs["runs"] if r["status"] in ("failed", "timed_out", "interrupted")]
    return render_template(
        "overview.html",
        status=status(store),
        per_day=queries.events_per_day(store),
        jobs=jobs,
        failures=failures,
        retired_linked=cluster_segments.retired_linked(store),
        holds=cluster_segments.holds(store),
    )


@bp.get("/taxonomy")
@login_required(*STAFF)
def taxonomy():
    parent = request.args.get("parent") or None
    return render_template(
        "taxonomy.html", categories=browse(db(), "content", parent), parent=parent
    )


@bp.get("/segments")
@login_required(*STAFF)
@refusals
def segments():
    store = db()
    shown = request.args.get("status") or "live"
    return render_template(
        "segments.html",
        segments=registry.list_segments(store, status=shown),
        series=queries.size_series(store),
        shown=shown,
    )


@bp.route("/segments/new", methods=["GET", "POST"])
@login_required(*STAFF)
def new_segment():
    form = request.form
    if request.method == "POST":
        try:
            rule = rule_segments.parse_rule(form.get("rule", ""), config())
            rule_segments.create(
                db(), config(), form.get("name", ""), rule, form.get("description")
            )
        except DmpError as exc:
            flash(str(exc), "error")
        else:
            return redirect(url_for(".segment", name=form["name"].strip()))
    return render_template("segment_new.html", form=form)


@bp.get("/segments/<path:name>")
@login_required(*STAFF)
@refusals
def segment(name: str):
    store = db()
    pairs = insights.overlap(store.con, now())
    kind = request.args.get("kind") or None  # when segments of several kinds share the name
    described = insights.describe(store, name, now(), pairs=pairs, kind=kind)
    segments = registry.list_segments(store)
    return render_template(
        "segment.html",
        segment=described,
        destinations=queries.linked_destinations(store, described["segment_id"]),
        all_destinations=[d["name"] for d in dest_lib.list_destinations(store)],
        heat=_heat(segments, pairs),
        history=registry.history(store, described["segment_id"]),
        hold=next((h for h in cluster_segments.holds(store) if h["segment"] == name), None),
    )


@bp.post("/segments/<path:name>/accept")
@login_required(*STAFF)
@refusals
def accept(name: str):
    done = cluster_segments.accept(db(), config(), name, now())
    flash(f"held change accepted: {done['segment']} now has {done['size']:,} members", "ok")
    return redirect(url_for(".segment", name=done["segment"]))


def _heat(segments: list[dict], pairs: list[dict]) -> dict:
    """Share of row segment's members also in the column segment, for the heat map."""
    ids = {s["segment_id"]: s["name"] for s in segments}
    names = [s["name"] for s in segments]
    cells = []
    for pair in pairs:
        a, b = ids.get(pair["a"]), ids.get(pair["b"])
        if a and b:
            cells.append([a, b, pair["share_of_a"]])
            cells.append([b, a, pair["share_of_b"]])
    return {"labels": names[:20], "cells": cells}


@bp.get("/clusters")
@login_required(*STAFF)
def clusters():
    store = db()
    runs = cluster_segments.run_history(store)
    return render_template(
        "clusters.html",
        clusters=queries.latest_clusters(store),
        report=cluster_segments.latest_report(store),
        runs=runs,
        churn=[r for r in runs if r["churn_ari"] is not None],
    )


# -- seed lists and lookalikes (agencies) ---------------------------------------------


@bp.route("/seeds", methods=["GET", "POST"])
@login_required(*STAFF, "agency")
def seed_lists():
    acting, report = agency(), None
    if request.method == "POST":
        upload = request.files.get("file")
        try:
            if not acting:
                raise DmpError("choose the agency first")
            if upload is None or not upload.filename:
                raise DmpError("choose a file to upload")
            report = store_upload(upload, request.form.to_dict(), acting)
        except DmpError as exc:
            flash(str(exc), "error")
    lists = seeds.list_seed_lists(db(), acting) if acting else []
    return render_template("seeds.html", agency=acting, lists=lists, report=report)


@bp.route("/lookalikes", methods=["GET", "POST"])
@login_required(*STAFF, "agency")
def lookalikes():
    acting = agency()
    if request.method == "POST":
        form = request.form
        try:
            if not acting:
                raise DmpError("choose the agency first")
            made = audience.create_lookalike(
                db(), config(), form.get("name", ""), form.get("seed", ""), acting,
                f"{form.get('reach', '5')}%", include_seeds=bool(form.get("include_seeds")),
                exclude=form.get("exclude") or None, force=bool(form.get("force")),
            )  # fmt: skip
        except DmpError as exc:
            flash(str(exc), "error")
        else:
            return redirect(url_for(".lookalike", name=made["name"], agency=acting))
    store = db()
    return render_template(
        "lookalikes.html",
        agency=acting,
        lookalikes=audience.list_lookalikes(store, acting) if acting else [],
        seed_lists=seeds.list_seed_lists(store, acting) if acting else [],
        reach=(config().get("lookalike.min_reach"), config().get("lookalike.max_reach")),
    )


@bp.get("/lookalikes/<name>")
@login_required(*STAFF, "agency")
def lookalike(name: str):
    acting = agency()
    try:
        found = audience.show_lookalike(db(), name, acting or "")
    except DmpError:
        abort(404)
    return render_template("lookalike.html", agency=acting, lookalike=found)


# -- destinations and syncs -----------------------------------------------------------


@bp.get("/destinations")
@login_required(*STAFF)
def destinations():
    store = db()
    return render_template(
        "destinations.html",
        destinations=dest_lib.list_destinations(store),
        runs=history(store, limit=50),
        kinds=sorted(CONNECTORS),
        segments=[s["name"] for s in registry.list_segments(store)],
    )


@bp.post("/destinations")
@login_required("admin")
@refusals
def add_destination():
    form = request.form
    pairs = [line.partition("=") for line in form.get("options", "").splitlines() if line.strip()]
    options = {k.strip(): v.strip() for k, _, v in pairs}
    dest_lib.add_destination(db(), form.get("name", ""), form.get("kind", ""), options)
    flash(f"added destination {form['name']}", "ok")
    return redirect(url_for(".destinations"))


@bp.post("/destinations/link")
@login_required(*STAFF)
@refusals
def link():
    form = request.form
    dest_lib.link_segment(
        db(), form.get("destination", ""), form.get("segment", ""), form.get("external_id") or None
    )
    flash(f"linked {form['segment']} to {form['destination']}", "ok")
    return redirect(request.referrer or url_for(".destinations"))


@bp.post("/destinations/sync")
@login_required(*STAFF)
@refusals
def sync_now():
    form = request.form
    results = sync(db(), config(), destination=form.get("destination") or None)
    flash(f"sync finished: {len(results)} run(s), see the history below", "ok")
    return redirect(url_for(".destinations"))


# -- jobs -----------------------------------------------------------------------------


@bp.get("/jobs")
@login_required(*STAFF)
def jobs():
    return render_template("jobs.html", jobs=runner().overview(limit=30))


@bp.post("/jobs/<name>/run")
@login_required(*STAFF)
@refusals
def run_job(name: str):
    record = runner().start(name, "api").record
    flash(f"{name}: run {record.run_id} {record.status}", "ok")
    return redirect(url_for(".jobs"))


@bp.app_template_filter("number")
def _number(value) -> str:
    return "-" if value is None else f"{value:,}"


@bp.app_template_filter("pct")
def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


@bp.app_template_filter("json_attr")
def _json_attr(value) -> str:
    """JSON for a data- attribute (Jinja escapes it when rendered)."""
    return json.dumps(value, default=str)
