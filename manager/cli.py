"""The ``ledgerlock`` manager: install, protect, lock, audit — for DBAs and admins.

Command groups live in ``ledgerlock.commands``, one module each with a ``register(cli)``; COMMAND_MODULES
below lists them (a new group is one new module and one name there).
"""

from __future__ import annotations

import sys

import click
import psycopg

from . import __version__
from . import errors as ll_errors
from .commands import (
    audit,
    close,
    console,
    db,
    demo,
    doctor,
    grants,
    imports,
    install,
    locks,
    numbers,
    overrides,
    refs,
    replication,
    tables,
    why,
)
from .context import Context
from .output import EXIT_FAILED, EXIT_USAGE, color_wanted, echo, error_json, printable
from .server import ServerError

COMMAND_MODULES = (audit, close, console, db, demo, doctor, grants, imports, install, locks, numbers, overrides, refs,
                   replication, tables, why)


def _wants_json(args: list[str]) -> bool:
    """--json among the command line's options (before a lone `--`), wherever it is given."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _fail(as_json: bool, code: int, sqlstate: str | None, meaning: str, message: str, hint: str | None) -> None:
    if as_json:
        echo(error_json(sqlstate, meaning, message, hint), lines=True)  # JSON: escaped (to_json)
    else:
        head = f"error {sqlstate} ({meaning})" if sqlstate else "error"
        # a refusal is one line, whatever the values it names hold; a connection failure may be several
        echo(f"{head}: {message}", err=True, lines=sqlstate is None)
        if hint:
            echo(f"hint: {hint}", err=True)
    sys.exit(code)


class ManagerGroup(click.Group):
    """Turns errors into one clear line (SQLSTATE, meaning, message, hint) on stderr — or, when the command
    line has --json, into one JSON object on stdout — with the project's exit codes (output.EXIT_*)."""

    def main(self, args=None, *a, **kw):
        if args is None:
            args = sys.argv[1:]
        self._as_json = _wants_json(list(args))
        if any("\x00" in arg for arg in args):  # no shell can pass one; the Python API can, and open() raises
            _fail(self._as_json, EXIT_USAGE, None, "usage error",
                  "an argument contains a NUL byte, which no value or file name may hold", None)
        kw.setdefault("color", color_wanted())
        return super().main(list(args), *a, **kw)

    def invoke(self, ctx: click.Context):
        as_json = getattr(self, "_as_json", False)
        try:
            return super().invoke(ctx)
        except psycopg.Error as exc:
            diag = getattr(exc, "diag", None)
            state = diag.sqlstate if diag else None
            message = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
            meaning = ll_errors.describe(state, message) if state else (
                "could not connect" if isinstance(exc, psycopg.OperationalError) else "database error")
            _fail(as_json, EXIT_FAILED, state, meaning, message, diag.message_hint if diag else None)
        except ServerError as exc:
            _fail(as_json, EXIT_FAILED, None, "embedded PostgreSQL", f"embedded PostgreSQL: {exc}", None)
        except click.ClickException as exc:
            if not as_json:
                exc.message = printable(exc.message, lines=True)  # click prints it: what it quotes, made printable
                raise
            usage = isinstance(exc, click.UsageError)
            _fail(True, exc.exit_code, None, "usage error" if usage else "failed command", exc.format_message(),
                  f"ledgerlock {exc.ctx.command_path.partition(' ')[2]} --help".replace("  ", " ")
                  if usage and exc.ctx else None)


@click.group(cls=ManagerGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--dsn",
    metavar="DSN",
    help="PostgreSQL connection string or URL. Default: $LEDGERLOCK_DSN, else $DATABASE_URL, else libpq's "
    "PG* variables or service file when any is set, else the embedded PostgreSQL (started on demand in a "
    "per-user data directory, which the command says).",
)
@click.version_option(__version__, prog_name="ledgerlock")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None) -> None:
    """ledgerlock — tamper-proof accounting records inside PostgreSQL.

    Final rows stay final, numbers stay gapless, closed periods stay closed, and every change leaves
    hash-chained evidence — for every client of the database, not just one application.
    """
    ctx.obj = Context(dsn=dsn)


for _module in COMMAND_MODULES:
    _module.register(cli)


def main() -> None:
    cli(prog_name="ledgerlock")
