"""Every command that writes says, on stderr, which server and database it acts on (and as whom), so that
--json stdout stays one JSON document; commands that only read say nothing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli


@pytest.fixture
def ll(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    db.owner().execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')")

    def run(role: str, *args: str):
        res = CliRunner().invoke(cli, ["--dsn", db.conninfo(role), *args])
        assert res.exit_code == 0, res.output
        return res

    return run


def acting_on(db, role: str) -> str:
    server = db.cluster.server
    return f"ledgerlock: acting on {server.socket_dir}:{server.port}/{db.name} as ll_{role}"


# one command of each family that writes, as the role that may run it
WRITES = [
    ("controller", ["lock", "1", "--from", "2025-04-01", "--to", "2025-04-30", "--json"]),
    ("controller", ["upgrade", "1", "--json"]),
    ("controller", ["unlock", "1", "--reason", "late invoice", "--json"]),
    ("controller", ["close", "tasks", "1", "2025-03", "add", "Reconcile"]),
    ("admin", ["close", "fiscal-year", "1", "4"]),
    ("admin", ["close", "four-eyes", "on"]),
    ("admin", ["numbers", "format", "invoice", "INV-{SEQ}", "--json"]),
    ("admin", ["protect", "payment", "--date-column", "paid_on", "--json"]),
    ("controller", ["override", "--reason", "credit note", "-c", "SELECT 1", "--json"]),
    ("admin", ["grant", "ll_controller", "1", "--json"]),
    ("admin", ["refs", "add", "invoice", "payment", "--json"]),
]


@pytest.mark.parametrize(("role", "args"), WRITES, ids=[" ".join(a[:2]) for _, a in WRITES])
def test_a_writing_command_names_the_server_and_database(db, ll, role, args):
    res = ll(role, *args)
    assert res.stderr.splitlines()[0] == acting_on(db, role)
    assert acting_on(db, role) not in res.stdout
    if "--json" in args:
        json.loads(res.stdout)  # stdout is the JSON document alone


def test_the_rest_of_each_family_names_it_too(db, ll):
    """relock, unlock approve/withdraw, close tasks done, unprotect, revoke, refs remove, skipped repost"""
    ll("controller", "unlock", "1", "--reason", "late invoice")
    for role, args in [("controller", ["relock", "1"]),
                       ("admin", ["grant", "ll_auditor", "1"]),
                       ("admin", ["revoke", "ll_auditor", "1"]),
                       ("controller", ["close", "tasks", "1", "2025-03", "add", "Reconcile"]),
                       ("controller", ["close", "tasks", "1", "2025-03", "done", "1"]),
                       ("admin", ["refs", "add", "invoice", "payment"]),
                       ("admin", ["refs", "remove", "invoice", "payment", "--reason", "moved"]),
                       ("admin", ["unprotect", "invoice", "--reason", "moved"])]:
        assert ll(role, *args).stderr.splitlines()[0] == acting_on(db, role), args


def test_four_eyes_requests_name_it_and_reading_commands_do_not(db, ll):
    owner = db.owner()
    owner.execute("SELECT ledgerlock.upgrade_lock(1)")
    ll("admin", "close", "four-eyes", "on")
    assert ll("admin", "unlock", "1", "--reason", "late").stderr.splitlines()[0] == acting_on(db, "admin")
    assert ll("admin", "unlock", "withdraw", "1").stderr.splitlines()[0] == acting_on(db, "admin")
    ll("admin", "unlock", "1", "--reason", "late")
    assert ll("admin2", "unlock", "approve", "2").stderr.splitlines()[0] == acting_on(db, "admin2")
    for args in (["locks", "1"], ["history"], ["unlock", "pending"], ["close", "four-eyes"], ["skipped"],
                 ["refs", "list"], ["close", "fiscal-year", "1"], ["numbers", "series"]):
        assert "acting on" not in ll("admin", *args).stderr, args
