"""migrate · status · sql — installing ledgerlock into a database."""

from __future__ import annotations

import sys

import click

from .. import migrate as migration
from .. import sqlfiles
from ..context import Context, pass_context
from ..output import EXIT_FAILED, echo, echo_json, table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def migrate(ctx: Context, as_json: bool) -> None:
    """Install or upgrade ledgerlock in the database (idempotent).

    Applies pending migrations, installs changed functions and triggers, and refreshes the guards of
    every protected table, in one transaction: a failure leaves the database as it was. Run it as the
    role that owns the tables to protect (docs/hardening.md: self-hosted and managed services).
    """
    try:
        report = migration.migrate(ctx.target.conninfo)
    except migration.MigrateError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json({"database": ctx.target.source, "applied": report.applied, "code_installed": report.code_installed,
                   "guards_reinstalled": report.guards_reinstalled, "restored_tables": report.restored_tables,
                   "ddl_guard_completed": report.ddl_guard_completed, "changed": report.changed})
        return
    for mig in report.applied:
        echo(f"applied migration {mig}")
    if report.code_installed:
        echo(f"installed functions and triggers; refreshed guards on {report.guards_reinstalled} table(s)")
    if report.restored_tables:
        echo(f"installed the guards again on {len(report.restored_tables)} table(s) restored from a dump "
                   f"(their oids changed): {', '.join(report.restored_tables)}")
    if report.ddl_guard_completed:
        echo("completed the DDL guard with the event triggers this release added")
    if not report.changed:
        echo("ledgerlock is up to date; nothing to apply")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Show the installed version, pending migrations and protected tables; exit 1 when not installed."""
    st = migration.status(ctx.target.conninfo)
    if as_json:
        echo_json({"database": ctx.target.source, **st.__dict__})
        if st.installed_version is None:
            sys.exit(EXIT_FAILED)
        return
    echo(f"connected via: {ctx.target.source}")
    if st.installed_version is None:
        echo("ledgerlock is not installed here; run: ledgerlock migrate", err=True)
        sys.exit(EXIT_FAILED)
    code = "current" if st.code_current else "outdated (run: ledgerlock migrate)"
    echo(f"installed version: {st.installed_version} (functions and triggers {code})")
    echo(f"migrations applied: {len(st.applied)}; pending: {', '.join(st.pending) or 'none'}")
    echo("protected tables:")
    cols = ["table", "date_column", "scope_column", "final_when", "number_column", "mutable_columns", "ledger"]
    echo(table(st.protected_tables, cols), lines=True)  # its cells are printable


@click.command("sql")
@click.option("--roles", is_flag=True, help="Print only the script that creates the ledgerlock_* roles, for a role "
              "with CREATEROLE to run once per cluster (managed services: the installer cannot create roles).")
def sql_script(roles: bool) -> None:
    """Print the one-file install script, for DBAs who apply SQL with psql.

    \b
    ledgerlock sql > ledgerlock.sql
    psql -v ON_ERROR_STOP=1 --single-transaction -f ledgerlock.sql
    ledgerlock sql --roles | psql -v ON_ERROR_STOP=1    # as a role with CREATEROLE, once per cluster
    """
    click.echo((sqlfiles.sql_root() / "roles.sql").read_text() if roles else sqlfiles.install_script(), nl=False)


def register(cli: click.Group) -> None:
    cli.add_command(migrate)
    cli.add_command(status)
    cli.add_command(sql_script)
