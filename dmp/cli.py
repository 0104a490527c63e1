"""The one command line: thin click commands over library functions.

Every command that reports takes ``--json``; errors meant for people
(:class:`DmpError`) are printed as one line and exit with status 1.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from dmp.config import Config, load_config
from dmp.errors import DmpError


class Context:
    """Lazily loaded config for the chosen instance."""

    def __init__(self, home: str | None, overrides: tuple[str, ...]):
        self.home = home
        self.overrides = overrides
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.home, self.overrides)
        return self._config

    def store(self, read_only: bool = False, create: bool = False):
        """The instance database. Opening one that does not exist creates it (that is
        `dmp init`'s job, ``create``); anyone else says so on stderr, so a mistyped
        --home or DMP_HOME does not pass for an empty instance."""
        from dmp.store import open_store

        path = self.config.path("store.database")
        if not create and not path.exists():
            click.echo(
                f"note: no database at {path}; creating a new instance "
                "(check --home / DMP_HOME if you expected one)",
                err=True,
            )
        return open_store(self.config, read_only=read_only)


pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


class DmpGroup(click.Group):
    """Turns DmpError into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DmpError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=DmpGroup)
@click.option(
    "--home",
    envvar="DMP_HOME",
    type=click.Path(file_okay=False),
    help="Instance folder holding the database and working folders "
    "[env DMP_HOME; default ~/.local/share/dmp].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a config value (repeatable); see config/dmp.toml.",
)
@click.version_option(package_name="dmp")
@click.pass_context
def main(ctx: click.Context, home: str | None, overrides: tuple[str, ...]) -> None:
    """dmp: anonymous-audience data management platform."""
    ctx.obj = Context(home, overrides)


@main.command()
@json_option
@pass_ctx
def init(ctx: Context, as_json: bool) -> None:
    """Create the instance folders and database, and apply migrations."""
    config = ctx.config
    config.path("ingest.landing").mkdir(parents=True, exist_ok=True)
    with ctx.store(create=True) as store:
        info = {
            "home": str(config.home),
            "database": str(store.path),
            "schema_version": store.schema_version(),
        }
    if as_json:
        emit_json(info)
    else:
        click.echo(
            f"dmp home  {info['home']}\ndatabase  {info['database']} "
            f"(schema version {info['schema_version']})"
        )


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--landing",
    "landing",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DIR]",
    help="Ingest every file in the landing folder "
    "(default from config) and move it to done/ or failed/.",
)
@click.option("--layout", help="Column layout from config [layouts.NAME] for these files.")
@json_option
@pass_ctx
def ingest(
    ctx: Context, paths: tuple[Path, ...], landing: str | None, layout: str | None, as_json: bool
) -> None:
    """Load log files (CSV, TSV, JSON Lines, Parquet; optionally .gz).

    Exit status is 1 when any file was rejected. With --json, prints one object
    per file: file, status (loaded|skipped|rejected), rows, loaded, duplicates,
    quarantined, dropped, reasons, new_devices, updated_devices, error.
    """
    from dmp.ingest import ingest_files, ingest_landing

    if bool(paths) == (landing is not None):
        raise click.UsageError("give file paths or --landing, not both or neither")
    with ctx.store() as store, _ProgressBar(enabled=not as_json) as bar:
        if landing is not None:
            results = ingest_landing(
                store, ctx.config, Path(landing) if landing else None, progress=bar.update
            )
        else:
            results = ingest_files(store, ctx.config, paths, layout=layout, progress=bar.update)
    if as_json:
        emit_json([r.to_dict() for r in results])
    else:
        for result in results:
            click.echo(_describe(result))
        if not results:
            click.echo("nothing to ingest")
    if any(r.status == "rejected" for r in results):
        sys.exit(1)


