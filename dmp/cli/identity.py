"""Identity lifecycle: optout, delete, idsync, explain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dmp.cli.app import Context, emit_json, json_option, main, pass_ctx
from dmp.errors import DmpError

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
    """Opt out IDs given as arguments or in --file; their data is removed at once,
    from the database (compacted after) and from the raw files dmp keeps."""
    from dmp.identity.erasure import Erasure
    from dmp.identity.privacy import optout as record_optout

    if not ids and path is None:
        raise click.UsageError("give IDs as arguments or --file FILE")
    with ctx.store() as store:
        summary = record_optout(
            store,
            list(ids) or None,
            path,
            id_type,
            source="file" if path else "cli",
            erasure=Erasure(ctx.config),
        )
    summary["compacted"] = _compact(ctx, summary)
    deleted = sum(summary["rows_deleted"].values())
    _report_ids(
        summary,
        as_json,
        f"{summary['new_optouts']:,} new opt-outs, {deleted:,} rows removed; {_files(summary)}",
    )
    _fail_on_file_errors(summary)


def _compact(ctx: Context, summary: dict) -> dict | None:
    """Erased rows' bytes stay in the database file until it is rewritten: do it now."""
    from dmp.store import compact

    return compact(ctx.config) if summary["valid"] else None


def _files(summary: dict) -> str:
    files = summary["files"]
    touched = len(files["files_rewritten"]) + len(files["files_removed"])
    note = f"{files['lines_removed']:,} raw lines removed from {touched:,} file(s)"
    if files["files_renamed"]:
        note += f", {len(files['files_renamed']):,} file(s) named after an ID renamed"
    return note


def _fail_on_file_errors(summary: dict) -> None:
    """The IDs are erased from the tables, but some raw files still hold them: say which
    (on stderr) and exit 1, so the operator fixes them and runs the command again."""
    errors = summary["files"]["errors"]
    if errors:
        for error in errors:
            click.echo(f"error: {error}", err=True)
        sys.exit(1)


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
    """A deletion request (GDPR/CCPA): remove every row and raw line about the IDs,
    audited; the database is compacted after, so no byte of them stays on disk."""
    from dmp.identity.erasure import Erasure
    from dmp.identity.privacy import delete as delete_ids

    if not ids and path is None:
        raise click.UsageError("give IDs as arguments or --file FILE")
    with ctx.store() as store:
        summary = delete_ids(
            store,
            list(ids) or None,
            path,
            id_type,
            requested_by,
            with_linked=with_linked,
            erasure=Erasure(ctx.config),
        )
    summary["compacted"] = _compact(ctx, summary)
    deleted = sum(summary["rows_deleted"].values())
    note = f"{deleted:,} rows removed; {_files(summary)}"
    if summary.get("unknown"):
        note += f"; {summary['unknown']:,} ID(s) unknown here, nothing to delete for them"
    _report_ids(summary, as_json, note)
    _fail_on_file_errors(summary)


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
