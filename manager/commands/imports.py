"""import — load a CSV file into a protected table, skipping (and recording) rows in locked periods."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import importer
from ..context import Context, pass_context
from ..output import echo, echo_json

PROGRESS_FROM = 4 << 20  # show a progress bar for files from 4 MiB


def _window_lines(report: importer.ImportReport) -> list[str]:
    return [f"    lock #{w.lock_id}  scope {w.scope}  {w.period}  {w.level}: "
            f"{w.rows} row{'s' if w.rows != 1 else ''}" for w in report.windows]


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--table", required=True, help="The table to load (its columns are named by the CSV header).")
@click.option("--dry-run", is_flag=True,
              help="Run the load and roll it back: report what would load, or the row that would fail.")
@click.option("--encoding", default="utf-8", show_default=True, help="The file's encoding (latin-1, cp1252...).")
@click.option("--delimiter", default=",", show_default=True, help="The field separator (e.g. ';').")
@click.option("--decimal-comma", is_flag=True,
              help="Numbers are written 1.234,56: ',' is the decimal point; '.' and spaces group digits.")
@click.option("--again", is_flag=True, help="Load a file already imported into this table (same SHA-256).")
@click.option("--context", "label", metavar="LABEL",
              help="Label kept with every row's audit event and every skipped row, before import:<sha256>.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def import_csv(ctx: Context, file: Path, table: str, dry_run: bool, encoding: str, delimiter: str,
               decimal_comma: bool, again: bool, label: str | None, as_json: bool) -> None:
    """Import FILE (CSV with a header line) into --table, in one transaction, through every rule.

    Rows dated in a locked period are skipped, not refused: they are recorded in ledgerlock.skipped_writes
    with the context label, and counted. A malformed row (wrong number of columns, a value PostgreSQL
    cannot convert, a row the table refuses: foreign key, NOT NULL, a ledgerlock rule) is reported with its
    line number, and nothing is loaded. --dry-run is the same load rolled back. Each import is recorded by
    the file's SHA-256 (audit context import:<sha256>): the same file is not loaded twice without --again.
    """
    size = importer.file_size(file)
    show = size >= PROGRESS_FROM and not as_json

    def phase(text: str) -> None:
        if show:
            echo(f"ledgerlock: {text}", err=True)

    options = dict(dry_run=dry_run, context=label, encoding=encoding, delimiter=delimiter,
                   decimal_comma=decimal_comma, again=again, phase=phase)
    with ctx.connect() as conn:
        ctx.target.announce(conn)
        try:
            if show:
                with click.progressbar(length=size, label=f"uploading {file.name}", file=sys.stderr) as bar:
                    report = importer.import_csv(conn, file, table, progress=bar.update, **options)
            else:
                report = importer.import_csv(conn, file, table, **options)
        except importer.ImportFailed as exc:
            echo(f"error{f' {exc.sqlstate}' if exc.sqlstate else ''}: {exc.message}", err=True)
            echo("nothing was loaded", err=True)
            sys.exit(1)
    if as_json:
        echo_json(report.as_dict())
        return
    rows = f"{report.rows} row{'s' if report.rows != 1 else ''}"
    if dry_run:
        echo(f"dry run: {file.name} -> {report.table}: {rows} read, nothing written")
        echo(f"  in locked windows (would be skipped): {report.in_locked_windows}")
        for line in _window_lines(report):
            echo(line)
        echo(f"  would load: {report.would_load}")
        return
    echo(f"{file.name} -> {report.table}: {rows} read, inserted {report.inserted}, skipped {report.skipped}")
    if report.skipped:
        echo(f"  skipped rows lie in locked windows; they are in ledgerlock.skipped_writes with context "
                   f"'{report.context}'")
        for line in _window_lines(report):
            echo(line)


def register(cli: click.Group) -> None:
    cli.add_command(import_csv)
