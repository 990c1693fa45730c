"""ledgerlock: tamper-proof accounting records inside PostgreSQL.

The rules live in the database (triggers, row-level security, SQL functions in schema ``ledgerlock``);
this package installs them and gives DBAs and admins a manager (``ledgerlock --help``).
"""

__version__ = "0.1.0"
