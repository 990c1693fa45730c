"""The ``ledgerlock`` manager: install, protect, lock, audit — for DBAs and admins.

Command groups live in ``ledgerlock.commands``: every module there defines ``register(cli)`` and is
picked up here, so a new group is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass, field

import click
import psycopg

from . import __version__, commands
from . import errors as ll_errors
from .connection import Target, resolve
from .server import ServerError


@dataclass
class Context:
    dsn: str | None
    _target: Target | None = field(default=None, repr=False)

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = resolve(self.dsn)
        return self._target

    def connect(self, **kw) -> psycopg.Connection:
        return self.target.connect(**kw)


pass_context = click.make_pass_decorator(Context)


class ManagerGroup(click.Group):
    """Turns database errors into one clear line (SQLSTATE, meaning, message, hint) and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except psycopg.Error as exc:
            diag = getattr(exc, "diag", None)
            state = diag.sqlstate if diag else None
            message = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
            head = f"error {state} ({ll_errors.describe(state)})" if state else "error"
            click.echo(f"{head}: {message}", err=True)
            if diag and diag.message_hint:
                click.echo(f"hint: {diag.message_hint}", err=True)
            sys.exit(1)
        except ServerError as exc:
            click.echo(f"error: embedded PostgreSQL: {exc}", err=True)
            sys.exit(1)


@click.group(cls=ManagerGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--dsn",
    metavar="DSN",
    help="PostgreSQL connection string or URL. Default: $LEDGERLOCK_DSN, else $DATABASE_URL, else the "
    "embedded PostgreSQL (started on demand in a per-user data directory).",
)
@click.version_option(__version__, prog_name="ledgerlock")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None) -> None:
    """ledgerlock — tamper-proof accounting records inside PostgreSQL.

    Final rows stay final, numbers stay gapless, closed periods stay closed, and every change leaves
    hash-chained evidence — for every client of the database, not just one application.
    """
    ctx.obj = Context(dsn=dsn)


for _mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    importlib.import_module(f"{commands.__name__}.{_mod.name}").register(cli)


def main() -> None:
    cli(prog_name="ledgerlock")