def _describe(result) -> str:
    if result.status == "rejected":
        return f"REJECTED  {result.file}\n          {result.error}"
    if result.status == "skipped":
        return f"skipped   {result.file} (already loaded)"
    line = (
        f"loaded    {result.file}: {result.rows:,} rows, {result.loaded:,} new events, "
        f"{result.duplicates:,} duplicates, {result.quarantined:,} quarantined, "
        f"{result.dropped:,} dropped; {result.new_devices:,} new and "
        f"{result.updated_devices:,} updated devices"
    )
    if result.reasons:
        line += "\n          " + ", ".join(f"{k}: {v:,}" for k, v in result.reasons.items())
    return line


class _ProgressBar:
    """A click progress bar on stderr for big files, only on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None
        self.name = None

    def update(self, name: str, fraction: float) -> None:
        if not self.enabled:
            return
        if name != self.name:
            self.close()
            self.name = name
            self.bar = click.progressbar(length=1000, label=f"ingest {name}", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(int(fraction * 1000) - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@main.command()
@json_option
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Counts: events, devices by ID type, quarantine, last ingest."""
    from dmp.status import status as read_status

    with ctx.store() as store:
        info = read_status(store)
    if as_json:
        emit_json(info)
        return
    click.echo(f"database     {info['database']} (schema {info['schema_version']})")
    click.echo(
        f"events       {info['events']:,}"
        + (f"  ({info['first_event']} .. {info['last_event']})" if info["events"] else "")
    )
    types = ", ".join(f"{k} {v:,}" for k, v in info["devices_by_type"].items())
    click.echo(f"devices      {info['devices']:,}" + (f"  ({types})" if types else ""))
    click.echo(f"id links     {info['id_links']:,}")
    strings = info["consent_strings"]
    click.echo(
        f"privacy      {info['optouts']:,} opt-outs, {info['bots']:,} bots flagged, "
        f"{strings['decided']:,} consent strings ({strings['undecodable']:,} undecodable)"
    )
    reasons = ", ".join(f"{k} {v:,}" for k, v in info["quarantined_by_reason"].items())
    click.echo(f"quarantined  {info['quarantined']:,}" + (f"  ({reasons})" if reasons else ""))
    click.echo(
        f"files        {info['files']['loaded']:,} loaded, {info['files']['rejected']:,} rejected"
    )
    last = info["last_ingest"]
    if last:
        click.echo(f"last ingest  {last['finished_at']} {last['status']} {last['file']}")


@main.command()
@click.option("--devices", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--events", type=click.IntRange(min=1), default=200_000, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Events spread over this many days before now.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "tsv", "jsonl", "parquet"]),
    default="csv",
    show_default=True,
)
@click.option("--gzip", "gzipped", is_flag=True, help="Gzip the event files.")
@click.option(
    "--files",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split events over this many files.",
)
@click.option(
    "--bad-rows",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Append this many deliberately broken rows (one of each kind, cycling).",
)
@json_option
def generate(
    devices: int,
    events: int,
    out: Path,
    seed: int,
    days: int,
    fmt: str,
    gzipped: bool,
    files: int,
    bad_rows: int,
    as_json: bool,
) -> None:
    """Write a seeded synthetic world: event logs, seed lists and the ground truth."""
    from dmp.generate import World

    world = World(devices=devices, events=events, seed=seed, days=days)
    summary = world.write(out, fmt=fmt, gzipped=gzipped, files=files, bad_rows=bad_rows)
    if as_json:
        emit_json(summary)
    else:
        click.echo(
            f"wrote {summary['events']:,} events for {summary['devices']:,} devices "
            f"({summary['personas']} personas) to {out}"
        )


id_type_option = click.option(
    "--type",
    "id_type",
    type=click.Choice(["cookie", "maid", "hem"]),
    help="Type of every ID given (default: inferred; a file may say `id,id_type`).",
)
ids_file_option = click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read IDs from a file, one a line (a header line is skipped).",
)


def _report_ids(summary: dict, as_json: bool, done: str) -> None:
    """Print an ID-list command's outcome; each refused line gets its number and reason.
    Exits 1 when no ID was valid, so scripts notice."""
    if as_json:
        emit_json(summary)
        if not summary["valid"]:
            sys.exit(1)
        return
    _echo_invalid(summary["invalid"])
    click.echo(f"{summary['valid']:,} of {summary['given']:,} IDs valid; {done}")
    if not summary["valid"]:
        raise DmpError("no valid ID given: nothing was done")


