"""No input makes the manager crash: every command, each of its arguments and options in turn set to values a
person or a script may pass (a NUL, '²', 10,000 digits, an impossible date, a directory for a file…), the others
valid. Each answer is an exit code of the contract (0-3, docs/cli.md) with a sentence, never a Python traceback."""

from __future__ import annotations

import click
from click.testing import CliRunner

from ledgerlock.cli import cli

# Commands that serve, loop, start or stop servers, or open a session: other tests run them.
NOT_HERE = {("console",), ("demo",), ("db", "start"), ("db", "stop"), ("replication", "promote"),
            ("replication", "subscribe"), ("sql",)}
NOT_HERE_PARAMS = {("audit", "seal"): {"every"}}  # a period for a loop that never ends

HOSTILE_TEXT = ["", " ", "-1", "99999999999999999999", "²", "1\x00", "2025-02-30", "x' OR '1'='1", "9" * 10_000]
HOSTILE_PATHS = ["", "/", "/nonexistent-dir/x.csv", "a\x00b"]
VALID = {"scope": "1", "table": "invoice", "key": "1", "lock_id": "1", "request_id": "1", "seq": "1",
         "skip_id": "1", "ids": "1", "role": "ll_app", "task": "Reconcile", "state": "on", "start_month": "1",
         "parent": "invoice", "child": "invoice_line", "number_format": "INV-{SEQ}", "reason": "checked",
         "label": "x", "dbname": "postgres"}


def commands():
    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, (*path, name))
        elif path not in NOT_HERE:
            yield path, cmd
    yield from walk(cli, ())


def argv_for(cmd, path, hostile_name=None, value=None) -> list[str]:
    """The command line with every argument valid (or the hostile one in its place)."""
    args, opts = [], []
    for p in cmd.params:
        if isinstance(p, click.Option) and (p.is_flag or p.name == "as_json"):
            continue
        chosen = value if p.name == hostile_name else VALID.get(p.name)
        if chosen is None:
            continue
        if isinstance(p, click.Argument):
            args.append(chosen)
        else:
            opts += [p.opts[0], chosen]
    return [*path, *opts, "--", *args] if args else [*path, *opts]


def values_for(param) -> list[str]:
    kind = getattr(param.type, "name", "")
    return HOSTILE_PATHS if kind in ("file", "filename", "path") else HOSTILE_TEXT


def test_every_command_answers_every_hostile_value_with_an_exit_code_and_a_sentence(db, tmp_path, monkeypatch):
    db.protect_invoice()
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')")
    monkeypatch.chdir(tmp_path)  # a bundle or an import with a relative name stays in the test's directory
    runner = CliRunner()
    dsn = db.conninfo("admin")
    tried, crashes = 0, []
    for path, cmd in commands():
        for param in cmd.params:
            if (isinstance(param, click.Option) and (param.is_flag or param.name == "as_json")) \
                    or param.name in NOT_HERE_PARAMS.get(path, ()):
                continue
            for value in values_for(param):
                argv = ["--dsn", dsn, *argv_for(cmd, path, param.name, value)]
                res = runner.invoke(cli, argv, input="", catch_exceptions=True)
                tried += 1
                what = (" ".join(path), param.name, value[:20], res.exit_code, res.output[-200:])
                if res.exception is not None and not isinstance(res.exception, SystemExit):
                    crashes.append((*what, repr(res.exception)[:200]))
                elif res.exit_code not in (0, 1, 2, 3) or "Traceback" in res.output:
                    crashes.append(what)
                elif res.exit_code != 0 and not res.output.strip():
                    crashes.append((*what, "no sentence"))  # a refusal says why
    assert tried > 300
    assert crashes == [], "\n".join(map(repr, crashes))
