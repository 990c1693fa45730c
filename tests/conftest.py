"""Fixtures: a real PostgreSQL per server build per session, a fresh database per test, and the session-settings
sweep: the refusal-heavy modules run every test twice, once as usual and once with every non-owner connection
opened under hostile session settings (lltest.HOSTILE_SETTINGS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lltest import Cluster, TestDatabase, fresh_database, selected_servers, start_cluster, stop_cluster


def pytest_report_header(config):
    return f"ledgerlock test servers: {', '.join(selected_servers())}"


def pytest_sessionstart(session):
    from lltest import reap_orphan_clusters

    reap_orphan_clusters()


@pytest.fixture(scope="session", params=selected_servers())
def cluster(request) -> Cluster:
    """A running server (PostgreSQL 16 embedded, and Debian's 15 where present) with the template."""
    from lltest import known_servers

    c, root = start_cluster(request.param, known_servers()[request.param])
    yield c
    stop_cluster(c, root)


# The modules whose tests run again under hostile session settings: the refusal tests of every rule, chosen for
# what they cover against what they cost. Each swept test pays a fresh database again (~0.5 s); measured on two
# servers with -n 2, these add about two minutes (223 s of test time over two workers). Left out: the DDL-guard,
# doctor and partition modules and the parametrized DDL/privilege checks below, which compare no values (settings
# cannot change what a missing privilege or an event trigger refuses), and the CLI modules, which print for people.
SWEPT = {
    "hardening/test_bypass_battery.py", "hardening/test_bypass_rules.py",
    "integration/test_final_rows.py", "integration/test_period_locks.py", "integration/test_referential.py",
    "integration/test_numbering.py", "integration/test_referential_lines.py",
    "integration/test_condition_literals.py", "audit/test_tampering.py", "audit/test_dropped_tables.py",
    "integration/test_referential_lines_same_txn.py", "integration/test_referential_exempt.py",
    "integration/test_parent_scope.py", "integration/test_refused_numbers.py", "integration/test_parent_date.py",
    "integration/test_hostile_schema.py", "audit/test_capture_one_query.py",
    "integration/test_numbering_tamper.py", "integration/test_numbering_settle.py", "audit/test_many_series.py",
    "concurrency/test_numbering_races.py", "hardening/test_generated_columns.py",
    "hardening/test_scope_limited_admin.py", "concurrency/test_scope_grant_race.py",
    "hardening/test_role_grants.py", "integration/test_why.py",
}
NOT_SWEPT = {  # 60 parametrized cases of catalog privileges and DDL
    "test_ddl_on_a_protected_table_is_refused", "test_side_doors_are_closed",
    "test_lock_functions_need_the_controller_role",
}
TESTS = Path(__file__).parent


def pytest_generate_tests(metafunc):
    """Runs every test of a swept module that uses a database as [normal] and [hostile]."""
    module = Path(metafunc.module.__file__).relative_to(TESTS).as_posix()
    if module in SWEPT and metafunc.function.__name__ not in NOT_SWEPT and "session_settings" in metafunc.fixturenames:
        metafunc.parametrize("session_settings", ["normal", "hostile"], indirect=True)


@pytest.fixture
def session_settings(request) -> str:
    """'hostile' when the sweep runs this test under hostile session settings, else 'normal'."""
    return getattr(request, "param", "normal")


@pytest.fixture
def db(cluster, session_settings) -> TestDatabase:
    """A fresh database with ledgerlock installed and the demo ERP tables (unprotected)."""
    with fresh_database(cluster, hostile=session_settings == "hostile") as database:
        yield database
