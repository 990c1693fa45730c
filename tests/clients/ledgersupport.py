"""django-ledger 0.8.5 on a protected schema: its migrations run once per server into a template database
(with one entity, its default chart of accounts and a ledger), and each test clones it, protects the
journal tables the way docs/clients.md tells a user to, and points Django's connections at the clone."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import psycopg
from clientsupport import configure_django, conninfo_dict
from django_settings import DJANGO_ALIASES
from psycopg import sql

from lltest import DML_ROLES, Cluster, TestDatabase, fresh_database

LEDGER_SCHEMA = "dl_schema"
LEDGER_TEMPLATE = "dl_template"
ENTITY_NAME = "Ledgerlock Demo Inc"
OTHER_ENTITY_NAME = "Other Books Ltd"  # a second entity: another scope
JE = "django_ledger_journalentrymodel"
TX = "django_ledger_transactionmodel"
JE_NUMBER_FORMAT = "JE-{YYYY}-{SEQ:6}"

# What docs/clients.md tells a django-ledger user to run once, as the owner of the tables: a journal entry is
# final once posted and takes its final number then; `updated` (auto_now) may still move; its scope is the
# entity of its ledger. Its transactions (the lines) follow it, except their bank-reconciliation flags and
# their own `updated`: the line table is protected for those (and for an audited trail of every line), with
# its creation time as its date, since a line has none of its own and its header's period is what holds it.
PROTECT = [
    f"""SELECT ledgerlock.protect('{JE}', date_column => 'timestamp', scope_column => 'ledger_id.entity_id',
        final_when => 'posted', number_column => 'je_number', number_format => '{JE_NUMBER_FORMAT}',
        mutable_columns => '{{updated}}')""",
    f"""SELECT ledgerlock.protect('{TX}', date_column => 'created',
        mutable_columns => '{{cleared,reconciled,updated}}')""",
    f"SELECT ledgerlock.protect_lines('{TX}', '{JE}')",
]

BOOKS_MONTH = (2026, 10)  # a closed month in the past: django-ledger refuses closing entries dated in the future
DAY = dt.datetime(2026, 10, 12, 9, 30, tzinfo=dt.UTC)


def point_django_at(dbname: str, conninfo) -> None:
    """Every Django alias on ``dbname`` as its role (``conninfo(role)`` gives the libpq parameters)."""
    from django.db import connections

    for alias, role in DJANGO_ALIASES.items():
        connections[alias].close()
        params = conninfo(role)
        connections.settings[alias].update(NAME=dbname, USER=params["user"], HOST=params["host"], PORT=params["port"],
                                           OPTIONS={"options": params["options"]} if "options" in params else {})


def close_django() -> None:
    from django.db import connections

    for alias in DJANGO_ALIASES:
        connections[alias].close()


# The SQL that django-ledger's migrate and the seeding ran on the first server of this process, statement by
# statement with its values inlined: the other servers replay it. migrate spends its time in Python (rendering
# the model state of 45 migrations, a minute on a loaded 2-core machine), not in the database.
_RECORDED: dict[str, list[str]] = {}


def run_or_replay(name: str, conninfo: str, work) -> None:
    """Run ``work`` (Django on ``conninfo``'s database) recording what it executes, or replay that recording."""
    if name in _RECORDED:
        with psycopg.connect(conninfo) as conn:  # one transaction: a failed replay leaves nothing
            for statement in _RECORDED[name]:
                conn.execute(statement)
        return
    from django.db import connections

    recorded: list[str] = []

    def record(execute, sql_text, params, many, context):
        if many:
            params = list(params)
        result = execute(sql_text, params, many, context)
        cursor = psycopg.ClientCursor(context["connection"].connection)  # mogrify resets the cursor it runs on
        if params is None:
            recorded.append(sql_text)
        else:
            recorded.extend(cursor.mogrify(sql_text, p) for p in (params if many else [params]))
        return result

    point_django_at(psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"],
                    lambda role: psycopg.conninfo.conninfo_to_dict(conninfo))
    try:
        with contextlib.ExitStack() as stack:
            for alias in DJANGO_ALIASES:
                stack.enter_context(connections[alias].execute_wrapper(record))
            work()
    finally:
        close_django()
    _RECORDED[name] = recorded


def build_ledger_templates(cluster: Cluster) -> None:
    """Two templates: LEDGER_SCHEMA, django-ledger's schema alone (``migrate`` as the owner, plain DML for the
    application logins), for django-ledger's own tests, which expect an empty database; and LEDGER_TEMPLATE,
    a copy with two entities, their charts of accounts and ledgers."""
    configure_django()
    from django.core.management import call_command

    def create(name: str, template: str) -> None:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                          sql.Identifier(template)))

    def seal(name: str) -> None:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH is_template true").format(sql.Identifier(name)))

    create(LEDGER_SCHEMA, "ll_template")
    run_or_replay("migrate", cluster.conninfo(LEDGER_SCHEMA),
                  lambda: call_command("migrate", database="owner", verbosity=0))
    with psycopg.connect(cluster.conninfo(LEDGER_SCHEMA), autocommit=True) as conn:
        logins = sql.SQL(", ").join(sql.Identifier(f"ll_{r}") for r in DML_ROLES)
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}")
                     .format(logins))
        conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(logins))
    seal(LEDGER_SCHEMA)
    create(LEDGER_TEMPLATE, LEDGER_SCHEMA)
    run_or_replay("seed", cluster.conninfo(LEDGER_TEMPLATE), seed_entity)
    seal(LEDGER_TEMPLATE)


def seed_entity() -> None:
    from django.contrib.auth import get_user_model
    from django_ledger.models import EntityModel

    admin = get_user_model().objects.create_user(username="ledger-admin", password="unused-in-tests")
    for name in (ENTITY_NAME, OTHER_ENTITY_NAME):
        entity = EntityModel.create_entity(name=name, use_accrual_method=True, admin=admin, fy_start_month=1)
        entity.create_chart_of_accounts(assign_as_default=True, commit=True)
        entity.populate_default_coa(activate_accounts=True)
        entity.create_ledger(name="General", posted=True)  # only posted ledgers count in the books


@contextlib.contextmanager
def ledger_database(cluster: Cluster, template: str = LEDGER_TEMPLATE) -> Iterator[TestDatabase]:
    """A fresh clone of a django-ledger template."""
    with fresh_database(cluster, template=template) as db:
        try:
            yield db
        finally:
            close_django()


def use_django(db: TestDatabase) -> None:
    point_django_at(db.name, lambda role: conninfo_dict(db, role))


def books(name: str = ENTITY_NAME):
    """A seeded entity, its ledger, and the accounts the tests post to: cash, capital, revenue."""
    from django_ledger.io import roles
    from django_ledger.models import AccountModel, EntityModel

    entity = EntityModel.objects.get(name=name)
    ledger = entity.ledgermodel_set.get(name="General")
    accounts = AccountModel.objects.for_entity(entity_model=entity)

    def account(role: str) -> AccountModel:
        return accounts.filter(role=role).order_by("code").first()

    return entity, ledger, account(roles.ASSET_CA_CASH), account(roles.EQUITY_CAPITAL), account(
        roles.INCOME_OPERATIONAL)


def txs(debit, credit, amount: str) -> list[dict]:
    """The two sides of one balanced journal entry, as django-ledger's commit_txs takes them."""
    return [
        {"account": debit, "amount": Decimal(amount), "tx_type": "debit", "description": "debit"},
        {"account": credit, "amount": Decimal(amount), "tx_type": "credit", "description": "credit"},
    ]
