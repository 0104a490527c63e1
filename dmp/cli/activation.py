"""Activation: destinations, sync. Thin shells over dmp.activation. A secret is only
ever the name of the environment variable holding it (--option token_env=TTD_TOKEN):
never stored, never printed."""

from __future__ import annotations

import logging
import sys

import click

from dmp.cli.app import Context, emit_json, json_option, log_to_stderr, main, pass_ctx


def _key_values(pairs: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


@main.group()
def destinations() -> None:
    """Where segments go: a connector kind, its options, and the segments linked to it."""


@destinations.command("add")
@click.argument("name")
@click.option("--kind", required=True, help="ttd, meta, xandr, webhook or file.")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting (repeatable). ttd: advertiser_id, token_env, [data_provider_id, "
    "base_url, partner, ttl_days]; meta: token_env, [base_url, version]; xandr: "
    "token_env, [base_url, maid_domain, ttl_days]; webhook: url, secret_env; file: "
    "[folder, format]. Every kind: requests_per_second, burst, max_retries, "
    "timeout_seconds, breaker_failures, min_audience...",
)
@json_option
@pass_ctx
def destinations_add(
    ctx: Context, name: str, kind: str, options: tuple[str, ...], as_json: bool
) -> None:
    """Store a destination; its options are checked against its connector now."""
    from dmp.activation import add_destination

    with ctx.store() as store:
        info = add_destination(store, name, kind, _key_values(options))
    if as_json:
        emit_json(info)
    else:
        click.echo(f"destination {name} ({kind}) added; link segments with `dmp destinations link`")


@destinations.command("list")
@json_option
@pass_ctx
def destinations_list(ctx: Context, as_json: bool) -> None:
    """Destinations with their options and linked segments (and how many IDs each holds)."""
    from dmp.activation import list_destinations

    with ctx.store() as store:
        found = list_destinations(store)
    if as_json:
        emit_json(found)
        return
    for dest in found:
        options = " ".join(f"{k}={v}" for k, v in dest["options"].items())
        click.echo(f"{dest['name']:<16} {dest['kind']:<8} {options}")
        for link in dest["links"]:
            state = "" if link["active"] else "unlinking, "
            click.echo(
                f"    {link['segment']} -> {link['external_id']}  ({state}{link['held']:,} held)"
            )


@destinations.command("link")
@click.argument("destination")
@click.argument("segment")
@click.option(
    "--external-id",
    help="The platform's name or ID for the segment (Meta audience ID, Xandr seg_id); "
    "default the segment's name.",
)
@json_option
@pass_ctx
def destinations_link(
    ctx: Context, destination: str, segment: str, external_id: str | None, as_json: bool
) -> None:
    """Send SEGMENT (name or ID) to DESTINATION from the next sync on."""
    from dmp.activation import link_segment

    with ctx.store() as store:
        info = link_segment(store, destination, segment, external_id)
    if as_json:
        emit_json(info)
    else:
        click.echo(f"{info['segment']} -> {destination} as {info['external_id']}")


@destinations.command("unlink")
@click.argument("destination")
@click.argument("segment")
@json_option
@pass_ctx
def destinations_unlink(ctx: Context, destination: str, segment: str, as_json: bool) -> None:
    """Stop sending SEGMENT; the next sync removes the members already pushed."""
    from dmp.activation import unlink_segment

    with ctx.store() as store:
        info = unlink_segment(store, destination, segment)
    if as_json:
        emit_json(info)
    else:
        pending = info["pending_removals"]
        click.echo(
            f"{info['segment']} unlinked from {destination}"
            + (f"; the next sync removes its {pending:,} members there" if pending else "")
        )


@main.group("sync", invoke_without_command=True)
@click.option("--destination", help="Only this destination.")
@click.option("--segment", help="Only this segment (name or ID).")
@click.option("--dry-run", is_flag=True, help="Build and log the requests; send nothing.")
@json_option
@click.pass_context
def sync_command(
    click_ctx: click.Context,
    destination: str | None,
    segment: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Push each linked segment's changes (adds, removes, TTL refreshes) to its destinations.

    Exit status is 1 when any sync failed or was partial. With --json, prints one
    object per destination and segment: status, reason, desired, unmapped,
    adds_sent, removes_sent, refreshes_sent, accepted, rejected, failed, held,
    requests, retries, throttled_seconds, errors (platform reason -> items).
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from dmp.activation import sync

    ctx = click_ctx.find_object(Context)
    if dry_run:
        log_to_stderr(logging.INFO)
    with ctx.store() as store:
        results = sync(store, ctx.config, destination=destination, segment=segment, dry_run=dry_run)
    if as_json:
        emit_json(results)
    else:
        for result in results:
            click.echo(_describe_sync(result))
        if not results:
            click.echo("nothing to sync: link segments with `dmp destinations link`")
    if any(r["status"] in ("failed", "partial") for r in results):
        sys.exit(1)


@sync_command.command("history")
@click.option("--destination", help="Only this destination.")
@click.option("--segment", help="Only this segment (name).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
@pass_ctx
def sync_history(
    ctx: Context, destination: str | None, segment: str | None, limit: int, as_json: bool
) -> None:
    """The most recent sync runs, newest first."""
    from dmp.activation import history

    with ctx.store() as store:
        runs = history(store, destination, segment, limit)
    if as_json:
        emit_json(runs)
    else:
        for run in runs:
            click.echo(f"#{run['run_id']:<5} {run['started_at']}  " + _describe_sync(run))


def _describe_sync(r: dict) -> str:
    line = (
        f"{r['destination']:<14} {r['segment']:<20} {r['status']:<11} "
        f"desired {r['desired'] or 0:,}  +{r['adds_sent'] or 0:,} -{r['removes_sent'] or 0:,} "
        f"~{r['refreshes_sent'] or 0:,}  accepted {r['accepted'] or 0:,}, "
        f"rejected {r['rejected'] or 0:,}, failed {r['failed'] or 0:,}; "
        f"{r['requests'] or 0} requests, {r['retries'] or 0} retries, "
        f"{r['throttled_seconds'] or 0:.1f} s throttled"
    )
    if r.get("dry_run"):
        line = "DRY RUN " + line
    if r["reason"]:
        line += f"\n    {r['reason']}"
    if r["errors"]:
        line += "\n    " + ", ".join(f"{k}: {v:,}" for k, v in r["errors"].items())
    return line
