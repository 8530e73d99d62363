"""Helpers for workflow tests: seed borrowers, open cases relative to the server clock, move time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from collections_domain.rules import calendar
from collections_domain.case.contract import CaseInput, CaseStatus, PaymentReceived, PromiseToPay
from collections_domain.case.children import legal_workflow_id, placement_workflow_id
from collections_domain.client import start_case
from collections_domain.store.db import session
from collections_domain.store.models import Borrower, ContactAttempt


def seed_borrower(engine, borrower_id: str, *, tz: str = "Asia/Shanghai", locale: str = "zh-CN", **overrides) -> None:
    """A borrower with every contact detail, so every channel can deliver."""
    fields = dict(
        id=borrower_id,
        full_name="测试 借款人",
        phone="+86 138 0000 0000",
        email="borrower@example.com",
        postal_address="1 Example Road, Shanghai",
        locale=locale,
        timezone=tz,
    )
    fields.update(overrides)
    with session(engine) as db:
        db.merge(Borrower(**fields))
        db.commit()


async def server_now(env: WorkflowEnvironment) -> datetime:
    """The test server's clock, as an aware UTC datetime."""
    return (await env.get_current_time()).astimezone(UTC)


async def advance_to(env: WorkflowEnvironment, instant: datetime) -> None:
    """Skip the server's clock forward to ``instant`` (no-op if it is already past)."""
    delta = instant - await server_now(env)
    if delta > timedelta(0):
        await env.sleep(delta)


async def advance_to_local(env: WorkflowEnvironment, day: date, wall: time, tz: str) -> None:
    """Skip to local wall-clock ``wall`` on ``day`` in zone ``tz``."""
    await advance_to(env, calendar.local_instant(day, wall, tz))


def new_loan_id(prefix: str = "L") -> str:
    """A unique loan id for one test."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def open_case(
    harness,
    *,
    due: date,
    amount_minor: int = 300_000,
    tz: str = "Asia/Shanghai",
    locale: str = "zh-CN",
    currency: str = "CNY",
    jurisdiction: str = "CN",
    seed: bool = True,
    first_payment: PaymentReceived | None = None,
    portfolio: str | None = "no-accrual",
    **extra,
) -> tuple[CaseInput, WorkflowHandle]:
    """Seed a borrower and open a case for a new loan due on local ``due`` (in a portfolio that
    accrues nothing, unless ``portfolio`` says otherwise, so that amounts stay round)."""
    loan_id = new_loan_id()
    borrower_id = f"B-{loan_id}"
    if seed:
        seed_borrower(harness.engine, borrower_id, tz=tz, locale=locale)
    case = CaseInput(
        loan_id=loan_id,
        borrower_id=borrower_id,
        currency=currency,
        principal_due_minor=amount_minor,
        oldest_due_date=due,
        timezone=tz,
        jurisdiction=jurisdiction,
        portfolio=portfolio,
        **extra,
    )
    handle = await start_case(harness.client, case, task_queue=harness.task_queue, first_payment=first_payment)
    harness.handles.append(handle)
    harness.child_ids += [placement_workflow_id(case.workflow_id, due), legal_workflow_id(case.workflow_id, due)]
    return case, handle


async def status(handle: WorkflowHandle) -> CaseStatus:
    """The case's ``status`` query."""
    return await handle.query("status", result_type=CaseStatus)


def payment(amount_minor: int, paid_at: datetime, payment_id: str | None = None, currency: str = "CNY") -> PaymentReceived:
    """A payment signal."""
    return PaymentReceived(
        payment_id=payment_id or f"P-{uuid.uuid4().hex[:10]}", amount_minor=amount_minor, currency=currency, paid_at=paid_at
    )


def promise(amount_minor: int, promised_date: date, promise_id: str | None = None) -> PromiseToPay:
    """A promise-to-pay signal."""
    return PromiseToPay(promise_id=promise_id or f"PTP-{uuid.uuid4().hex[:8]}", amount_minor=amount_minor, promised_date=promised_date)


def contact_rows(engine, loan_id: str) -> list[ContactAttempt]:
    """Contact attempts of a loan, oldest first."""
    with session(engine) as db:
        return list(db.exec(select(ContactAttempt).where(ContactAttempt.loan_id == loan_id).order_by(ContactAttempt.id)))


class ServedInLoop:
    """``app`` served by uvicorn on 127.0.0.1:``port`` in the running event loop (``uvicorn``'s
    keyword ``options`` too): ``await served.start()`` / ``await served.stop()``, or ``async with``."""

    def __init__(self, app, port: int, **options):
        import uvicorn

        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options))
        self._task: asyncio.Task | None = None

    async def start(self, timeout_seconds: float = 20.0) -> ServedInLoop:
        self._task = asyncio.get_running_loop().create_task(self.server.serve())
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while not self.server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"uvicorn did not start on port {self.port}")
            await asyncio.sleep(0.05)
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> ServedInLoop:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()