def _echo_invalid(invalid: list[dict]) -> None:
    for bad in invalid:
        click.echo(f"line {bad['line']}: {bad['reason']}: {bad['value']!r}", err=True)


@main.group()
def optout() -> None:
    """Opt-outs: the ID is kept only to drop its data, now and in future logs."""


@optout.command("add")
@click.argument("ids", nargs=-1)
@ids_file_option
@id_type_option
@json_option
@pass_ctx
def optout_add(
    ctx: Context, ids: tuple[str, ...], path: Path | None, id_type: str | None, as_json: bool
) -> None:
    """Opt out IDs given as arguments or in --file; their data is removed at once."""
    from dmp.identity.privacy import optout as record_optout

    if not ids and path is None:
        raise click.UsageError("give IDs as arguments or --file FILE")
    with ctx.store() as store:
        summary = record_optout(
            store, list(ids) or None, path, id_type, source="file" if path else "cli"
        )
    deleted = sum(summary["rows_deleted"].values())
    _report_ids(
        summary, as_json, f"{summary['new_optouts']:,} new opt-outs, {deleted:,} rows removed"
    )


@main.command()
@click.argument("ids", nargs=-1)
@ids_file_option
@id_type_option
@click.option("--with-linked", is_flag=True, help="Also every ID linked to them in the ID graph.")
@click.option("--by", "requested_by", default="cli", show_default=True, help="Who asked (audit).")
@json_option
@pass_ctx
def delete(
    ctx: Context,
    ids: tuple[str, ...],
    path: Path | None,
    id_type: str | None,
    with_linked: bool,
    requested_by: str,
    as_json: bool,
) -> None:
    """A deletion request (GDPR/CCPA): remove every row about the IDs, audited."""
    from dmp.identity.privacy import delete as delete_ids

    if not ids and path is None:
        raise click.UsageError("give IDs as arguments or --file FILE")
    with ctx.store() as store:
        summary = delete_ids(
            store, list(ids) or None, path, id_type, requested_by, with_linked=with_linked
        )
    deleted = sum(summary["rows_deleted"].values())
    note = f"{deleted:,} rows removed"
    if summary.get("unknown"):
        note += f"; {summary['unknown']:,} ID(s) unknown here, nothing to delete for them"
    _report_ids(summary, as_json, note)


@main.group()
def idsync() -> None:
    """Partner ID sync (cookie matching) tables."""


@idsync.command("import")
@click.argument("partner")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_ctx
def idsync_import(ctx: Context, partner: str, path: Path, as_json: bool) -> None:
    """Load PARTNER's match file: CSV `cookie_id,partner_id`, header optional."""
    from dmp.identity.idsync import import_matches

    with ctx.store() as store:
        summary = import_matches(store, partner, path)
    if as_json:
        emit_json(summary)
        return
    _echo_invalid(summary["invalid"])
    click.echo(f"{summary['stored']:,} matches stored for {partner} from {summary['rows']:,} rows")


@main.command()
@click.argument("value", metavar="ID")
@id_type_option
@json_option
@pass_ctx
def explain(ctx: Context, value: str, id_type: str | None, as_json: bool) -> None:
    """Everything known and decided about one ID: lifetime, consent, opt-out, links."""
    from dmp.identity.explain import explain as explain_id

    with ctx.store() as store:
        info = explain_id(store, ctx.config, value, id_type)
    if as_json:
        emit_json(info)
    else:
        _echo_explained(info)
    if not info["valid"]:
        sys.exit(1)


def _echo_explained(info: dict) -> None:
    """One line per fact; nested facts as compact JSON."""
    for key, value in info.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str) if value else "none"
        elif value is None:
            value = "-"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        click.echo(f"{key.replace('_', ' '):<14} {value}")


# --- Interests and segments: taxonomy, segments ------------------------------------


