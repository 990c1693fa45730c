"""A schema made by SQLAlchemy itself, as its users make theirs: ``metadata.create_all`` with a Python ``Enum``
for the status, which SQLAlchemy creates as a PostgreSQL ENUM type. ledgerlock protects it with a final_when
over the enum's labels and numbers it: the ORM finalizes by setting the enum member, reads the number back
through RETURNING, gets ledgerlock's refusal for a final row, and the trail verifies."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

import pytest
from sqlalchemy import Enum, FetchedValue, Numeric, create_engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

from ledgerlock.errors import FinalizedRowError


class Status(enum.Enum):
    draft = "draft"
    posted = "posted"
    void = "void"


class Base(DeclarativeBase):
    pass


class Bill(Base):
    __tablename__ = "bill"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    vendor_id: Mapped[int]
    status: Mapped[Status] = mapped_column(Enum(Status, name="bill_status"), default=Status.draft)
    booked_on: Mapped[dt.date]
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    number: Mapped[str | None] = mapped_column(server_default=FetchedValue(), server_onupdate=FetchedValue())


@pytest.fixture
def bills(db):
    import psycopg

    owner = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db.conninfo()), poolclass=NullPool)
    Base.metadata.create_all(owner)
    owner.dispose()
    conn = db.owner()
    assert conn.execute("SELECT typtype FROM pg_type WHERE typname = 'bill_status'").fetchone() == ("e",)
    conn.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON bill TO ll_app")
    conn.execute("SELECT ledgerlock.protect('bill', 'booked_on', 'vendor_id', $$status IN ('posted', 'void')$$, "
                 "'number', 'BILL-{YYYY}-{SEQ:4}')")
    app = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db.conninfo("app")),
                        poolclass=NullPool)
    yield app
    app.dispose()


def test_an_orm_made_enum_status_finalizes_numbers_and_freezes(db, bills):
    with Session(bills) as session, session.begin():
        bill = Bill(id=1, vendor_id=7, booked_on=dt.date(2026, 3, 2), amount=Decimal("40.00"))
        other = Bill(id=2, vendor_id=7, booked_on=dt.date(2026, 3, 3), amount=Decimal("5.00"))
        session.add_all([bill, other])
        session.flush()
        bill.status = Status.posted
        session.flush()  # UPDATE ... RETURNING number
        assert bill.number == "BILL-2026-0001"
    with Session(bills) as session:
        bill = session.get(Bill, 1)
        bill.amount = Decimal("41.00")
        with pytest.raises(DBAPIError) as info:
            session.commit()
        assert isinstance(info.value.orig, FinalizedRowError)
        assert str(info.value.orig).startswith("bill id=1 (BILL-2026-0001) is final and cannot be updated")
    with Session(bills) as session, session.begin():  # the neighbour: a draft still changes, and is voided
        other = session.get(Bill, 2)
        other.amount = Decimal("6.00")
        session.flush()
        other.status = Status.void
    with Session(bills) as session:
        assert session.execute(select(Bill.id, Bill.status, Bill.number).order_by(Bill.id)).all() == [
            (1, Status.posted, "BILL-2026-0001"), (2, Status.void, "BILL-2026-0002")]
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
