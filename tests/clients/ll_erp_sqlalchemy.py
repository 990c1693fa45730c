"""The demo invoice tables as a SQLAlchemy 2 application maps them. The numbering trigger writes ``number``:
FetchedValue() on insert and update plus eager_defaults make the ORM read it back with RETURNING in the same
statement, so the object holds the final number as soon as the flush returns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import DateTime, FetchedValue, ForeignKey, Numeric, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "invoice"
    __mapper_args__ = {"eager_defaults": True}  # RETURNING the server-side values on INSERT and UPDATE

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int]
    number: Mapped[str | None] = mapped_column(server_default=FetchedValue(), server_onupdate=FetchedValue())
    status: Mapped[str] = mapped_column(default="draft")
    issued_on: Mapped[dt.date]
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    paid: Mapped[bool] = mapped_column(default=False)
    reconciled: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None]
    # auto-updated on every flush that changes the row; declared mutable in ledgerlock.protect
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=FetchedValue(),
                                                 onupdate=func.now())
    lines: Mapped[list[InvoiceLine]] = relationship(back_populates="invoice")


class InvoiceLine(Base):
    __tablename__ = "invoice_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"))
    description: Mapped[str]
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3), default=Decimal("1"))
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    invoice: Mapped[Invoice] = relationship(back_populates="lines")
