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

    password = None if no_password else read_password(password_stdin)
    with ctx.store() as store:
        user = add_user(store, name, role, agency, password)
    if as_json:
        emit_json(user)
    else:
        click.echo(f"added {role} user {name}" + (f" for agency {agency}" if agency else ""))


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@pass_ctx
def users_passwd(ctx: Context, name: str, password_stdin: bool) -> None:
    """Set NAME's password; every session of NAME ends (its API tokens stay)."""
    from dmp.web.users import set_password

    password = read_password(password_stdin)
    with ctx.store() as store:
        set_password(store, name, password)
    click.echo(f"new password for {name}; its sessions have ended")


@users.command("disable")
@click.argument("name")
@pass_ctx
def users_disable(ctx: Context, name: str) -> None:
    """Stop NAME at once: its sessions end, its log-ins and API tokens are refused."""
    from dmp.web.users import set_enabled

    with ctx.store() as store:
        set_enabled(store, name, enabled=False)
    click.echo(f"disabled {name}")


@users.command("enable")
@click.argument("name")
@pass_ctx
def users_enable(ctx: Context, name: str) -> None:
    """Let NAME log in again; its unrevoked API tokens work again."""
    from dmp.web.users import set_enabled

    with ctx.store() as store:
        set_enabled(store, name, enabled=True)
    click.echo(f"enabled {name}")


def read_password(from_stdin: bool) -> str:
    """One line of standard input, else asked twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("list")
@json_option
@pass_ctx
def users_list(ctx: Context, as_json: bool) -> None:
    """Every user with role, agency and whether disabled (never a password or token)."""
    from dmp.web.users import list_users

    with ctx.store() as store:
        found = list_users(store)
    if as_json:
        emit_json(found)
        return
    for user in found:
        disabled = f"disabled since {user['disabled_at']}" if user["disabled_at"] else ""
        click.echo(f"{user['name']:<24} {user['role']:<7} {user['agency'] or '':<16} {disabled}")


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


@tokens.command("list")
@json_option
@pass_ctx
def tokens_list(ctx: Context, as_json: bool) -> None:
    """Every token's id, user, prefix and dates (never the token itself)."""
    from dmp.web.users import list_tokens

    with ctx.store() as store:
        found = list_tokens(store)
    if as_json:
        emit_json(found)
        return
    for token in found:
        state = f"revoked {token['revoked_at']}" if token["revoked_at"] else "active"
        click.echo(
            f"{token['token_id']:>5}  {token['prefix']:<10} {token['user']:<24} "
            f"created {token['created_at']}  {state}"
        )


@tokens.command("revoke")
@click.argument("token", required=False)
@click.option("--user", help="Revoke every token of this user instead.")
@pass_ctx
def tokens_revoke(ctx: Context, token: str | None, user: str | None) -> None:
    """Revoke TOKEN (its id or prefix from `dmp tokens list`, a longer prefix, or the
    whole token) or all of --user's: requests with it answer 401 from then on."""
    from dmp.web.users import revoke_tokens

    with ctx.store() as store:
        count = revoke_tokens(store, token, user)
    click.echo(f"revoked {count} token" + ("" if count == 1 else "s"))
