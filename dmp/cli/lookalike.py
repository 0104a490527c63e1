"""Seed lists and lookalikes: seeds, lookalike. Every command acts for one agency
(--agency) and sees only that agency's lists."""

from __future__ import annotations

from pathlib import Path

import click

from dmp.cli.app import Context, emit_json, json_option, main, pass_ctx

agency_option = click.option(
    "--agency", required=True, help="The agency acting; it sees and uses only its own lists."
)


@main.group()
def seeds() -> None:
    """Seed lists: an agency's converters (MAIDs, cookies, emails) to build lookalikes from."""


@seeds.command("upload")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name of the seed list (unique per agency).")
@agency_option
@click.option(
    "--id-type",
    "id_type",
    required=True,
    type=click.Choice(["maid", "cookie", "hem", "email"]),
    help="What the file holds; emails are normalised and SHA-256 hashed on arrival.",
)
@click.option("--replace", is_flag=True, help="Replace the contents of an existing list.")
@json_option
@pass_ctx
def seeds_upload(
    ctx: Context, path: Path, name: str, agency: str, id_type: str, replace: bool, as_json: bool
) -> None:
    """Upload FILE (CSV or text, one ID per row, header optional) and match it to devices.

    Refused rows are reported by line number and reason, never by value. With
    --json: rows, valid, invalid, invalid_reasons, invalid_lines, duplicates,
    opted_out, ids, matched_ids, matched (devices), matched_with_profile, match_rate.
    """
    from dmp.lookalike.seeds import upload_seed_list

    with ctx.store() as store:
        report = upload_seed_list(store, ctx.config, path, name, agency, id_type, replace)
    if as_json:
        emit_json(report)
        return
    for bad in report["invalid_lines"]:
        click.echo(f"line {bad['line']}: {bad['reason']}", err=True)
    if report["invalid_lines_omitted"]:
        click.echo(f"... and {report['invalid_lines_omitted']:,} more refused lines", err=True)
    click.echo(
        f"{'replaced' if report['replaced'] else 'stored'} seed list {report['name']} "
        f"({report['agency']}): {report['rows']:,} rows, {report['valid']:,} valid, "
        f"{report['invalid']:,} invalid, {report['duplicates']:,} duplicates, "
        f"{report['opted_out']:,} opted out\n"
        f"{report['ids']:,} IDs, {report['matched_ids']:,} matched ({report['match_rate']:.1%}) "
        f"-> {report['matched']:,} devices, {report['matched_with_profile']:,} with an "
        "interest profile"
    )
    minimum = ctx.config.get("lookalike.min_seed_devices")
    if report["matched_with_profile"] < minimum:
        click.echo(f"note: a lookalike needs at least {minimum:,} of those", err=True)


@seeds.command("list")
@agency_option
@json_option
@pass_ctx
def seeds_list(ctx: Context, agency: str, as_json: bool) -> None:
    """The agency's seed lists with their counts."""
    from dmp.lookalike.seeds import list_seed_lists

    with ctx.store() as store:
        lists = list_seed_lists(store, agency)
    if as_json:
        emit_json(lists)
        return
    click.echo(f"{'name':<24} {'type':<7} {'IDs':>10} {'devices':>10}  uploaded")
    for s in lists:
        click.echo(
            f"{s['name']:<24} {s['id_type']:<7} {s['ids']:>10,} {s['matched']:>10,}  "
            f"{s['uploaded_at']}"
        )


@seeds.command("delete")
@click.argument("name")
@agency_option
@pass_ctx
def seeds_delete(ctx: Context, name: str, agency: str) -> None:
    """Delete a seed list and its IDs (refused while a lookalike uses it)."""
    from dmp.lookalike.seeds import delete_seed_list

    with ctx.store() as store:
        result = delete_seed_list(store, name, agency)
    click.echo(f"deleted seed list {result['name']} ({result['ids_deleted']:,} IDs)")


@main.group()
def lookalike() -> None:
    """Lookalike audiences: the devices most like a seed list, as a segment."""


