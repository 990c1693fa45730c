"""The sealer service's stop (`ledgerlock audit seal --every`), signal by signal, in this process: the first
SIGTERM or SIGINT asks it to stop after the seal in progress; a second one, whenever it comes, stops it at once.
tests/integration/test_audit_cli.py runs the same against a real sealer whose seal waits on a real lock."""

from __future__ import annotations

import os
import select
import signal

import pytest

from ledgerlock.commands import audit


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_asks_for_a_stop_and_the_second_stops_at_once(sig, capfd):
    before = signal.getsignal(sig)
    with audit._Stop() as stop:
        os.kill(os.getpid(), sig)  # delivered to this thread: its handler has run when kill returns
        assert stop.requested
        # the wait between seals ends at once: the handler woke it (a stop never waits out --every)
        ready, _, _ = select.select([stop._read], [], [], 0)
        assert ready
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) == before  # the service's handlers are gone with it
    assert f"sealer: stopping after the seal in progress (a second {sig.name} stops it now)" in capfd.readouterr().err


def test_a_second_signal_that_comes_while_the_first_is_being_reported_stops_at_once(monkeypatch):
    """Python runs a signal handler with no signal blocked, so the second SIGTERM of an impatient service
    manager may come while the first one's handler still runs: here, while it writes its message (the moment
    whoever reads the message sends the second). It must stop the sealer, not be taken for a first one."""
    real_write = os.write
    sent = []

    def write(fd, data):
        if fd == 2 and not sent:
            sent.append(data)
            os.kill(os.getpid(), signal.SIGTERM)  # the second signal, inside the first one's handler
        return real_write(fd, data) if fd != 2 else len(data)

    with audit._Stop() as stop:
        monkeypatch.setattr(audit.os, "write", write)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("the second signal was taken for a first one: the sealer would never stop")
        monkeypatch.undo()
        assert stop.requested and sent