def _rule_argument(text: str):
    """A rule given inline as JSON or as @FILE."""
    from dmp.segments.rule_segments import parse_rule

    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise DmpError(f"{path}: no such rule file")
        text = path.read_text(encoding="utf-8")
    return parse_rule(text)


rule_option = click.option("--rule", "rule_text", required=True, help="JSON rule, or @FILE.")


@main.command()
@click.argument("parent", required=False)
@click.option("--audience", is_flag=True, help="Browse the Audience Taxonomy 1.1 instead.")
@json_option
@pass_ctx
def taxonomy(ctx: Context, parent: str | None, audience: bool, as_json: bool) -> None:
    """Browse the IAB taxonomies: the children of PARENT (an ID, name or path), with device
    counts."""
    from dmp.interests.taxonomy import browse, ensure

    with ctx.store() as store:
        ensure(store, ctx.config)
        nodes = browse(store, "audience" if audience else "content", parent)
    if as_json:
        emit_json(nodes)
        return
    for node in nodes:
        flags = (" [sensitive]" if node["sensitive"] else "") + (
            f" ({node['children']} below)" if node["children"] else ""
        )
        click.echo(f"{node['id']:>8}  {node['devices']:>9,}  {node['name']}{flags}")


@main.group()
def segments() -> None:
    """Audience segments: rules, clusters and lookalikes, their members and sizes."""


@segments.command("create")
@click.argument("name")
@rule_option
@click.option("--description")
@click.option("--ttl-days", type=click.IntRange(min=1), help="Membership TTL (default 30).")
@json_option
@pass_ctx
def segments_create(
    ctx: Context, name: str, rule_text: str, description, ttl_days, as_json: bool
) -> None:
    """Create a rule segment and fill it."""
    from dmp.segments.rule_segments import create

    with ctx.store() as store:
        result = create(store, ctx.config, name, _rule_argument(rule_text), description, ttl_days)
    emit_json(result) if as_json else click.echo(f"{name}: {result['size']:,} members")


@segments.command("preview")
@rule_option
@json_option
@pass_ctx
def segments_preview(ctx: Context, rule_text: str, as_json: bool) -> None:
    """How many devices a rule matches now; stores nothing."""
    from dmp.segments.rule_segments import preview

    with ctx.store() as store:
        size = preview(store, ctx.config, _rule_argument(rule_text))
    emit_json({"size": size}) if as_json else click.echo(f"{size:,} devices")


@segments.command("list")
@click.option("--kind", type=click.Choice(["rule", "cluster", "lookalike"]))
@json_option
@pass_ctx
def segments_list(ctx: Context, kind: str | None, as_json: bool) -> None:
    """Every segment with its kind and current size."""
    from dmp.segments.registry import list_segments

    with ctx.store() as store:
        found = list_segments(store, kind)
    if as_json:
        emit_json([{k: s[k] for k in ("name", "kind", "size", "agency")} for s in found])
        return
    for s in found:
        click.echo(f"{s['kind']:<10} {s['size']:>10,}  {s['name']}")


@segments.command("show")
@click.argument("name")
@json_option
@pass_ctx
def segments_show(ctx: Context, name: str, as_json: bool) -> None:
    """A segment's definition, size trend and overlap with the others."""
    from dmp.segments.insights import describe

    with ctx.store() as store:
        info = describe(store, name)
    if as_json:
        emit_json(info)
        return
    click.echo(json.dumps(info, indent=2, default=str))


@segments.command("export")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@pass_ctx
def segments_export(ctx: Context, name: str, out: Path) -> None:
    """Write the current members as CSV `id,id_type`."""
    from dmp.segments.rule_segments import export_members

    with ctx.store() as store:
        count = export_members(store, name, out)
    click.echo(f"{count:,} members written to {out}")


@segments.command("dump")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@pass_ctx
def segments_dump(ctx: Context, folder: Path) -> None:
    """Write every rule segment as one JSON file (to keep definitions in git)."""
    from dmp.segments.rule_segments import dump

    with ctx.store() as store:
        written = dump(store, folder)
    click.echo(f"{len(written)} rule segment(s) written to {folder}")