@lookalike.command("create")
@click.argument("name")
@click.option("--seed", required=True, help="The agency's seed list to model.")
@agency_option
@click.option(
    "--reach",
    default="5%",
    show_default=True,
    help="Share of eligible devices (1%-20%) or an absolute number of devices.",
)
@click.option("--description", help="Shown with the segment.")
@click.option("--include-seeds", is_flag=True, help="Let seed devices into the audience.")
@click.option("--exclude", metavar="SEGMENT", help="Keep this segment's members out (customers).")
@click.option("--force", is_flag=True, help="Create it even if the seeds show no usable signal.")
@json_option
@pass_ctx
def lookalike_create(
    ctx: Context,
    name: str,
    seed: str,
    agency: str,
    reach: str,
    description: str | None,
    include_seeds: bool,
    exclude: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Train on a seed list and store the audience as a lookalike segment.

    A seed list whose held-out lift is within the no-signal baseline (random
    lists of its size and ID-type mix) at every reach is refused unless
    --force. With --json: the run (size, churn) and the held-out quality
    report (recall and lift at 1, 2, 5, 10, 20% reach with 95% intervals,
    the baseline's lift and the relative lift, AUC, signal, verdict).
    """
    from dmp.lookalike.audience import create_lookalike

    with ctx.store() as store:
        report = create_lookalike(
            store, ctx.config, name, seed, agency, reach, description,
            include_seeds=include_seeds, exclude=exclude, force=force,
        )  # fmt: skip
    if as_json:
        emit_json(report)
        return
    click.echo(
        f"lookalike {report['name']} ({report['agency']}): {report['size']:,} devices of "
        f"{report['eligible']:,} eligible, from {report['seed_devices']:,} seed devices"
    )
    _echo_quality(report["quality"])


@lookalike.command("refresh")
@click.argument("name")
@agency_option
@click.option(
    "--force", is_flag=True, help="Apply even if the signal, size or quality guard objects."
)
@json_option
@pass_ctx
def lookalike_refresh(ctx: Context, name: str, agency: str, force: bool, as_json: bool) -> None:
    """Retrain one lookalike now (the `lookalike` job refreshes them all)."""
    from dmp.lookalike.audience import refresh_lookalike

    with ctx.store() as store:
        report = refresh_lookalike(store, ctx.config, name, agency, force)
    if as_json:
        emit_json(report)
        return
    if report["status"] == "kept":
        click.echo(f"kept the previous audience ({report['size']:,}): {report['reason']}")
    else:
        churn = "" if report["churn"] is None else f", churn {report['churn']:.1%}"
        click.echo(
            f"applied: {report['size']:,} devices, {report['added']:,} added, "
            f"{report['removed']:,} removed{churn}"
        )
    _echo_quality(report["quality"])


@lookalike.command("list")
@agency_option
@json_option
@pass_ctx
def lookalike_list(ctx: Context, agency: str, as_json: bool) -> None:
    """The agency's lookalikes: size, reach, seed list, last run."""
    from dmp.lookalike.audience import list_lookalikes

    with ctx.store() as store:
        items = list_lookalikes(store, agency)
    if as_json:
        emit_json(items)
        return
    click.echo(f"{'name':<24} {'seed':<20} {'reach':>9} {'size':>10}  last run")
    for item in items:
        last = item["runs"][0] if item["runs"] else None
        state = f"{last['status']} {last['ran_at']}" if last else "never"
        click.echo(
            f"{item['name']:<24} {item['seed']:<20} {_reach_text(item['reach']):>9} "
            f"{item['size']:>10,}  {state}"
        )


@lookalike.command("show")
@click.argument("name")
@agency_option
@json_option
@pass_ctx
def lookalike_show(ctx: Context, name: str, agency: str, as_json: bool) -> None:
    """A lookalike's quality report, strongest categories and recent runs."""
    from dmp.lookalike.audience import show_lookalike

    with ctx.store() as store:
        info = show_lookalike(store, name, agency)
    if as_json:
        emit_json(info)
        return
    click.echo(
        f"lookalike {info['name']} ({info['agency']}), segment {info['segment']!r}: "
        f"seed list {info['seed']}, reach {_reach_text(info['reach'])}, {info['size']:,} devices"
    )
    _echo_quality(info["quality"])
    if info["model"]:
        names = ", ".join(c["name"] for c in info["model"]["top_categories"][:5])
        click.echo(f"strongest categories: {names}")
    for run in info["runs"]:
        churn = "" if run["churn"] is None else f" churn {run['churn']:.1%}"
        why = f": {run['reason']}" if run["reason"] else ""
        click.echo(
            f"  #{run['run_id']} {run['ran_at']} {run['status']} {run['size']:,}{churn}{why}"
        )


@lookalike.command("delete")
@click.argument("name")
@agency_option
@pass_ctx
def lookalike_delete(ctx: Context, name: str, agency: str) -> None:
    """Delete a lookalike and its segment (destinations drop it at their next sync)."""
    from dmp.lookalike.audience import delete_lookalike

    with ctx.store() as store:
        delete_lookalike(store, name, agency)
    click.echo(f"deleted lookalike {name}")


def _reach_text(reach: dict) -> str:
    return f"{reach['share']:.0%}" if "share" in reach else f"{reach['size']:,}"


def _echo_quality(quality: dict | None) -> None:
    """The held-out report as a table: the buyer's reach vs similarity trade-off."""
    if not quality:
        return
    click.echo(
        f"held-out quality ({quality['heldout_seeds']:,} seeds held out, "
        f"{quality['train_seeds']:,} trained on): AUC {quality['auc']:.3f} (random 0.5)"
    )
    if "baseline" in quality:
        click.echo(("" if quality["signal"] else "WARNING: ") + quality["verdict"])
    click.echo(f"  {'reach':>5} {'devices':>10}  {'recall (95% interval)':<24} "
               f"{'lift (95% interval)':<22} {'baseline':<11} {'vs baseline':<19}")  # fmt: skip
    for row in quality["at"]:
        low, high = row["recall_95"]
        lift_low, lift_high = row["lift_95"] or (0, 0)
        recall = f"{row['recall']:.1%} ({low:.1%}-{high:.1%})"
        lift = f"{row['lift']:.2f} ({lift_low:.2f}-{lift_high:.2f})"
        base, versus = "-", "-"
        if "baseline_lift_95" in row:
            base = "{:.2f}-{:.2f}".format(*row["baseline_lift_95"])
            versus = "{:.2f} ({:.2f}-{:.2f})".format(row["relative_lift"], *row["relative_lift_95"])
        click.echo(
            f"  {row['reach']:>5.0%} {row['devices']:>10,}  {recall:<24} {lift:<22} "
            f"{base:<11} {versus:<19}"
        )
