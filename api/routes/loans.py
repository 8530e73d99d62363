"""The loan book over HTTP: the servicing system posts loans with their schedules, payments,
reversals, instalments that fell due and schedule adjustments; a loan's book record reads back
with what it adds up to. Each message also reaches the loan's running case
(``collections_domain.portfolio.servicing``). And the delinquency scan, run on demand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api import keys
from api.deps import (
    IdempotencyKey,
    LoanPath,
    client_of,
    engine_of,
    policies_of,
    refuse_parameters,
    require,
    rpc_problem,
)
from api.idempotency import run_idempotent
from api.problems import FieldProblem, ProblemError, field_problems, invalid_input, problem_responses
from api.routes.cases import _pay, deliver
from api.schemas import (
    AdjustmentRequest,
    InstalmentRequest,
    LoanOut,
    LoanRequest,
    PaymentRequest,
    ReversalRequest,
    ScanAccepted,
    ScanRequestBody,
    SignalAccepted,
)
from collections_domain.case.contract import LoanInstalment, PaymentReversed, ScheduleAdjusted, describe_errors
from collections_domain.ops.logs import get_logger
from collections_domain.portfolio import loan_book
from collections_domain.portfolio.scan import SCAN_WORKFLOW_TYPE, ScanRequest
from collections_domain.portfolio.servicing import deliver_adjustment, deliver_instalment, deliver_reversal
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

log = get_logger("api")

router = APIRouter()

read = Depends(require("read"))
write = Depends(require("write"))


def _loan_out(book: loan_book.BookLoan) -> LoanOut:
    loan = book.loan
    return LoanOut(loan_id=loan.id, borrower_id=loan.borrower_id, currency=loan.currency, timezone=loan.timezone,
                   jurisdiction=loan.jurisdiction, region=loan.region, portfolio=loan.portfolio, status=loan.status,
                   ledger=book.view, recovery=book.recovery, case_url=f"/v1/cases/{loan.id}")


@router.post("/v1/loans", status_code=201, response_model=LoanOut, tags=["loans"],
             responses={200: {"model": LoanOut, "description": "The loan was in the book; new instalments were added."},
                        **problem_responses(403, 409)})
async def post_loan(request: Request, body: LoanRequest, idempotency_key: IdempotencyKey,
                    principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """Put a loan in the loan book with its schedule (every instalment, due or not): 201 when new,
    200 when it was there (instalments it lacked are added; nothing else changes), 409 when the
    loan or an instalment id is there with other values (a changed instalment is an adjustment).
    The delinquency scan opens its case once it is overdue. Needs scope ``write``."""

    async def produce():
        engine, policy = engine_of(request), policies_of(request).current
        try:
            loan = loan_book.LoanIn(**body.model_dump())
            change = await asyncio.to_thread(loan_book.upsert_loan, engine, loan, policy)
        except ValidationError as err:
            raise invalid_input(describe_errors(err)) from err
        except loan_book.BookRefused as err:
            raise invalid_input(err.problems) from err
        except loan_book.BookConflict as err:
            raise ProblemError(409, "conflict", str(err), field_problems([str(err)])) from err
        book = await asyncio.to_thread(loan_book.refresh, engine, loan.loan_id, policy)
        assert book is not None
        log.info("api.loan.posted", loan_id=loan.loan_id, key_id=principal.key_id, created=change.created)
        created = any(c.startswith("loan ") for c in change.created)
        return (201 if created else 200), _loan_out(book)

    return await run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body=body, produce=produce)


@router.get("/v1/loans/{loan_id}", response_model=LoanOut, tags=["loans"], responses=problem_responses(403, 404),
            dependencies=[Depends(refuse_parameters)])
async def get_loan(request: Request, loan_id: LoanPath, _: Annotated[keys.Principal, read]) -> LoanOut:
    """A loan of the book: its instalments and payments and what they add up to now (DPD,
    outstanding by component, credit, each payment's allocation). Needs scope ``read``."""
    book = await asyncio.to_thread(loan_book.read_loan, engine_of(request), loan_id, policies_of(request).current)
    if book is None:
        rule = f"loan {loan_id!r} is not in the loan book"
        raise ProblemError(404, "not-found", f"loan_id: {rule}", [FieldProblem(field="loan_id", rule=rule)])
    return _loan_out(book)


def _contract(model, body):
    """The contract's message ``model`` of the request ``body``, whose rules of the whole message
    (an adjustment must change something) are 422s naming the fields."""
    try:
        return model(**body.model_dump())
    except ValidationError as err:
        raise invalid_input(describe_errors(err)) from err


def _idempotent(request: Request, principal: keys.Principal, idempotency_key: str, body, produce):
    return run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                          method="POST", path=request.url.path, body=body, produce=produce)


