"""Where ledgerlock's SQL lives, and the one-file install script built from it.

Layout (shipped inside the wheel as package ``ledgerlock.sql``):
- ``migrations/NNNN_*.sql`` — tables, roles, views: yoyo migrations, frozen once released;
- ``functions/*.sql`` — the public SQL API and shared helpers (CREATE OR REPLACE);
- ``triggers/*.sql`` — guard and audit trigger functions and their installers (CREATE OR REPLACE).
Functions and triggers are applied in file-name order, after the migrations, by ``ledgerlock migrate``.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable

from . import __version__

CODE_DIRS = ("functions", "triggers")


def sql_root() -> Traversable:
    return resources.files("ledgerlock.sql")


def migrations_dir() -> Traversable:
    return sql_root() / "migrations"


def migration_files() -> list[Traversable]:
    return sorted((f for f in migrations_dir().iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


def code_files() -> list[Traversable]:
    files: list[Traversable] = []
    for d in CODE_DIRS:
        files += sorted((f for f in (sql_root() / d).iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return files


def code_script() -> str:
    """All function and trigger files, as one script. Function bodies are checked when they first run:
    plpgsql resolves names at run time, so the files need no dependency order among themselves."""
    parts = ["SET check_function_bodies = off;"]
    for f in code_files():
        parts.append(f"-- {f.parent.name}/{f.name}\n{f.read_text()}")
    parts.append("RESET check_function_bodies;")
    return "\n".join(parts)


def code_digest() -> str:
    return hashlib.sha256(code_script().encode()).hexdigest()


def demo_schema() -> str:
    return (sql_root() / "demo" / "erp.sql").read_text()


def install_script() -> str:
    """One script for DBAs who apply SQL by hand: ``psql -v ON_ERROR_STOP=1 -1 -f ledgerlock.sql``."""
    out = [
        f"-- ledgerlock {__version__}: one-file install script (ledgerlock sql)",
        "-- Apply in one transaction as the role that owns the tables to protect:",
        "--   psql -v ON_ERROR_STOP=1 --single-transaction -f ledgerlock.sql",
        "CREATE SCHEMA IF NOT EXISTS ledgerlock;",
    ]
    for f in migration_files():
        out.append(f"\n-- ===== migrations/{f.name}\n{f.read_text()}")
    ids = ", ".join(f"('{f.name.removesuffix('.sql')}', 'script')" for f in migration_files())
    out.append(f"\nINSERT INTO ledgerlock.installed_migration (id, via) VALUES {ids} ON CONFLICT DO NOTHING;")
    out.append("\n-- ===== functions and triggers\n" + code_script())
    out.append(
        "\nINSERT INTO ledgerlock.installed_code (digest, version) "
        f"VALUES ('{code_digest()}', '{__version__}') ON CONFLICT DO NOTHING;"
    )
    return "\n".join(out) + "\n"
