"""What every command receives: the connection target (resolved on first use), and the one way query
results become dicts.

Kept apart from cli.py so that command modules import it without importing the command line that
imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import click
import psycopg
from psycopg.rows import dict_row

from .connection import Target, resolve


@dataclass
class Context:
    dsn: str | None
    _target: Target | None = field(default=None, repr=False)

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = resolve(self.dsn)
        return self._target

    def connect(self, **kw) -> psycopg.Connection:
        return self.target.connect(**kw)

    def connect_to_write(self, **kw) -> psycopg.Connection:
        """A connection for a command that writes: first says, on stderr, which server and database."""
        conn = self.connect(**kw)
        self.target.announce(conn)
        return conn


pass_context = click.make_pass_decorator(Context)


def rows(conn: psycopg.Connection, query, params=None) -> list[dict]:
    """The result of a query as a list of dicts, one per row (column name: value)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()
