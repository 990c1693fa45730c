"""Fixtures: a real PostgreSQL per server build per session, a fresh database per test."""

from __future__ import annotations

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


@pytest.fixture
def db(cluster) -> TestDatabase:
    """A fresh database with ledgerlock installed and the demo ERP tables (unprotected)."""
    with fresh_database(cluster) as database:
        yield database
