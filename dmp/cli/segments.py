"""Interests and segments: taxonomy, segments."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dmp.cli.app import Context, emit_json, json_option, main, pass_ctx
from dmp.config import Config
from dmp.errors import DmpError


def _rule_argument(text: str, config: Config):
    """A rule given inline as JSON or as @FILE."""
    from dmp.segments.rule_segments import parse_rule

    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise DmpError(f"{path}: no such rule file")
        text = path.read_text(encoding="utf-8")
    return parse_rule(text, config)


rule_option = click.option("--rule", "rule_text", required=True, help="JSON rule, or @FILE.")
viewer_option = click.option(
    "--agency", "viewer", help="See only what this agency sees: its own segments and grants."
)
kind_option = click.option(
    "--kind", type=click.Choice(["rule", "cluster", "lookalike"]),
    help="The segment's kind, when its name is shared by segments of several kinds.",
)  # fmt: skip


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
        result = create(
            store, ctx.config, name, _rule_argument(rule_text, ctx.config), description, ttl_days
        )
    emit_json(result) if as_json else click.echo(f"{name}: {result['size']:,} members")


@segments.command("preview")
@rule_option
@json_option
@pass_ctx
def segments_preview(ctx: Context, rule_text: str, as_json: bool) -> None:
    """How many devices a rule matches now; stores nothing."""
    from dmp.segments.rule_segments import preview

    with ctx.store() as store:
        size = preview(store, ctx.config, _rule_argument(rule_text, ctx.config))
    emit_json({"size": size}) if as_json else click.echo(f"{size:,} devices")


@segments.command("list")
@click.option("--kind", type=click.Choice(["rule", "cluster", "lookalike"]))
@viewer_option
@json_option
@pass_ctx
def segments_list(ctx: Context, kind: str | None, viewer: str | None, as_json: bool) -> None:
    """Every segment with its kind and current size."""
    from dmp.segments.registry import list_segments

    with ctx.store() as store:
        found = list_segments(store, kind, viewer=viewer)
    if as_json:
        emit_json([{k: s[k] for k in ("name", "kind", "size", "agency")} for s in found])
        return
    for s in found:
        click.echo(f"{s['kind']:<10} {s['size']:>10,}  {s['name']}")


@segments.command("show")
@click.argument("name")
@kind_option
@viewer_option
@json_option
@pass_ctx
def segments_show(
    ctx: Context, name: str, kind: str | None, viewer: str | None, as_json: bool
) -> None:
    """A segment's definition, size trend and overlap with the others."""
    from dmp.segments.insights import describe

    with ctx.store() as store:
        info = describe(store, name, kind=kind, viewer=viewer)
    if as_json:
        emit_json(info)
        return
    click.echo(json.dumps(info, indent=2, default=str))


@segments.command("grant")
@click.argument("name")
@click.option("--agency", required=True, help="The agency that may see the segment.")
@kind_option
@pass_ctx
def segments_grant(ctx: Context, name: str, agency: str, kind: str | None) -> None:
    """Let AGENCY see segment NAME (in its listings, details and overlaps)."""
    from dmp.segments.registry import grant

    with ctx.store() as store:
        done = grant(store, name, agency, kind)
    click.echo(f"{done['kind']} segment {done['segment']} granted to {done['agency']}")


@segments.command("revoke")
@click.argument("name")
@click.option("--agency", required=True, help="The agency that may no longer see it.")
@kind_option
@pass_ctx
def segments_revoke(ctx: Context, name: str, agency: str, kind: str | None) -> None:
    """Take back a grant: AGENCY no longer sees segment NAME anywhere."""
    from dmp.segments.registry import revoke

    with ctx.store() as store:
        done = revoke(store, name, agency, kind)
    click.echo(f"{done['kind']} segment {done['segment']} no longer granted to {done['agency']}")


@segments.command("grants")
@json_option
@pass_ctx
def segments_grants(ctx: Context, as_json: bool) -> None:
    """Which segments are shared with which agencies (tab-separated)."""
    from dmp.segments.registry import grants

    with ctx.store() as store:
        found = grants(store)
    if as_json:
        emit_json(found)
        return
    for g in found:
        click.echo(f"{g['segment']}\t{g['agency']}\t{g['kind']}\t{g['granted_at']}")


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
