"""``ledgerlock console``: the web console for accountants and auditors.

People log in as their own database role; every page reads and every form writes through the public SQL
API on a connection opened as that role, so the database decides what each person may see and do.
"""

from .app import create_app

__all__ = ["create_app"]
