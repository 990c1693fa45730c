"""Re-posting a skipped write (ledgerlock.repost_skipped, `ledgerlock skipped repost`): the recorded row goes
back into its table once, as the caller and through every rule, with its date or a date of an open period."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import refused


@pytest.fixture
def skipped(db):
    """Scope 1 soft-locked for March 2025; invoice 7 (March) skipped by a recurring job, invoice 8 (April) in."""
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:3}")
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')")
    app = db.connect("app")
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        app.execute("SET LOCAL ledgerlock.context = 'recurring:rent'")
        app.execute("INSERT INTO invoice (id, company_id, issued_on, amount, status) "
                    "VALUES (7, 1, '2025-03-05', 12, 'approved'), (8, 1, '2025-04-05', 12, 'draft')")
    return db.owner().execute("SELECT id FROM ledgerlock.skipped_writes").fetchone()[0]


def run(db, role: str, *args: str) -> object:
    return CliRunner().invoke(cli, ["--dsn", db.conninfo(role), *args])


def invoice(db, invoice_id: int):
    return db.owner().execute("SELECT issued_on::text, amount, status FROM invoice WHERE id = %s",
                              (invoice_id,)).fetchone()


def test_a_skipped_row_is_reposted_into_an_open_period_once(db, skipped):
    ctl = db.connect("controller")
    with refused("LL002", r"invoice id=7 cannot be inserted"):  # its own date is still locked: refused, not skipped
        ctl.execute("SELECT ledgerlock.repost_skipped(%s)", (skipped,))
    assert invoice(db, 7) is None
    key = ctl.execute("SELECT ledgerlock.repost_skipped(%s, '2025-04-01')", (skipped,)).fetchone()[0]
    assert key == {"id": 7}
    assert invoice(db, 7) == ("2025-04-01", 12, "approved")
    # numbered now, in the year of its new date (the skipped image had no final number yet)
    assert db.owner().execute("SELECT number FROM invoice WHERE id = 7").fetchone()[0] == "INV-2025-001"
    row = db.owner().execute("SELECT reposted_by, reposted_key FROM ledgerlock.skipped_writes").fetchone()
    assert row == ("ll_controller", {"id": 7})
    with refused("LL004", rf"^skipped write #{skipped} was already re-posted by ll_controller at .*, as "
                          r'public.invoice \{"id": 7\}'):
        ctl.execute("SELECT ledgerlock.repost_skipped(%s, '2025-04-02')", (skipped,))
    assert db.owner().execute("SELECT count(*) FROM invoice WHERE id = 7").fetchone()[0] == 1
    history = db.owner().execute("SELECT kind, lock_id, details ->> 'skip_id' FROM ledgerlock.lock_history "
                                 "WHERE kind = 'repost'").fetchall()
    assert history == [("repost", 1, str(skipped))]
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.skipped_generations()").fetchone()[0] == 0
    assert db.connect("auditor").execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone()[0] is True


def test_a_skipped_row_is_reposted_as_is_once_its_window_is_unlocked(db, skipped):
    ctl = db.connect("controller")
    ctl.execute("SELECT ledgerlock.unlock_period(1, 'late rent')")
    assert ctl.execute("SELECT ledgerlock.repost_skipped(%s)", (skipped,)).fetchone()[0] == {"id": 7}
    assert invoice(db, 7) == ("2025-03-05", 12, "approved")


def test_repost_needs_a_controller_of_the_skips_scope(db, skipped):
    owner = db.owner()
    owner.execute("SELECT ledgerlock.grant_scope('ll_admin2', '2')")
    with refused("LL005", r"^repost_skipped on scope 1 is not allowed: ll_admin2 is limited to scopes 2"):
        db.connect("admin2").execute("SELECT ledgerlock.repost_skipped(%s, '2025-04-01')", (skipped,))
    with refused("42501"):  # an application role has no business re-posting
        db.connect("app").execute("SELECT ledgerlock.repost_skipped(%s, '2025-04-01')", (skipped,))
    with refused("42501"):  # nor an auditor, by a direct call of its parts
        db.connect("auditor").execute("SELECT ledgerlock._repost_record(%s, 'invoice', '{\"id\": 8}', null)",
                                      (skipped,))
    with refused("22023", r"has no row \{\"id\": 9\} re-posted from skipped write"):
        db.connect("controller").execute("SELECT ledgerlock._repost_record(%s, 'invoice', '{\"id\": 9}', null)",
                                         (skipped,))
    with refused("22023", r"^there is no skipped write #999$"):
        db.connect("admin").execute("SELECT ledgerlock.repost_skipped(999)")
    owner.execute("SELECT ledgerlock.grant_scope('ll_admin2', '1')")
    db.connect("admin2").execute("SELECT ledgerlock.repost_skipped(%s, '2025-04-01')", (skipped,))
    assert invoice(db, 7) == ("2025-04-01", 12, "approved")


def test_a_repost_cannot_be_recorded_against_an_unrelated_row(db, skipped):
    """_repost_record called alone: a row that merely shares the key is not the skipped row."""
    ctl = db.connect("controller")
    ctl.execute("SELECT ledgerlock.unlock_period(1, 'late rent')")
    # invoice 8 (April, draft) is there, but it is not what the job skipped (invoice 7, March, approved)
    with refused("22023", r"^public.invoice has no row \{\"id\": 8\} re-posted from skipped write"):
        ctl.execute("SELECT ledgerlock._repost_record(%s, 'invoice', '{\"id\": 8}', null)", (skipped,))
    # nor a row given the skipped key but other content
    db.owner().execute("INSERT INTO invoice (id, company_id, issued_on, amount, status) "
                       "VALUES (7, 1, '2025-04-06', 99, 'draft')")
    with refused("22023", r"has no row \{\"id\": 7\} re-posted"):
        ctl.execute("SELECT ledgerlock._repost_record(%s, 'invoice', '{\"id\": 7}', '2025-04-06')", (skipped,))
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.skipped_generations()").fetchone()[0] == 1
    # the skipped row itself, inserted by hand through every rule, may be recorded as its re-post
    db.owner().execute("DELETE FROM invoice WHERE id = 7")
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on, amount, status) "
                              "VALUES (7, 1, '2025-04-06', 12, 'approved')")
    key = ctl.execute("SELECT ledgerlock._repost_record(%s, 'invoice', '{\"id\": 7}', '2025-04-06')",
                      (skipped,)).fetchone()[0]
    assert key == {"id": 7}
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.skipped_generations()").fetchone()[0] == 0


def test_skipped_repost_from_the_command_line(db, skipped):
    res = run(db, "controller", "skipped", "repost", str(skipped))
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith("ledgerlock: acting on ")
    assert "error LL002 (the row's date lies in a locked period): Period 2025-03-01..2025-03-31 is locked" in res.stderr
    res = run(db, "controller", "skipped", "repost", str(skipped), "--date", "2025-04-01", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"skip_id": skipped, "table": "public.invoice", "key": {"id": 7},
                                      "date": "2025-04-01"}
    res = run(db, "controller", "skipped", "repost", str(skipped), "--date", "2025-04-02")
    assert res.exit_code == 1 and "error LL004" in res.stderr and "already re-posted" in res.stderr
    res = run(db, "controller", "skipped", "repost", str(skipped), "--date", "2025-13-01")
    assert res.exit_code == 2 and "'2025-13-01' does not match the format '%Y-%m-%d'" in res.stderr
    listed = json.loads(run(db, "auditor", "skipped", "--json").stdout)
    assert [(r["id"], r["reposted_by"], r["reposted_key"]) for r in listed] == [(skipped, "ll_controller", {"id": 7})]
    assert "re-posted" in run(db, "auditor", "skipped").stdout


def test_skipped_repost_text_names_the_row(db, skipped):
    db.connect("controller").execute("SELECT ledgerlock.unlock_period(1, 'late rent')")
    res = run(db, "controller", "skipped", "repost", str(skipped))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"re-posted skipped write #{skipped} as public.invoice id=7 (dated as recorded)"


def test_a_repost_in_skip_mode_is_refused_not_skipped_again(db, skipped):
    ctl = db.connect("controller")
    with ctl.transaction():
        ctl.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        with refused("LL002"):
            ctl.execute("SELECT ledgerlock.repost_skipped(%s)", (skipped,))
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.skipped_writes").fetchone()[0] == 1
    with ctl.transaction():  # the caller's mode is back after a re-post
        ctl.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        ctl.execute("SELECT ledgerlock.repost_skipped(%s, '2025-04-01')", (skipped,))
        assert ctl.execute("SELECT current_setting('ledgerlock.on_locked')").fetchone()[0] == "skip"
    assert invoice(db, 7) == ("2025-04-01", 12, "approved")
