"""The one command line: thin click commands over library functions.

Every command that reports takes ``--json``; errors meant for people
(:class:`DmpError`) are printed as one line and exit with status 1.
"""

from __future__ import annotations

import json
import sys
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

    def store(self, read_only: bool = False):
        from dmp.store import open_store

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
    with ctx.store() as store:
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
    """Print an ID-list command's outcome; each refused line gets its number and reason."""
    if as_json:
        emit_json(summary)
        return
    _echo_invalid(summary["invalid"])
    click.echo(f"{summary['valid']:,} of {summary['given']:,} IDs valid; {done}")


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
        return
    for key, value_ in info.items():
        if isinstance(value_, dict | list):
            value_ = json.dumps(value_, default=str) if value_ else "none"
        click.echo(f"{key.replace('_', ' '):<14} {value_}")


@main.command("run")
@click.argument("names", nargs=-1, required=True)
@json_option
@pass_ctx
def run_jobs(ctx: Context, names: tuple[str, ...], as_json: bool) -> None:
    """Run pipeline jobs once, in the order given (or `all`)."""
    from jobs import JOBS

    chosen = list(JOBS) if names == ("all",) else list(names)
    unknown = [n for n in chosen if n not in JOBS]
    if unknown:
        raise click.UsageError(f"unknown job(s) {', '.join(unknown)}; known: {', '.join(JOBS)}")
    with ctx.store() as store:
        results = {name: JOBS[name](store, ctx.config) for name in chosen}
    if as_json:
        emit_json(results)
    else:
        for name, summary in results.items():
            click.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