@segments.command("apply")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@json_option
@pass_ctx
def segments_apply(ctx: Context, folder: Path, dry_run: bool, as_json: bool) -> None:
    """Create or update rule segments from `dump` files."""
    from dmp.segments.rule_segments import apply

    with ctx.store() as store:
        plans = apply(store, ctx.config, folder, dry_run=dry_run)
    if as_json:
        emit_json(plans)
        return
    for plan in plans:
        click.echo(f"{plan['change']:<9} {plan['name']}  ({plan['file']})")


# --- Activation (issue 6): destinations, sync ------------------------------------------
# Thin shells over dmp.activation. A secret is only ever the name of the environment
# variable holding it (--option token_env=TTD_TOKEN): never stored, never printed.


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
        _log_to_stderr(logging.INFO)
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


# --- Scheduler and job runner (issue 7): run, jobs, scheduler, serve -------------------
# Every run goes through dmp.scheduler.Runner, which records it in job_runs.

log = logging.getLogger("dmp.cli")


@main.command("run")
@click.argument("names", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Report what the jobs would do; change nothing.")
@json_option
@pass_ctx
def run_jobs(ctx: Context, names: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Run pipeline jobs once, in the order given (or `all`); each run is recorded.

    Exit status is 1 unless every run succeeded. SIGTERM or Ctrl-C starts no
    more jobs and gives the running one scheduler.stop_timeout_seconds to
    finish before it is interrupted (its open transaction rolls back). With
    --json, prints a list of runs: run_id, job, trigger, status, started_at,
    finished_at, duration_seconds, result, error.
    """
    from dmp.scheduler import run_in_order
    from jobs import JOBS

    chosen = list(JOBS) if names == ("all",) else list(names)
    unknown = [n for n in chosen if n not in JOBS]
    if unknown:
        raise click.UsageError(f"unknown job(s) {', '.join(unknown)}; known: {', '.join(JOBS)}")
    if dry_run:
        JOBS = _dry_runs(JOBS, chosen)  # noqa: N806 (the same mapping, dry)
    _log_to_stderr(logging.WARNING)
    with _runner(ctx, JOBS) as runner:
        runs, not_started, stuck = run_in_order(
            runner, chosen, ctx.config.get("scheduler.stop_timeout_seconds")
        )
        _exit_if_stuck(stuck)
    if as_json:
        emit_json([run.to_dict() for run in runs])
    else:
        for run in runs:
            click.echo(_describe_run(run.to_dict(), full_error=True))
    if not_started:
        click.echo(f"not started (stopping): {', '.join(not_started)}", err=True)
    if not_started or any(run.status != "succeeded" for run in runs):
        sys.exit(1)


@main.command("jobs")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many recent runs to list.",
)
@json_option
@pass_ctx
def list_jobs(ctx: Context, limit: int, as_json: bool) -> None:
    """Each job with its schedule, next and last run; then the most recent runs.

    With --json: {"jobs": [{job, installed, cron, after, enabled, next_run,
    running, last_run}], "runs": [...]} (runs as in `dmp run --json`).
    """
    with _runner(ctx) as runner:
        info = runner.overview(limit)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{'job':<10} {'schedule':<16} {'next run (UTC)':<21} last run")
    for job in info["jobs"]:
        when = job["cron"] or (f"after {job['after']}" if job["after"] else "on demand")
        last = job["last_run"]
        if not job["installed"]:
            state = "not installed"
        elif job["running"]:
            state = "running now"
        elif last:
            state = f"{last['status']} {last['started_at']} ({last['trigger']})"
        else:
            state = "never"
        if not job["enabled"] and job["installed"] and when != "on demand":
            when = "off"
        click.echo(f"{job['job']:<10} {when:<16} {job['next_run'] or '-':<21} {state}")
    if info["runs"]:
        click.echo("\nrecent runs")
        for run in info["runs"]:
            click.echo(_describe_run(run, full_error=False))


@main.command()
@pass_ctx
def scheduler(ctx: Context) -> None:
    """Run the jobs on the schedule in config/schedule.toml until SIGTERM or Ctrl-C.

    Logs go to stderr. The process owns the database meanwhile; use `dmp serve`
    instead to also trigger jobs and see their status over HTTP.
    """
    from dmp.scheduler import create_scheduler, serve_until_stopped

    _log_to_stderr(logging.INFO)
    with _runner(ctx) as runner:
        log.info("dmp scheduler: running (pid %d); stop with SIGTERM or Ctrl-C", os.getpid())
        stuck = serve_until_stopped(
            runner,
            create_scheduler(runner),
            threading.Event().wait,
            ctx.config.get("scheduler.stop_timeout_seconds"),
        )
        _exit_if_stuck(stuck)


@main.command()
@click.option("--host", help="Address to listen on [default: web.host, 127.0.0.1].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on [default: web.port, 8080]; 0 picks a free one.",
)
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None) -> None:
    """The web app with its JSON API (on waitress) and the scheduler, in one process.

    The process owns the database, so other `dmp` commands cannot open it
    meanwhile: trigger jobs with POST /api/jobs/JOB/run and see them with
    GET /api/jobs (bearer token from the variable named by web.api_token_env).
    Stops gracefully on SIGTERM or Ctrl-C, like `dmp scheduler`.
    """
    import waitress

    from dmp.scheduler import create_scheduler, serve_until_stopped
    from dmp.web import create_app, start_spool_rotator

    config = ctx.config
    host = host or config.get("web.host")
    port = config.get("web.port") if port is None else port
    _log_to_stderr(logging.INFO)
    with _runner(ctx) as runner:
        app = create_app(config, runner=runner)
        if not app.config["API_TOKEN"]:
            log.warning("API off: %s is not set", app.config["API_TOKEN_ENV"])
        try:
            server = waitress.create_server(app, host=host, port=port)
        except OSError as exc:
            raise DmpError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        server.print_listen(f"dmp serve: listening on http://{{}}:{{}} (pid {os.getpid()})")
        rotator = start_spool_rotator(app)  # collector spool files reach ingest on time
        try:
            stuck = serve_until_stopped(
                runner,
                create_scheduler(runner),
                server.run,
                config.get("scheduler.stop_timeout_seconds"),
            )
        finally:
            rotator.stop()
        _exit_if_stuck(stuck)


@contextmanager
def _runner(ctx: Context, jobs: dict | None = None) -> Iterator:
    """The instance's Runner over ``jobs`` (default: all installed); the schedule is
    checked first."""
    from dmp.scheduler import Runner, load_schedule
    from jobs import JOBS

    schedule = load_schedule(ctx.config)
    with ctx.store() as store:
        yield Runner(store, ctx.config, JOBS if jobs is None else jobs, schedule)


def _dry_runs(jobs: dict, chosen: list[str]) -> dict:
    """The chosen jobs with ``dry_run=True``; a job that cannot pretend is a usage error."""
    unable = [n for n in chosen if "dry_run" not in inspect.signature(jobs[n]).parameters]
    if unable:
        raise click.UsageError(f"job(s) without a dry run: {', '.join(unable)}")
    return {name: functools.partial(jobs[name], dry_run=True) for name in chosen}


def _exit_if_stuck(stuck: list) -> None:
    """A job ignored the interrupt: leave without it (its transaction dies uncommitted)
    rather than close the database under it or hang."""
    if stuck:
        names = ", ".join(run.job for run in stuck)
        click.echo(f"error: {names} did not stop; exiting without it", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _describe_run(run: dict, full_error: bool) -> str:
    seconds = run["duration_seconds"]
    took = f"{seconds:.1f} s" if seconds is not None else "running"
    line = (
        f"#{run['run_id']:<5} {run['job']:<10} {run['trigger']:<8} {run['status']:<11} "
        f"{run['started_at']}  {took}"
    )
    if run["result"]:
        line += "  " + ", ".join(
            f"{k} {_brief(v)}" for k, v in run["result"].items() if _brief(v) is not None
        )
    if run["error"]:
        error = run["error"].rstrip() if full_error else run["error"].rstrip().rsplit("\n", 1)[-1]
        line += "\n" + textwrap.indent(error, "    ")
    return line


def _brief(value):
    """A result value short enough for one line: lists become counts, nested detail
    is left to --json and `dmp jobs`."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        flat = {k: v for k, v in value.items() if not isinstance(v, list | dict)}
        return flat or None
    return value


def _log_to_stderr(level: int) -> None:
    """Job and scheduler logs go to stderr, time-stamped, where a service manager keeps them."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


# --- Seed lists and lookalikes (issue 5): seeds, lookalike ------------------------------
# Every command acts for one agency (--agency) and sees only that agency's lists.

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
@json_option
@pass_ctx
def lookalike_create(
    ctx: Context,
    name: str,
    seed: str,
    agency: str,
    reach: str,
    description: str | None,
    as_json: bool,
) -> None:
    """Train on a seed list and store the audience as a lookalike segment.

    With --json: the run (size, churn) and the held-out quality report
    (recall and lift at 1, 2, 5, 10, 20% reach with 95% intervals, AUC).
    """
    from dmp.lookalike.audience import create_lookalike

    with ctx.store() as store:
        report = create_lookalike(store, ctx.config, name, seed, agency, reach, description)
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
@click.option("--force", is_flag=True, help="Apply even if the size or quality guard objects.")
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
    click.echo(f"  {'reach':>5} {'devices':>10}  {'recall (95% interval)':<24} "
               f"{'lift (95% interval)':<22} random")  # fmt: skip
    for row in quality["at"]:
        low, high = row["recall_95"]
        lift_low, lift_high = row["lift_95"] or (0, 0)
        recall = f"{row['recall']:.1%} ({low:.1%}-{high:.1%})"
        lift = f"{row['lift']:.2f} ({lift_low:.2f}-{lift_high:.2f})"
        click.echo(
            f"  {row['reach']:>5.0%} {row['devices']:>10,}  {recall:<24} {lift:<22} "
            f"{row['random_recall']:.1%}"
        )


# --- Dashboard users and API tokens (issue 8): users, tokens ---------------------------


@main.group()
def users() -> None:
    """Dashboard and API users: roles admin, buyer, agency."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "buyer", "agency"]), required=True)
@click.option("--agency", help="The agency an agency user acts for (agency role only).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (else it is asked for, unless no tty).",
)
@click.option("--no-password", is_flag=True, help="API tokens only: no dashboard log-in.")
@json_option
@pass_ctx
def users_add(
    ctx: Context,
    name: str,
    role: str,
    agency: str | None,
    password_stdin: bool,
    no_password: bool,
    as_json: bool,
) -> None:
    """Add a user; its password is stored as a salted hash only."""
    from dmp.web.users import add_user

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not no_password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with ctx.store() as store:
        user = add_user(store, name, role, agency, password)
    if as_json:
        emit_json(user)
    else:
        click.echo(f"added {role} user {name}" + (f" for agency {agency}" if agency else ""))


@users.command("list")
@json_option
@pass_ctx
def users_list(ctx: Context, as_json: bool) -> None:
    """Every user with role and agency (never a password or token)."""
    from dmp.web.users import list_users

    with ctx.store() as store:
        found = list_users(store)
    if as_json:
        emit_json(found)
        return
    for user in found:
        click.echo(f"{user['name']:<24} {user['role']:<7} {user['agency'] or ''}")


@main.group()
def tokens() -> None:
    """API tokens (Authorization: Bearer TOKEN), shown once, stored hashed."""


@tokens.command("create")
@click.argument("user")
@json_option
@pass_ctx
def tokens_create(ctx: Context, user: str, as_json: bool) -> None:
    """Create an API token for USER and print it (the only time it is shown)."""
    from dmp.web.users import create_token

    with ctx.store() as store:
        created = create_token(store, user)
    if as_json:
        emit_json(created)
    else:
        click.echo(created["token"])
        click.echo("store it now: it is shown only once", err=True)
