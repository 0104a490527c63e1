"""The command group every stage module registers its commands on (``main``), the
instance it acts on (:class:`Context`) and what the commands share."""

from __future__ import annotations

import json
import logging
import sys

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


def log_to_stderr(level: int) -> None:
    """Job and scheduler logs go to stderr, time-stamped, where a service manager keeps them."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
