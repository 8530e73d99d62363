"""Money that no running case can take: payments for a loan with no running case (never opened,
closed, or refused) are held in ``unmatched_payments`` for the finance team to reconcile, never
lost; a case that cannot open holds the money it came with. Used by the HTTP API, the command
line and the workflow's opening activity alike."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from pydantic import ValidationError

from collections_domain.case.contract import CaseInput, LoanInstalment, OpeningPayment, PaymentReceived, describe_errors
from collections_domain.store.models import (
    CollectionCase,
    LedgerEntryRecord,
    Loan,
    LoanPaymentRecord,
    Payment,
    RejectedSignalRecord,
    UnmatchedPayment,
)
from collections_domain.store.records import ReopenedFacts

#: Why a payment is held: no case ever opened, the case closed, the case that came with it was
#: refused, or the loan was written off (a recovery, matched to the write-off by reconciliation).
REASONS = ("no_case", "case_closed", "case_refused", "written_off", "wrong_currency")


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


def ended_case_problem(engine: Engine, case: CaseInput) -> str | None:
    """Why ``case`` cannot open because of how the loan's earlier cases ended, or ``None``: a
    loan written off (or settled, or closed by a stop) opens no new case, and the case of the same
    loan and oldest due date that already ended does not open again unless ``reopened_from``
    names it (a reversal re-opening it). Reads ``collection_cases`` and ``loans``."""
    with Session(engine) as db:
        ended = list(db.exec(
            select(CollectionCase).where(CollectionCase.workflow_id == case.workflow_id,
                                         CollectionCase.outcome.is_not(None))  # type: ignore[union-attr]
            .order_by(CollectionCase.id.desc())  # type: ignore[union-attr]
        ))
        loan = db.get(Loan, case.loan_id)
    final = next((c for c in ended if c.outcome in ("written_off", "settled", "closed_bankruptcy", "closed_deceased")), None)
    if final is not None and case.reopened_from is None:
        return (f"loan_id: the collections case of loan {case.loan_id} ended as {final.outcome} on "
                f"{_utc(final.closed_at).date() if final.closed_at else '?'}; it does not open again (payments after a "
                f"write-off are recoveries, held for reconciliation)")
    if loan is not None and loan.status != "active" and case.reopened_from is None:
        return f"loan_id: loan {case.loan_id} is {loan.status} in the loan book; it opens no new case"
    same = next((c for c in ended if c.oldest_due_date == case.oldest_due_date), None)
    if same is not None and case.reopened_from is None:
        return (f"oldest_due_date: the case of loan {case.loan_id} due {case.oldest_due_date} already ended as "
                f"{same.outcome}; a new case needs a later oldest_due_date (a reversal re-opens it: reopened_from)")
    return None


def hold_signals(engine: Engine, request) -> str:
    """Keep the payments and reversals that came with a case that cannot open (an
    ``OpenCaseRequest``): payments are held (``written_off`` for a written-off loan, else
    ``case_refused``), reversals and unreadable payloads are recorded in ``rejected_signals``.
    Returns a sentence saying what was kept ("" when nothing came)."""
    loan_id = (request.loan_id or request.case.loan_id)[:64]
    with Session(engine) as db:
        written_off = db.exec(select(CollectionCase).where(CollectionCase.loan_id == loan_id,
                                                           CollectionCase.outcome == "written_off")).first() is not None
    held, recorded = [], []
    for signal in request.signals:
        raw = signal.payload if isinstance(signal.payload, dict) else {}
        if signal.kind == "payment_received":
            try:
                payment = PaymentReceived.model_validate(signal.payload)
                if payment.amount_minor <= 0:
                    raise ValueError("amount_minor: must be positive")
                hold_payment(engine, loan_id=loan_id, payment_id=payment.payment_id, amount_minor=payment.amount_minor,
                             currency=payment.currency, paid_at=payment.paid_at,
                             reason="written_off" if written_off else "case_refused")
                held.append(payment.payment_id)
                continue
            except ValidationError as err:
                reason = "; ".join(describe_errors(err))
            except ValueError as err:
                reason = str(err)
        else:
            reason = "the case it came with could not open; reverse the payment in the loan book"
            _reverse_in_book(engine, loan_id, raw)
        _record_rejected(engine, request, loan_id, signal, raw, reason)
        recorded.append(str(raw.get("payment_id") or raw.get("reversal_id") or "?")[:64])
    parts = []
    if held:
        parts.append(f"payment(s) {', '.join(held)} held for reconciliation in unmatched_payments"
                     + (" as recoveries of the write-off" if written_off else ""))
    if recorded:
        parts.append(f"{', '.join(recorded)} recorded in rejected_signals")
    return "; ".join(parts)


def _reverse_in_book(engine: Engine, loan_id: str, raw: dict) -> None:
    payment_id = str(raw.get("payment_id", ""))
    with Session(engine) as db:
        row = db.exec(select(LoanPaymentRecord).where(LoanPaymentRecord.loan_id == loan_id,
                                                      LoanPaymentRecord.payment_id == payment_id)).first()
        if row is not None and row.reversed_at is None:
            row.reversed_at = datetime.now(UTC)
            row.reversal_id = str(raw.get("reversal_id", ""))[:64] or None
            row.reversal_reason = str(raw.get("reason", "other"))[:20]
            db.add(row)
            db.commit()


def _record_rejected(engine: Engine, request, loan_id: str, signal, raw: dict, reason: str) -> None:
    from collections_domain.case.contract import SIGNAL_ID_FIELD

    signal_id = str(raw.get(SIGNAL_ID_FIELD.get(signal.kind, "id"), ""))[:64]
    key = f"{request.episode_id}:refused:{signal.kind}:{signal_id}"[:200]
    with Session(engine) as db:
        if db.exec(select(RejectedSignalRecord).where(RejectedSignalRecord.record_key == key)).first() is None:
            db.add(RejectedSignalRecord(record_key=key, workflow_id=request.workflow_id, loan_id=loan_id, kind=signal.kind,
                                        signal_id=signal_id, reason=f"{reason} (the case could not open)",
                                        received_at=signal.received_at))
            db.commit()


#: Outcomes a reversal re-opens: the case ended because the money was there.
REOPENABLE = ("cured", "settled", "closed_adjusted")


def reopen_facts(engine: Engine, case: CaseInput, signals: list) -> ReopenedFacts | None:
    """The facts a case re-opened by a reversal starts from, or ``None``: when one of ``signals``
    reverses a payment that the loan's last ended case (cured, settled) applied, that case's
    instalments and payments (``ledger_entries``, ``payments``), so that the reversal applies to
    the very ledger it came from."""
    reversed_ids = {str(s.payload.get("payment_id")) for s in signals
                    if s.kind == "payment_reversed" and isinstance(s.payload, dict)}
    if not reversed_ids:
        return None
    with Session(engine) as db:
        last = db.exec(select(CollectionCase).where(CollectionCase.workflow_id == case.workflow_id,
                                                    CollectionCase.outcome.is_not(None),  # type: ignore[union-attr]
                                                    CollectionCase.episode_id.is_not(None))  # type: ignore[union-attr]
                       .order_by(CollectionCase.id.desc())).first()  # type: ignore[union-attr]
        if last is None or last.outcome not in REOPENABLE:
            return None
        applied = list(db.exec(select(Payment).where(Payment.loan_id == case.loan_id, Payment.episode_id == last.episode_id,
                                                     Payment.reversed_at.is_(None))))  # type: ignore[union-attr]
        hit = sorted(reversed_ids & {p.payment_id for p in applied})
        if not hit:
            return None
        entries = list(db.exec(select(LedgerEntryRecord).where(LedgerEntryRecord.episode_id == last.episode_id)
                               .order_by(LedgerEntryRecord.id)))
    cancelled = {e.ref_id for e in entries if e.entry == "instalment_cancelled"}
    lines = [
        LoanInstalment(instalment_id=e.ref_id, due_date=e.due_date, principal_minor=e.principal_minor,
                       interest_minor=e.interest_minor, fees_minor=e.fees_minor, penalty_minor=e.penalty_minor)
        for e in entries
        if e.entry in ("instalment", "legal_costs", "judgment") and e.ref_id not in cancelled and e.due_date is not None
    ]
    if not lines:
        return None
    payments = [OpeningPayment(payment_id=p.payment_id, amount_minor=p.amount_minor, paid_at=_utc(p.value_at or p.paid_at))
                for p in applied]
    return ReopenedFacts(
        reopened_from=last.episode_id or "", outcome=last.outcome or "", instalments=lines, payments=payments,
        rule=f"payment {', '.join(hit)} reversed after the case ended {last.outcome}",
    )
