"""Where ledgerlock's SQL lives, and the one-file install script built from it.

Layout (shipped inside the wheel as package ``ledgerlock.sql``):
- ``migrations/NNNN_*.sql`` — tables, roles, views: yoyo migrations, frozen once released;
- ``functions/*.sql`` — the public SQL API and shared helpers (CREATE OR REPLACE);
- ``triggers/*.sql`` — guard and audit trigger functions and their installers (CREATE OR REPLACE).
Functions and triggers are applied in file-name order, after the migrations, by ``ledgerlock migrate``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
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


# The catalog rows of ledgerlock's functions before the script runs: the functions whose row changed are the
# ones it created, which its last step fingerprints (ledgerlock._record_shipped_code, for `doctor`). A row's
# version is its xmin and its place (ctid): a function a migration of the same transaction created (migration
# 0044's _acts_as) has the script's xmin already, and only its place tells that the script replaced it.
_SNAPSHOT = """DROP TABLE IF EXISTS pg_temp.ll_code_before;
CREATE TEMP TABLE ll_code_before AS
    SELECT p.oid, p.xmin::text || '@' || p.ctid::text AS row_version FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'ledgerlock'::regnamespace;"""
_RECORD = """SELECT ledgerlock._record_shipped_code();
DROP TABLE pg_temp.ll_code_before;"""


def code_script() -> str:
    """All function and trigger files, as one script. Function bodies are checked when they first run:
    plpgsql resolves names at run time, so the files need no dependency order among themselves."""
    parts = ["SET check_function_bodies = off;", _SNAPSHOT]
    for f in code_files():
        parts.append(f"-- {f.parent.name}/{f.name}\n{f.read_text()}")
    parts += [_RECORD, "RESET check_function_bodies;"]
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


@dataclass(frozen=True)
class ShippedFunction:
    """A ``ledgerlock.*`` function as the package's SQL text defines it, in pg_proc's terms: ``body_md5`` is
    md5 of the text between the dollar quotes (pg_proc.prosrc), ``config`` the SET clauses as proconfig
    lists them."""

    name: str
    body_md5: str
    security_definer: bool
    config: tuple[str, ...] | None
    body: str = field(default="", repr=False, compare=False)  # the text between the dollar quotes


_CREATE = re.compile(r"^CREATE\s+OR\s+REPLACE\s+FUNCTION\s+ledgerlock\.(\w+)\s*\(", re.IGNORECASE | re.MULTILINE)
_BODY_START = re.compile(r"\bAS\s+(\$\w*\$)", re.IGNORECASE)
_SET = re.compile(r"^\s*SET\s+(\w+)\s*(?:=|\bTO\b)\s*(.*?)\s*(?:--.*)?$", re.IGNORECASE | re.MULTILINE)


def _config_item(name: str, value: str) -> str:
    return f"{name}={value.strip().strip(chr(39))}"


def shipped_functions() -> dict[str, list[ShippedFunction]]:
    """Every ``ledgerlock.*`` function the package ships, by name (overloads share a name). Each definition
    starts a line; its body runs to the closing dollar quote, so statements inside bodies are never read as
    definitions."""
    out: dict[str, list[ShippedFunction]] = {}
    for f in code_files():
        text = f.read_text()
        pos = 0
        while (m := _CREATE.search(text, pos)) is not None:
            body = _BODY_START.search(text, m.end())
            if body is None:
                break
            end = text.find(body.group(1), body.end())
            if end < 0:
                break
            header = text[m.end():body.start()]
            config = tuple(_config_item(n, v) for n, v in _SET.findall(header)) or None
            out.setdefault(m.group(1), []).append(ShippedFunction(
                name=m.group(1),
                body_md5=hashlib.md5(text[body.end():end].encode()).hexdigest(),
                security_definer=re.search(r"\bSECURITY\s+DEFINER\b", header, re.IGNORECASE) is not None,
                config=config,
                body=text[body.end():end],
            ))
            pos = end + len(body.group(1))
    return out
