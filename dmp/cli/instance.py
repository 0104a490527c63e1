"""An instance and its logs: init, ingest, status, compact, generate."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dmp.cli.app import Context, emit_json, json_option, main, pass_ctx


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
def compact(ctx: Context, as_json: bool) -> None:
    """Rewrite the database into a fresh file, leaving no byte of deleted rows.

    `dmp optout add` and `dmp delete` do it themselves; run it after erasures made
    through a server (stop it first) and after the sync that confirmed their
    removal at destinations (which empties identity_removals)."""
    from dmp.store import compact as compact_database

    info = compact_database(ctx.config)
    if as_json:
        emit_json(info)
    else:
        click.echo(
            f"database compacted: {info['bytes_before']:,} -> {info['bytes_after']:,} bytes "
            f"in {info['seconds']:.1f} s"
        )


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
