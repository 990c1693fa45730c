"""Who wrote it, with kept connections. ledgerlock records the client's labels (ledgerlock.actor, reason,
context) with every event. Applications keep their connections: Django with CONN_MAX_AGE (docs/clients.md
recommends it), SQLAlchemy in its pool, any app behind a pooler. A label set for the session stays on the
connection and labels the next request's writes, someone else's; set for the transaction
(set_config(name, value, true) inside the ORM's transaction), it ends with it. docs/clients.md, "Who wrote it"."""

from __future__ import annotations

from decimal import Decimal

import pytest
from clientsupport import OPEN_DAY, configure_django
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

configure_django()  # before the models are imported
from django.db import connection, transaction  # noqa: E402
from ll_erp_django.models import Invoice as DjangoInvoice  # noqa: E402
from ll_erp_sqlalchemy import Invoice  # noqa: E402

LABEL = "SELECT set_config('ledgerlock.actor', %s, true), set_config('ledgerlock.context', %s, true)"


def actors(db) -> list[tuple]:
    """(row key, actor, context) of every INSERT into invoice, in order."""
    return [(k["id"], a, c) for k, a, c in db.owner().execute(
        "SELECT row_key, actor, context FROM ledgerlock.audit_log WHERE table_name = 'invoice'::regclass "
        "AND operation = 'INSERT' ORDER BY seq")]


@pytest.mark.usefixtures("django_erp")
def test_django_labels_set_for_the_transaction_end_with_it_on_a_kept_connection(django_erp):
    # request 1, for alice: the labels inside the request's transaction
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(LABEL, ["alice", "request 1"])
        first = DjangoInvoice.objects.create(company_id=1, issued_on=OPEN_DAY, amount=Decimal("10.00"))
    pid = connection.connection.info.backend_pid
    # request 2, a job that labels nothing, on the same kept connection
    second = DjangoInvoice.objects.create(company_id=1, issued_on=OPEN_DAY, amount=Decimal("20.00"))
    # the wrong way: a label for the session (request 3) stays for request 4, whoever makes it
    with connection.cursor() as cur:
        cur.execute("SET ledgerlock.actor = 'bob'")
    third = DjangoInvoice.objects.create(company_id=1, issued_on=OPEN_DAY, amount=Decimal("30.00"))
    fourth = DjangoInvoice.objects.create(company_id=1, issued_on=OPEN_DAY, amount=Decimal("40.00"))
    assert connection.connection.info.backend_pid == pid  # one connection throughout, as with CONN_MAX_AGE
    assert actors(django_erp) == [(first.pk, "alice", "request 1"), (second.pk, None, None),
                                  (third.pk, "bob", None), (fourth.pk, "bob", None)]


def test_sqlalchemy_labels_set_for_the_transaction_end_with_it_in_the_pool(erp):
    import psycopg

    # SQLAlchemy's default pool, one connection: every session below checks out the same one
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(erp.conninfo("app")),
                           pool_size=1, max_overflow=0)
    try:
        with Session(engine) as session, session.begin():
            session.execute(text("SELECT set_config('ledgerlock.actor', :a, true), "
                                 "set_config('ledgerlock.context', :c, true)"), {"a": "alice", "c": "request 1"})
            session.add(Invoice(id=101, company_id=1, issued_on=OPEN_DAY))
        with Session(engine) as session, session.begin():
            session.add(Invoice(id=102, company_id=1, issued_on=OPEN_DAY))
        # the wrong way: a label for the session stays on the pooled connection (the pool's reset on return is
        # a ROLLBACK, which a committed SET outlives)
        with Session(engine) as session, session.begin():
            session.execute(text("SET ledgerlock.actor = 'bob'"))
            session.add(Invoice(id=103, company_id=1, issued_on=OPEN_DAY))
        with Session(engine) as session, session.begin():
            session.add(Invoice(id=104, company_id=1, issued_on=OPEN_DAY))
    finally:
        engine.dispose()
    assert actors(erp) == [(101, "alice", "request 1"), (102, None, None), (103, "bob", None), (104, "bob", None)]