@router.post("/v1/loans/{loan_id}/payments", status_code=202, response_model=SignalAccepted, tags=["payments"],
             responses=problem_responses(403, 409, 503))
async def post_loan_payment(request: Request, loan_id: LoanPath, body: PaymentRequest, idempotency_key: IdempotencyKey,
                            principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """A payment of the loan, as of its ``paid_at``: to its running case (``delivered``), else
    the loan book (``recorded_in_book``; a recovery after a write-off), else held
    (``held_for_reconciliation``). Needs scope ``write``."""
    return await _idempotent(request, principal, idempotency_key, body,
                             lambda: _pay(request, principal, loan_id, body))


@router.post("/v1/loans/{loan_id}/reversals", status_code=202, response_model=SignalAccepted, tags=["payments"],
             responses=problem_responses(403, 404, 503))
async def post_reversal(request: Request, loan_id: LoanPath, body: ReversalRequest, idempotency_key: IdempotencyKey,
                        principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """A payment bounced or was charged back (signal ``payment_reversed``): the running case
    undoes it (``delivered``); a case that ended because of it re-opens from its own ledger
    (``reopened``); a held payment is marked reversed; the loan book marks it. 404: the loan has
    no such payment anywhere. Needs scope ``write``."""
    reversal = _contract(PaymentReversed, body)
    task_queue = request.app.state.settings.temporal_task_queue
    return await _idempotent(request, principal, idempotency_key, body, lambda: deliver(
        request, lambda client, engine, policy: deliver_reversal(client, engine, policy, loan_id, reversal,
                                                                 task_queue=task_queue)))


@router.post("/v1/loans/{loan_id}/instalments", status_code=202, response_model=SignalAccepted, tags=["loans"],
             responses=problem_responses(403, 404, 409, 503))
async def post_instalment(request: Request, loan_id: LoanPath, body: InstalmentRequest, idempotency_key: IdempotencyKey,
                          principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """An instalment of the loan fell due (signal ``instalment_due``): the book's schedule gets it
    and the running case adds it (once per ``instalment_id``). Needs scope ``write``."""
    line = _contract(LoanInstalment, body)
    if line.problem():
        raise invalid_input([line.problem()])
    return await _idempotent(request, principal, idempotency_key, body, lambda: deliver(
        request, lambda client, engine, policy: deliver_instalment(client, engine, policy, loan_id, line)))


@router.post("/v1/loans/{loan_id}/adjustments", status_code=202, response_model=SignalAccepted, tags=["loans"],
             responses=problem_responses(403, 404, 409, 503))
async def post_adjustment(request: Request, loan_id: LoanPath, body: AdjustmentRequest, idempotency_key: IdempotencyKey,
                          principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """The loan's schedule changed (signal ``schedule_adjusted``): instalments cancelled (what
    was paid to them becomes credit) and added, as of ``effective_at``. Needs scope ``write``."""
    adjustment = _contract(ScheduleAdjusted, body)
    for index, line in enumerate(adjustment.add):
        if line.problem(f"add.{index}"):
            raise invalid_input([line.problem(f"add.{index}")])
    return await _idempotent(request, principal, idempotency_key, body, lambda: deliver(
        request, lambda client, engine, policy: deliver_adjustment(client, engine, policy, loan_id, adjustment)))


@router.post("/v1/scans", status_code=202, response_model=ScanAccepted, tags=["loans"], responses=problem_responses(403, 503))
async def post_scan(request: Request, body: ScanRequestBody, idempotency_key: IdempotencyKey,
                    principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """Run the delinquency scan now (``DelinquencyScanWorkflow``; the daily Schedules run it per
    time zone): every overdue loan of the book gets a case, running cases get what the book
    learned. 202 with the scan's workflow id; its result lists what it did. Needs scope ``write``."""

    async def produce():
        client = await client_of(request)
        settings = request.app.state.settings
        scan_id = f"delinquency-scan-api-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        try:
            await client.start_workflow(SCAN_WORKFLOW_TYPE, ScanRequest(time_zone=body.time_zone),
                                        id=scan_id, task_queue=settings.temporal_task_queue,
                                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        except RPCError as err:
            raise rpc_problem(err, "") from err
        log.info("api.scan.started", scan_id=scan_id, key_id=principal.key_id, time_zone=body.time_zone)
        return 202, ScanAccepted(scan_id=scan_id, time_zone=body.time_zone)

    return await _idempotent(request, principal, idempotency_key, body, produce)

