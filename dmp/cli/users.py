"""Dashboard users and API tokens: users, tokens."""

from __future__ import annotations

import sys

import click

from dmp.cli.app import Context, emit_json, json_option, main, pass_ctx


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
