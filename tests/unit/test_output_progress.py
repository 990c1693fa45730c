"""Progress lines: rewritten in place on a terminal only; redirected stderr gets one plain line per phase."""

from __future__ import annotations

import click
from click.testing import CliRunner

from ledgerlock import output


@click.command()
def verify_like() -> None:
    for done in (250_000, 500_000, 600_000):
        output.progress(f"verified {done:,} of 600,000 chain links", done=done == 600_000)
    click.echo("audit trail intact")


def test_redirected_stderr_gets_no_carriage_return():
    res = CliRunner().invoke(verify_like)
    assert res.exit_code == 0
    assert "\r" not in res.stderr
    assert res.stderr == "verified 600,000 of 600,000 chain links\n"
    assert res.stdout == "audit trail intact\n"


def test_a_terminal_sees_the_line_rewritten(monkeypatch):
    monkeypatch.setattr(output, "stderr_is_tty", lambda: True)
    res = CliRunner().invoke(verify_like)
    assert res.stderr == ("\rverified 250,000 of 600,000 chain links\rverified 500,000 of 600,000 chain links"
                          "\rverified 600,000 of 600,000 chain links\n")


def test_no_color_turns_colors_off(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert output.color_wanted() is False
    monkeypatch.delenv("NO_COLOR")
    assert output.color_wanted() is None
