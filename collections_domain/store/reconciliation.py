"""Payments that arrive for a loan with no running case (never opened, or closed): held in
``unmatched_payments`` for the finance team to reconcile, never lost. Used by the HTTP API and
the command line alike."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from collections_domain.store.models import UnmatchedPayment

#: Why a payment is held.
REASONS = ("no_case", "case_closed")


class PaymentConflict(ValueError):
    """The payment id is already held for the loan with another amount or currency; the
    message reads ``"payment_id: <rule>"``."""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def hold_payment(
    engine: Engine,
    *,
    loan_id: str,
    payment_id: str,
    amount_minor: int,
    currency: str,
    paid_at: datetime,
    reason: str,
    api_key_id: str | None = None,
) -> bool:
    """Hold a payment (minor units of ``currency``; ``paid_at`` timezone-aware) once per loan and
    payment id. Returns ``True`` if stored now, ``False`` if this same payment (id, amount and
    currency) was already held.

    Raises:
        PaymentConflict: that payment id is held already with another amount or currency.
        ValueError: ``reason`` is not one of ``REASONS``, or ``paid_at`` has no offset.
    """
    if reason not in REASONS:
        raise ValueError(f"reason: must be one of {', '.join(REASONS)}, got {reason!r}")
    if paid_at.tzinfo is None:
        raise ValueError("paid_at: must carry a UTC offset")
    with Session(engine, expire_on_commit=False) as db:
        db.add(UnmatchedPayment(loan_id=loan_id, payment_id=payment_id, amount_minor=amount_minor, currency=currency,
                                paid_at=paid_at.astimezone(UTC), received_at=datetime.now(UTC), reason=reason,
                                api_key_id=api_key_id))
        try:
            db.commit()
            return True
        except IntegrityError:
            db.rollback()
        held = db.exec(select(UnmatchedPayment).where(UnmatchedPayment.loan_id == loan_id,
                                                      UnmatchedPayment.payment_id == payment_id)).one()
    # The time is not compared: a sender retrying may stamp the same payment anew.
    if (held.amount_minor, held.currency) != (amount_minor, currency):
        raise PaymentConflict(
            f"payment_id: payment {payment_id} is already held for loan {loan_id} as {held.amount_minor} "
            f"{held.currency} paid at {_utc(held.paid_at).isoformat()}; a different payment needs its own payment_id"
        )
    return False


def held_payments(engine: Engine, loan_id: str | None = None, limit: int = 1000) -> list[UnmatchedPayment]:
    """Held payments, oldest first (of ``loan_id`` only when given); instants are UTC-aware."""
    with Session(engine) as db:
        statement = select(UnmatchedPayment).order_by(UnmatchedPayment.id)
        if loan_id:
            statement = statement.where(UnmatchedPayment.loan_id == loan_id)
        rows = list(db.exec(statement.limit(limit)))
    for row in rows:
        row.paid_at, row.received_at = _utc(row.paid_at), _utc(row.received_at)
    return rows
