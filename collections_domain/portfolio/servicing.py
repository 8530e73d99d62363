"""What the servicing system (or a payment gateway) tells the product about a loan, routed so that
nothing is lost: to the loan's running case, to the loan book, or held for reconciliation.

One function per message, shared by the HTTP API and the command line:

- ``deliver_payment``: the running case applies it (and the book keeps it); with no case, the
  book applies it (a recovery after a write-off); a loan the book does not know, or money in
  another currency than the loan's, is held in ``unmatched_payments``.
- ``deliver_reversal``: the running case undoes the payment; a case that ended because of it
  (cured, settled) is re-opened from its own ledger with the reversal applied; a held payment is
  marked reversed; the book marks it in every case.
- ``deliver_instalment`` and ``deliver_adjustment``: the book's schedule changes and the running
  case gets the message; without a case the scan opens one if the loan is now overdue.

Each returns a ``Delivery`` saying where the message went.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from collections_domain.case.contract import (
    CaseInput,
    InstalmentDue,
    LoanInstalment,
    OpeningReason,
    PaymentReceived,
    PendingSignal,
    PaymentReversed,
    ScheduleAdjusted,
)
from collections_domain.client import case_handle, start_case
from collections_domain.portfolio import loan_book
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.rules.validation import payment_entry_problem
from collections_domain.store.models import CollectionCase, LoanPaymentRecord, Payment, UnmatchedPayment
from collections_domain.store.reconciliation import REOPENABLE, hold_payment, reopen_facts

RPC_TIMEOUT = timedelta(seconds=10)

DeliveryStatus = Literal["delivered", "reopened", "recorded_in_book", "held_for_reconciliation"]


class Delivery(BaseModel):
    """Where a message for loan ``loan_id`` went: ``delivered`` to its running case, ``reopened``
    its ended case, ``recorded_in_book`` (no case open; the book applied it), or
    ``held_for_reconciliation`` (``reason``: ``no_case``, ``case_closed``, ``written_off``)."""

    loan_id: str
    signal: str
    id: str
    status: DeliveryStatus
    reason: str | None = None
    detail: str
    #: False when this very message had been received before (nothing new was stored).
    new: bool = True


async def running_run(client: Client, loan_id: str) -> tuple[WorkflowExecutionStatus | None, str | None]:
    """The status of the loan's latest case run (``None``: never had one) and its first run id."""
    try:
        described = await case_handle(client, loan_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None, None
        raise
    first = described.raw_description.workflow_execution_info.first_run_id or described.run_id
    return described.status, first


def _last_case(engine: Engine, loan_id: str) -> CollectionCase | None:
    with Session(engine) as db:
        return db.exec(select(CollectionCase).where(CollectionCase.loan_id == loan_id)
                       .order_by(CollectionCase.id.desc())).first()  # type: ignore[union-attr]


async def deliver_payment(client: Client, engine: Engine, policy: CollectionPolicy, loan_id: str,
                          payment: PaymentReceived, *, api_key_id: str | None = None, source: str = "api",
                          now: datetime | None = None) -> Delivery:
    """Route a payment (module docstring). ``now``: the receiver's clock (default: this
    process's), which ``paid_at`` is checked against (``rules.validation.payment_entry_problem``).
    A payment in another currency than the loan's is held (``wrong_currency``) when no case is
    running, and refused by a running case (listed in its ``rejected_signals``); the loan book
    keeps only money in the loan's currency.

    Raises:
        loan_book.BookConflict, reconciliation.PaymentConflict: that payment id is known with
            another amount or currency (``"payment_id: ..."``).
        ValueError: ``paid_at`` out of bounds, or a non-positive amount with no running case to
            record its refusal (``"field: rule"``).
        RPCError: Temporal did not answer.
    """
    now = now or datetime.now(UTC)
    status, first_run = await running_run(client, loan_id)
    problem = payment_entry_problem(payment, currency=None, now=now)
    if problem and not (problem.startswith("amount_minor") and status == WorkflowExecutionStatus.RUNNING):
        raise ValueError(problem)  # a running case records a refused amount itself
    book_currency = await asyncio.to_thread(loan_book.currency_of, engine, loan_id)
    in_book = None
    if payment.amount_minor > 0 and book_currency == payment.currency:  # the book keeps its loan's money only
        in_book = await asyncio.to_thread(loan_book.record_payment, engine, loan_id, payment, source=source, now=now)
    if status == WorkflowExecutionStatus.RUNNING:
        try:
            await case_handle(client, loan_id).signal("payment_received", payment, rpc_timeout=RPC_TIMEOUT)
            if in_book is not None:
                await asyncio.to_thread(loan_book.mark_sent, engine, loan_id, episode=first_run or "",
                                        payments=[payment.payment_id])
            return Delivery(loan_id=loan_id, signal="payment_received", id=payment.payment_id, status="delivered",
                            detail="the case applies the payment once per payment_id, or lists it with the rule "
                                   "under rejected_signals")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            status = WorkflowExecutionStatus.COMPLETED  # closed between describe and signal
    if in_book is not None:
        book = await asyncio.to_thread(loan_book.refresh, engine, loan_id, policy)
        recovery = book is not None and book.loan.status == "written_off"
        return Delivery(loan_id=loan_id, signal="payment_received", id=payment.payment_id, status="recorded_in_book",
                        reason="written_off" if recovery else None, new=in_book,
                        detail=("the loan was written off: the payment is recorded as a recovery in the loan book"
                                if recovery else "no case is open: the loan book applied the payment"))
    if book_currency is not None and book_currency != payment.currency:
        reason = "wrong_currency"
    else:
        last = await asyncio.to_thread(_last_case, engine, loan_id)
        reason = "no_case" if status is None else ("written_off" if last and last.outcome == "written_off" else "case_closed")
    stored = await asyncio.to_thread(hold_payment, engine, loan_id=loan_id, payment_id=payment.payment_id,
                                     amount_minor=payment.amount_minor, currency=payment.currency, paid_at=payment.paid_at,
                                     reason=reason, api_key_id=api_key_id)
    what = {"no_case": "no collections case was ever opened", "case_closed": "its collections case has closed",
            "written_off": "it was written off (a recovery)",
            "wrong_currency": f"the loan is in {book_currency}, the payment in {payment.currency}"}[reason]
    held = "is held" if stored else "was already held"
    return Delivery(loan_id=loan_id, signal="payment_received", id=payment.payment_id, status="held_for_reconciliation",
                    reason=reason, new=stored,
                    detail=f"loan {loan_id}: {what}; the payment {held} for reconciliation in unmatched_payments")


def _applied_by(engine: Engine, loan_id: str, payment_id: str) -> tuple[CollectionCase | None, Payment | None]:
    """The case that applied payment ``payment_id`` of the loan, and its record, if any."""
    with Session(engine) as db:
        applied = db.exec(select(Payment).where(Payment.loan_id == loan_id, Payment.payment_id == payment_id)).first()
        if applied is None or applied.episode_id is None:
            return None, applied
        case = db.exec(select(CollectionCase).where(CollectionCase.episode_id == applied.episode_id)).first()
    return case, applied


async def _forward_book(client: Client, engine: Engine, policy: CollectionPolicy, loan_id: str, episode: str,
                        now: datetime) -> list[str]:
    """Send a re-opened case what the book learned while the case was closed (instalments that
    fell due, payments): its ledger starts from the ended case's (``scan.forward``)."""
    from collections_domain.portfolio.scan import forward  # the scan routes through this module

    book = await asyncio.to_thread(loan_book.refresh, engine, loan_id, policy, now)
    if book is None:
        return []
    return await forward(engine, client, book, episode, now)


def reversal_to_reopen(engine: Engine, loan_id: str) -> PaymentReversed | None:
    """A reversal the loan book holds that no case has applied, of a payment that ended the
    loan's case (cured or settled): delivering it re-opens that case (``deliver_reversal``).
    ``None`` when there is none (a CSV reversal reaches the book first; the scan and
    ``loan-import`` then deliver it)."""
    with Session(engine) as db:
        rows = db.exec(select(LoanPaymentRecord).where(LoanPaymentRecord.loan_id == loan_id,
                                                       LoanPaymentRecord.reversed_at.is_not(None))  # type: ignore[union-attr]
                       .order_by(LoanPaymentRecord.reversed_at)).all()
    for row in rows:
        case, applied = _applied_by(engine, loan_id, row.payment_id)
        if case is not None and case.outcome in REOPENABLE and applied is not None and applied.reversed_at is None:
            return PaymentReversed(reversal_id=row.reversal_id or f"rev-{row.payment_id}", payment_id=row.payment_id,
                                   reason=row.reversal_reason or "other",  # type: ignore[arg-type]
                                   reversed_at=row.reversed_at.replace(tzinfo=UTC) if row.reversed_at.tzinfo is None  # type: ignore[union-attr]
                                   else row.reversed_at)
    return None


def _reopen_input(engine: Engine, case: CollectionCase, reversal: PaymentReversed) -> CaseInput:
    """The input that re-opens ``case`` (ended) with its own ledger (the worker builds the same)."""
    shell = CaseInput(loan_id=case.loan_id, borrower_id=case.borrower_id, currency=case.currency,
                      oldest_due_date=case.oldest_due_date, timezone=case.timezone, jurisdiction=case.jurisdiction,
                      region=case.region, portfolio=case.portfolio, principal_due_minor=1)
    signal = PendingSignal(kind="payment_reversed", payload=reversal.model_dump(mode="json"), received_at=datetime.now(UTC))
    facts = reopen_facts(engine, shell, [signal])
    if facts is None:
        return shell
    return shell.model_copy(update={
        "instalments": facts.instalments, "payments": facts.payments, "reopened_from": facts.reopened_from,
        "oldest_due_date": min(i.due_date for i in facts.instalments), "principal_due_minor": 0,
        "opening_reason": OpeningReason(source="reversal", rule=facts.rule),
    })


def _reverse_held(engine: Engine, loan_id: str, payment_id: str) -> bool:
    with Session(engine) as db:
        held = db.exec(select(UnmatchedPayment).where(UnmatchedPayment.loan_id == loan_id,
                                                      UnmatchedPayment.payment_id == payment_id)).first()
        if held is None:
            return False
        held.status = "reversed"
        db.add(held)
        db.commit()
    return True


async def deliver_reversal(client: Client, engine: Engine, policy: CollectionPolicy, loan_id: str,
                           reversal: PaymentReversed, *, task_queue: str, now: datetime | None = None) -> Delivery:
    """Route a reversal (module docstring). ``now``: the caller's clock (default: this process's),
    as of which a re-opened case is sent what the book learned while it was closed.

    Raises:
        LookupError: the loan has no such payment anywhere (a case, the book, the held payments).
        RPCError: Temporal did not answer.
    """
    status, _ = await running_run(client, loan_id)
    in_book = await asyncio.to_thread(loan_book.record_reversal, engine, loan_id, reversal)
    common = dict(loan_id=loan_id, signal="payment_reversed", id=reversal.reversal_id)
    if status == WorkflowExecutionStatus.RUNNING:
        await case_handle(client, loan_id).signal("payment_reversed", reversal, rpc_timeout=RPC_TIMEOUT)
        return Delivery(**common, status="delivered", detail="the case undoes the payment, or lists the reversal "
                                                             "with the rule under rejected_signals")
    case, applied = await asyncio.to_thread(_applied_by, engine, loan_id, reversal.payment_id)
    if case is not None and case.outcome in REOPENABLE and applied is not None and applied.reversed_at is None:
        reopen = await asyncio.to_thread(_reopen_input, engine, case, reversal)
        handle = await start_case(client, reopen, task_queue=task_queue, start_signal=("payment_reversed", reversal))
        sent = await _forward_book(client, engine, policy, loan_id, handle.result_run_id or "", now or datetime.now(UTC))
        return Delivery(**common, status="reopened",
                        detail=f"the case ended {case.outcome} with this payment; collection re-opens from its ledger "
                               f"(run {handle.result_run_id}, re-opening {case.episode_id})"
                               + (f"; sent it what the loan book learned since: {', '.join(sent)}" if sent else ""))
    if await asyncio.to_thread(_reverse_held, engine, loan_id, reversal.payment_id):
        return Delivery(**common, status="held_for_reconciliation", reason="reversed",
                        detail="the payment was held for reconciliation; it is marked reversed there")
    if in_book is not None:
        await asyncio.to_thread(loan_book.refresh, engine, loan_id, policy)
        return Delivery(**common, status="recorded_in_book", new=bool(in_book),
                        detail="no case is open: the loan book undid the payment (the scan opens a case if the loan is overdue)")
    raise LookupError(f"payment_id: loan {loan_id} has no payment {reversal.payment_id} in a case, the loan book "
                      "or the held payments")


async def deliver_instalment(client: Client, engine: Engine, policy: CollectionPolicy, loan_id: str,
                             instalment: LoanInstalment) -> Delivery:
    """Route an instalment that fell due (module docstring).

    Raises:
        LookupError: no case is running and the book does not know the loan.
        loan_book.BookConflict: the book has that instalment id with other values.
    """
    status, first_run = await running_run(client, loan_id)
    try:
        await asyncio.to_thread(loan_book.add_instalment, engine, loan_id, instalment)
        in_book = True
    except LookupError:
        in_book = False
    common = dict(loan_id=loan_id, signal="instalment_due", id=instalment.instalment_id)
    if status == WorkflowExecutionStatus.RUNNING:
        await case_handle(client, loan_id).signal("instalment_due", InstalmentDue(**instalment.model_dump()),
                                                  rpc_timeout=RPC_TIMEOUT)
        if in_book:
            await asyncio.to_thread(loan_book.mark_sent, engine, loan_id, episode=first_run or "",
                                    instalments=[instalment.instalment_id])
        return Delivery(**common, status="delivered", detail="the case adds the instalment once per instalment_id")
    if not in_book:
        raise LookupError(f"loan_id: loan {loan_id} has no running case and is not in the loan book")
    await asyncio.to_thread(loan_book.refresh, engine, loan_id, policy)
    return Delivery(**common, status="recorded_in_book",
                    detail="no case is open: the loan book has the instalment (the scan opens a case once it is overdue)")


async def deliver_adjustment(client: Client, engine: Engine, policy: CollectionPolicy, loan_id: str,
                             adjustment: ScheduleAdjusted) -> Delivery:
    """Route a schedule adjustment (module docstring).

    Raises:
        LookupError: no case is running and the book does not know the loan (or an instalment).
        loan_book.BookConflict: an instalment to add is in the book with other values.
    """
    status, _ = await running_run(client, loan_id)
    try:
        await asyncio.to_thread(loan_book.adjust_schedule, engine, loan_id, adjustment)
    except LookupError:
        if status != WorkflowExecutionStatus.RUNNING:
            raise  # a case running for a loan the book does not know still takes it
    common = dict(loan_id=loan_id, signal="schedule_adjusted", id=adjustment.adjustment_id)
    if status == WorkflowExecutionStatus.RUNNING:
        await case_handle(client, loan_id).signal("schedule_adjusted", adjustment, rpc_timeout=RPC_TIMEOUT)
        return Delivery(**common, status="delivered", detail="the case applies the adjustment once per adjustment_id")
    await asyncio.to_thread(loan_book.refresh, engine, loan_id, policy)
    return Delivery(**common, status="recorded_in_book",
                    detail="no case is open: the loan book changed its schedule")

