"""doctor · install-ddl-guard — what is still open, and the event triggers that close the DDL side."""

from __future__ import annotations

import sys

import click

from .. import doctor as checks
from ..context import Context, pass_context
from ..output import EXIT_EVIDENCE, EXIT_FAILED, EXIT_OK, echo, echo_json

NOT_COVERED_WITHOUT_SUPERUSER = """\
Without the DDL guard, these stay possible for the owner of a protected table (never for the application,
as long as it does not own the tables; see docs/hardening.md):
  - DROP TRIGGER / ALTER TABLE ... DISABLE TRIGGER on ledgerlock's guards;
  - DROP TABLE, ALTER TABLE ... DETACH PARTITION (a detached partition loses its final-row guards);
  - ALTER TABLE ... ALTER COLUMN ... TYPE ... USING, SET UNLOGGED, DROP COLUMN (no row trigger fires);
  - CREATE TRIGGER / CREATE RULE on a protected table (a later BEFORE trigger can change a final row);
  - ALTER TABLE ... RENAME [COLUMN] / SET SCHEMA of a protected table (its audit trail, filed by name, no longer
    verifies) or of a parent its scope or date is read from (its checks fail);
  - TRUNCATE of a partition created after protect, until `ledgerlock migrate` or reinstall_guards() runs;
  - ALTER TABLE ... FORCE ROW LEVEL SECURITY on a table the rules read (its policies then decide which rows
    the checks see);
  - ALTER TABLE ... ATTACH PARTITION of a table holding rows, CREATE TABLE ... INHERITS a protected table (rows
    no check saw), ALTER TYPE ... RENAME VALUE of an enum label protected rows hold (`ledgerlock audit verify`
    reports those rows).
`ledgerlock doctor` reports the others once they have happened."""


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def doctor(ctx: Context, as_json: bool) -> None:
    """Report every way the rules could still be got around here, with the command that fixes it.

    Exit code 3 (an evidence problem) when a finding is critical (a rule can be bypassed now), 0 otherwise. Run it as a
    superuser or a ledgerlock admin/auditor: it sees what its role may see.
    """
    with ctx.connect() as conn:
        found = checks.findings(conn)
    if as_json:
        echo_json([f.as_dict() for f in found])
    else:
        counts = {s: sum(f.severity == s for f in found) for s in checks.SEVERITIES}
        for f in found:
            echo(f"[{f.severity}] {f.check}: {f.finding}")
            echo(f"    why: {f.why}")
            echo(f"    fix: {f.fix}")
        clean = counts["critical"] == 0 and counts["warning"] == 0
        echo(("clean: " if clean else "") + ", ".join(f"{n} {s}" for s, n in counts.items()))
    sys.exit(EXIT_EVIDENCE if checks.exit_code(found) else EXIT_OK)


@click.command("install-ddl-guard")
@click.option("--remove", is_flag=True, help="Drop the guard's event triggers instead.")
@pass_context
def install_ddl_guard(ctx: Context, remove: bool) -> None:
    """Install the DDL guard (event triggers) in the database; needs a superuser.

    Refuses dropping or disabling guard triggers, dropping or detaching protected tables and partitions,
    rewriting them, new triggers and rules on them, renaming them or the enum labels their rows hold,
    attaching a partition that holds rows, inheriting from them, FORCE ROW LEVEL SECURITY on the tables the
    rules read, and changes to ledgerlock's own objects by anyone but a superuser running `ledgerlock migrate`
    -- except through ledgerlock.protect / unprotect.
    """
    with ctx.connect_to_write() as conn:
        is_super = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        if not is_super:
            echo("the DDL guard needs a superuser (PostgreSQL lets only superusers create event triggers); "
                       "nothing was installed.", err=True)
            echo(NOT_COVERED_WITHOUT_SUPERUSER, err=True)
            sys.exit(EXIT_FAILED)
        if remove:
            n = conn.execute("SELECT ledgerlock.uninstall_ddl_guard()").fetchone()[0]
            echo(f"removed the DDL guard ({n} event trigger(s))")
            return
        n = conn.execute("SELECT ledgerlock.install_ddl_guard()").fetchone()[0]
    echo(f"installed the DDL guard: {n} event triggers (ddl_command_start, ddl_command_end, sql_drop, "
               "table_rewrite), ENABLE ALWAYS")


def register(cli: click.Group) -> None:
    cli.add_command(doctor)
    cli.add_command(install_ddl_guard)
