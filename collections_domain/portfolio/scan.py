"""The delinquency scan: find the overdue loans of the loan book and open their cases, and bring
running cases what the book learned since (instalments that fell due, payments, reversals).

Run daily in each time zone by a Temporal Schedule (``DelinquencyScanWorkflow``, installed by
``starter.py scan-schedules``) or at once (``starter.py scan``, ``POST /v1/scans``). A loan gets
a case once an instalment is unpaid ``identification.grace_days`` full local days after its due
date and its overdue amount is at least the currency's ``identification_minimum_minor``; the
reason is recorded with the case (``OpeningReason``). A loan that is current gets none.

Resumable and idempotent: loans are scanned in pages by id; a case is started with Temporal's
"use the running one" policy, and what reached a case is marked in the book, so a scan run again
(or a page retried) opens no second case and sends no message twice.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pydantic import BaseModel, ValidationError, field_validator
from sqlalchemy.engine import Engine
from sqlmodel import Session, or_, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from collections_domain.case.contract import (
    InstalmentDue,
    OpeningReason,
    PaymentReceived,
    PaymentReversed,
    describe_errors,
    workflow_id_for,
)
from collections_domain.ops.logs import get_logger
from collections_domain.portfolio import loan_book, servicing
from collections_domain.rules import calendar
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.rules.validation import time_zone_problem
from collections_domain.client import start_case
from collections_domain.store.models import CollectionCase, Loan, LoanPaymentRecord, Payment
from collections_domain.store.reconciliation import ended_case_problem

log = get_logger("scan")

SCAN_WORKFLOW_TYPE = "DelinquencyScanWorkflow"
#: Loans per page (one activity call each).
PAGE_SIZE = 200


class ScanRequest(BaseModel):
    """Scan the loans of ``time_zone`` (an IANA name; ``None``: every zone of the book) as of
    ``as_of`` (default: the scan's start), from loan id ``after`` on, ``limit`` loans a page."""

    time_zone: str | None = None
    as_of: datetime | None = None
    #: Only these loans (the simulation scans the loans whose day it is; ``None``: all).
    loan_ids: list[str] | None = None
    after: str | None = None
    limit: int = PAGE_SIZE
    scan_id: str = "manual"
    task_queue: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        problem = time_zone_problem(value)
        if problem:
            raise ValueError(problem.removeprefix("time_zone: "))
        return value


class ScanPage(BaseModel):
    """What one page of a scan did: cases ``opened`` (loan ids, with why in ``reasons``), loans
    whose running case got ``forwarded`` messages, loans found ``current``, and ``next_after`` (the
    cursor; ``None``: the scan is done)."""

    opened: list[str] = []
    reasons: dict[str, str] = {}
    forwarded: dict[str, list[str]] = {}
    current: list[str] = []
    below_minimum: list[str] = []
    errors: list[str] = []
    next_after: str | None = None


class ScanSummary(BaseModel):
    """What a whole scan did: cases opened (loan ids), loans whose case got messages, loans
    current or below the minimum, errors by loan, and the pages it took."""

    time_zone: str | None
    as_of: str
    opened: list[str] = []
    forwarded: list[str] = []
    current: int = 0
    below_minimum: int = 0
    errors: list[str] = []
    pages: int = 0


def candidates(engine: Engine, request: ScanRequest, today_by_zone) -> list[str]:
    """Loan ids to look at, in id order after the cursor (at most ``request.limit``): active loans
    with an instalment due and unpaid on their local today, and loans with a case open (which may
    need what the book learned since)."""
    with Session(engine) as db:
        open_cases = select(CollectionCase.loan_id).where(CollectionCase.outcome.is_(None))  # type: ignore[union-attr]
        query = select(Loan.id, Loan.timezone, Loan.oldest_unpaid_due_date).where(
            Loan.status == "active",
            or_(Loan.oldest_unpaid_due_date.is_not(None), Loan.id.in_(open_cases)),  # type: ignore[union-attr]
        )
        if request.time_zone is not None:
            query = query.where(Loan.timezone == request.time_zone)
        if request.after is not None:
            query = query.where(Loan.id > request.after)
        if request.loan_ids is not None:
            query = query.where(Loan.id.in_(request.loan_ids))  # type: ignore[attr-defined]
        rows = list(db.exec(query.order_by(Loan.id)))
        with_case = set(db.exec(open_cases))
    picked = [loan_id for loan_id, zone, oldest in rows
              if loan_id in with_case or (oldest is not None and oldest <= today_by_zone(zone))]
    return picked[: request.limit]


def _open_case(engine: Engine, loan_id: str) -> CollectionCase | None:
    with Session(engine) as db:
        return db.exec(select(CollectionCase).where(CollectionCase.loan_id == loan_id, CollectionCase.outcome.is_(None))  # type: ignore[union-attr]
                       .order_by(CollectionCase.id.desc())).first()  # type: ignore[union-attr]


def identification(book: loan_book.BookLoan, policy: CollectionPolicy) -> tuple[bool, str]:
    """Whether the loan is overdue by the policy's rules, and the rule, with the numbers."""
    view, loan = book.view, book.loan
    grace = policy.identification.grace_days
    thresholds = policy.currencies.get(loan.currency)
    minimum = thresholds.identification_minimum_minor if thresholds else 1
    oldest = next((line for line in view.lines if line.status == "open" and line.days_past_due > 0), None)
    if oldest is None or view.days_past_due <= grace:
        return False, f"current: nothing unpaid more than {grace} day(s) after its due date"
    if view.overdue.total < minimum:
        return False, f"below the minimum: overdue {view.overdue.total} < {minimum} (policy currencies.{loan.currency}.identification_minimum_minor)"
    return True, (f"instalment {oldest.instalment_id} due {oldest.due_date} unpaid {view.days_past_due} day(s), past the "
                  f"{grace}-day grace (policy identification.grace_days); overdue {view.overdue.total} >= {minimum}")


async def scan_page(engine: Engine, client: Client, policy: CollectionPolicy, request: ScanRequest, *,
                    task_queue: str, now: datetime | None = None) -> ScanPage:
    """Scan one page of loans (module docstring) and return what it did."""
    as_of = request.as_of or now or datetime.now(UTC)

    def today(zone: str):
        return calendar.local_date(as_of, zone)

    ids = await asyncio.to_thread(candidates, engine, request, today)
    page = ScanPage(next_after=ids[-1] if len(ids) >= request.limit else None)
    for loan_id in ids:
        try:
            await _scan_loan(engine, client, policy, request, loan_id, as_of, task_queue, page)
        except (RPCError, ValueError) as err:
            message = "; ".join(describe_errors(err)) if isinstance(err, ValidationError) else str(err)
            page.errors.append(f"{loan_id}: {message}")
            log.warning("scan.loan_failed", loan_id=loan_id, error=message[:200])
    return page


async def _scan_loan(engine, client, policy, request, loan_id, as_of, task_queue, page: ScanPage) -> None:
    book = await asyncio.to_thread(loan_book.refresh, engine, loan_id, policy, as_of)
    if book is None:
        return
    running = await asyncio.to_thread(_open_case, engine, loan_id)
    if running is not None:
        sent = await forward(engine, client, book, running.episode_id or "", as_of)
        if sent:
            page.forwarded[loan_id] = sent
        return
    overdue, rule = identification(book, policy)
    if not overdue:
        (page.below_minimum if rule.startswith("below") else page.current).append(loan_id)
        return
    reason = OpeningReason(source="scan", rule=rule, scan_id=request.scan_id[:100])
    case = loan_book.case_input(book, reason=reason)
    ended = await asyncio.to_thread(ended_case_problem, engine, case)
    if ended and (await servicing.running_run(client, loan_id))[0] == WorkflowExecutionStatus.RUNNING:
        return  # (re-)opened a moment ago and not yet on record: the next scan forwards to it
    if ended:
        # Overdue again because a payment that ended its case was reversed in the book (a CSV
        # row): the reversal re-opens that case. Anything else is why no case opens.
        reversal = await asyncio.to_thread(servicing.reversal_to_reopen, engine, loan_id)
        if reversal is None:
            page.errors.append(f"{loan_id}: {ended}")
            return
        delivery = await servicing.deliver_reversal(client, engine, policy, loan_id, reversal,
                                                    task_queue=task_queue, now=as_of)
        page.forwarded[loan_id] = [f"reversal {reversal.reversal_id}: {delivery.status}"]
        return
    handle = await start_case(client, case, task_queue=task_queue, now=as_of)
    episode = handle.result_run_id or ""
    # Everything due so far is in the case, or was paid before the window it opened with: none of
    # it is to be sent again; so with the payments.
    today = calendar.local_date(as_of, book.loan.timezone)
    await asyncio.to_thread(loan_book.mark_sent, engine, loan_id, episode=episode,
                            instalments=[i.instalment_id for i in book.instalments if i.due_date <= today],
                            payments=[p.payment_id for p in book.payments if p.reversed_at is None])
    page.opened.append(loan_id)
    page.reasons[loan_id] = rule
    log.info("scan.case_opened", loan_id=loan_id, rule=rule, scan_id=request.scan_id)


async def forward(engine: Engine, client: Client, book: loan_book.BookLoan, episode: str, as_of: datetime) -> list[str]:
    """Send a running case what the book has that it lacks: instalments due by now, payments and
    reversals; mark each sent. Returns what was sent (``instalment 3``, ``payment P``...)."""
    handle = client.get_workflow_handle(workflow_id_for(book.loan.id))
    today = calendar.local_date(as_of, book.loan.timezone)
    sent: list[str] = []
    for line in book.instalments:
        if line.due_date <= today and line.cancelled_at is None and line.forwarded_to is None:
            await handle.signal("instalment_due", InstalmentDue(
                instalment_id=line.instalment_id, due_date=line.due_date, principal_minor=line.principal_minor,
                interest_minor=line.interest_minor, fees_minor=line.fees_minor, currency=book.loan.currency))
            await asyncio.to_thread(loan_book.mark_sent, engine, book.loan.id, episode=episode, instalments=[line.instalment_id])
            sent.append(f"instalment {line.instalment_id}")
    for payment in book.payments:
        if payment.case_episode_id is None and payment.reversed_at is None:
            await handle.signal("payment_received", PaymentReceived(
                payment_id=payment.payment_id, amount_minor=payment.amount_minor, currency=payment.currency,
                paid_at=loan_book._utc(payment.paid_at)))  # type: ignore[arg-type]
            await asyncio.to_thread(loan_book.mark_sent, engine, book.loan.id, episode=episode, payments=[payment.payment_id])
            sent.append(f"payment {payment.payment_id}")
        elif payment.reversed_at is not None and payment.case_episode_id == episode and not _case_has_reversal(engine, payment):
            # The case's own record (payments.reversed_at) says the reversal arrived; until then a
            # re-send is refused by the case as a duplicate reversal id, never applied twice.
            await handle.signal("payment_reversed", PaymentReversed(
                reversal_id=payment.reversal_id or f"rev-{payment.payment_id}", payment_id=payment.payment_id,
                reason=payment.reversal_reason or "other", reversed_at=loan_book._utc(payment.reversed_at)))  # type: ignore[arg-type]
            sent.append(f"reversal {payment.reversal_id}")
    return sent


def _case_has_reversal(engine: Engine, payment: LoanPaymentRecord) -> bool:
    with Session(engine) as db:
        applied = db.exec(select(Payment).where(Payment.loan_id == payment.loan_id,
                                                Payment.payment_id == payment.payment_id)).first()
    return applied is None or applied.reversed_at is not None


def book_time_zones(engine: Engine) -> list[str]:
    """The time zones of the book's active loans (one scan schedule each)."""
    with Session(engine) as db:
        return sorted({zone for zone in db.exec(select(Loan.timezone).where(Loan.status == "active"))})

