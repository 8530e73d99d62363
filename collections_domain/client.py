"""Client helpers for engineers: connect, open a case, send payments and promises, read status.

Used by ``starter.py``, the benchmark and the tests; any Temporal client in any language can do
the same with CONTRACT.md's JSON shapes.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter

from collections_domain import calendar
from collections_domain import search_attributes as sa
from collections_domain.case import WORKFLOW_TYPE, CaseInput, CaseStatus, PaymentReceived, PromiseToPay, workflow_id_for
from collections_domain.policy import PolicyRegistry
from collections_domain.settings import Settings, get_settings
from collections_domain.validation import case_input_problems, due_date_problem


async def connect(settings: Settings | None = None) -> Client:
    """A client for ``TEMPORAL_ADDRESS``/``TEMPORAL_NAMESPACE`` with the pydantic data converter."""
    settings = settings or get_settings()
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


def static_summary(case: CaseInput) -> str:
    """The one-line summary the Temporal UI shows for a case (ids and amounts only)."""
    return (
        f"Loan {case.loan_id} · {case.currency} {case.overdue_minor} minor units overdue since "
        f"{case.oldest_due_date} · {case.jurisdiction} · {case.timezone}"
    )


@lru_cache(maxsize=4)
def _default_policies(policy_path: str | None) -> PolicyRegistry:
    return PolicyRegistry.from_settings(policy_path)


async def start_case(
    client: Client,
    case: CaseInput,
    *,
    task_queue: str | None = None,
    first_payment: PaymentReceived | None = None,
    policies: PolicyRegistry | None = None,
    now: datetime | None = None,
) -> WorkflowHandle:
    """Open ``case`` (or return the running one: starting twice is a no-op).

    With ``first_payment``, uses signal-with-start so the payment is applied before any step.
    ``policies`` are the ones the input is checked against (default: this process's settings;
    the worker checks again against its own). With ``now`` (the caller's clock, UTC), a due
    date after the borrower's local today is refused here too; the workflow always checks it
    against its own clock.

    Raises:
        ValueError: ``case`` breaks an input rule (checked here before anything is sent), naming
            every field and rule.
    """
    problems = case_input_problems(case, policies or _default_policies(get_settings().collections_policy))
    problem = due_date_problem(case, now) if (now is not None and not problems) else None
    if problems or problem:
        raise ValueError("; ".join(problems or [problem]))
    extra = {}
    if first_payment is not None:
        extra = {"start_signal": "payment_received", "start_signal_args": [first_payment]}
    return await client.start_workflow(
        WORKFLOW_TYPE,
        case,
        id=case.workflow_id,
        task_queue=task_queue or get_settings().temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=sa.case_search_attributes(
            loan_id=case.loan_id,
            stage="identified",
            overdue_since=calendar.overdue_since(case.oldest_due_date, case.timezone),
            outstanding_minor=case.overdue_minor,
            jurisdiction=case.jurisdiction,
            outcome=None,
        ),
        static_summary=static_summary(case),
        static_details=(
            f"Collections case for loan **{case.loan_id}** (borrower id {case.borrower_id}).\n\n"
            f"Principal {case.principal_due_minor}, interest {case.interest_due_minor}, fees "
            f"{case.fees_due_minor} ({case.currency} minor units); oldest due date {case.oldest_due_date}."
        ),
        result_type=CaseStatus,
        **extra,
    )


def case_handle(client: Client, loan_id: str) -> WorkflowHandle:
    """The handle of ``loan_id``'s case."""
    return client.get_workflow_handle(workflow_id_for(loan_id), result_type=CaseStatus)


async def send_payment(client: Client, loan_id: str, payment: PaymentReceived | dict) -> None:
    """Signal ``payment_received`` to ``loan_id``'s case."""
    await case_handle(client, loan_id).signal("payment_received", payment)


async def send_promise(client: Client, loan_id: str, promise: PromiseToPay | dict) -> None:
    """Signal ``promise_to_pay`` to ``loan_id``'s case."""
    await case_handle(client, loan_id).signal("promise_to_pay", promise)


async def case_status(client: Client, loan_id: str) -> CaseStatus:
    """Query ``status`` of ``loan_id``'s case."""
    return await case_handle(client, loan_id).query("status", result_type=CaseStatus)
