"""Client helpers for engineers: connect, open a case, send payments and promises, read status.

Used by ``starter.py``, the benchmark and the tests; any Temporal client in any language can do
the same with CONTRACT.md's JSON shapes.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel.numbers import get_currency_precision
from pydantic import ValidationError
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.runtime import Runtime

from collections_domain.rules import calendar
from collections_domain.rules import ladder
from collections_domain.case import search_attributes as sa
from collections_domain.case.contract import (
    BreathingSpace,
    WORKFLOW_TYPE,
    CaseInput,
    CaseStatus,
    CaseStop,
    CeaseContact,
    ContactOutcome,
    ContactOutcomeReport,
    DisputeOpened,
    DisputeResolved,
    Hardship,
    InstalmentDue,
    LoanInstalment,
    PaymentReceived,
    PlanAccepted,
    PlanProposal,
    PromiseToPay,
    describe_errors,
    workflow_id_for,
)
from collections_domain.store.models import CallAttemptRecord, ContactAttempt, ContactNote, ContactOutcomeRecord, HandOffEventRecord, RejectedUpdate
from collections_domain.rules.policy import CollectionPolicy, PolicyRegistry
from collections_domain.ops.connection import (
    CONNECT_TIMEOUT_SECONDS,
    TemporalConnectionError,
    connection_problem,
    converter_for,
    tls_config,
)
from collections_domain.ops.settings import Settings, get_settings
from collections_domain.rules.validation import case_input_problems, due_date_problem


async def connect(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Client:
    """A client for ``TEMPORAL_ADDRESS``/``TEMPORAL_NAMESPACE`` with the project's data converter
    (pydantic JSON, encrypted with the payload key ring unless ``PAYLOAD_ENCRYPTION=false``), over
    TLS or mTLS when the ``TEMPORAL_TLS*`` settings say so, with ``TEMPORAL_API_KEY`` when set
    (``ops.connection``).

    ``runtime``: the Temporal runtime (``observability.configure_runtime``, which exports
    Prometheus metrics); the SDK's default runtime when ``None``.

    Raises:
        TemporalConnectionError: the server cannot be reached, wants TLS, is not trusted, refused
            this process's certificate or credentials, or did not answer within
            ``CONNECT_TIMEOUT_SECONDS``; one line naming what is wrong and the setting to check.
        KeyRingError, TlsSettingsError: a payload key or TLS setting breaks a rule (checked before
            anything is sent).
    """
    settings = settings or get_settings()
    tls = tls_config(settings)
    converter = converter_for(settings)
    try:
        return await asyncio.wait_for(
            Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=converter,
                tls=tls,
                api_key=settings.temporal_api_key,
                runtime=runtime,
            ),
            CONNECT_TIMEOUT_SECONDS,
        )
    except TimeoutError:
        raise TemporalConnectionError(connection_problem(settings, None)) from None
    except RuntimeError as err:  # the SDK raises RuntimeError for connection failures
        # The diagnosis may open a TLS connection of its own: off the event loop.
        raise TemporalConnectionError(await asyncio.to_thread(connection_problem, settings, err)) from err


def money(amount_minor: int, currency: str) -> str:
    """``CNY 25,000.00``: minor units shown in the currency's own precision (for people, not
    for parsing)."""
    digits = get_currency_precision(currency)
    return f"{currency} {Decimal(amount_minor).scaleb(-digits):,.{digits}f}"


def static_summary(case: CaseInput, *, now: datetime | None = None, policy: CollectionPolicy | None = None) -> str:
    """The one-line summary the Temporal UI shows for a case: loan, amount, the DPD and ladder
    stage it opens at (with ``policy``), jurisdiction. Ids, amounts and dates only: no
    personal data. The current stage is the ``CollectionStage`` search attribute and the
    current details."""
    opening = ""
    if policy is not None:
        now = now or datetime.now(UTC)
        dpd = calendar.days_past_due(case.oldest_due_date, now, case.timezone)
        pos = ladder.position(
            policy,
            currency=case.currency,
            oldest_due_date=case.oldest_due_date,
            tz_name=case.timezone,
            last_rung_days=0,
            outstanding_minor=case.overdue_minor,
            now=now,
        )
        opening = f" · opens at DPD {dpd}, stage {pos.step.name if pos.step else 'identified'}"
    return (
        f"Loan {case.loan_id} · {money(case.overdue_minor, case.currency)} overdue since "
        f"{case.oldest_due_date}{opening} · {case.jurisdiction}" + (f" {case.region}" if case.region else "")
    )


def static_details(case: CaseInput) -> str:
    """The markdown the Temporal UI shows under a case's summary: the instalments it opens with,
    by component, and any payments that came with it (ids, amounts, dates: no personal data)."""
    lines = case.loan_instalments()
    total = {part: sum(getattr(line, f"{part}_minor") for line in lines)
             for part in ("principal", "interest", "fees", "penalty")}
    amounts = ", ".join(f"{part} {money(amount, case.currency)}" for part, amount in total.items()
                        if amount or part != "penalty")
    text = (
        f"Collections case for loan **{case.loan_id}** (borrower id {case.borrower_id}).\n\n"
        f"{len(lines)} instalment{'s' if len(lines) != 1 else ''} due, the oldest on {case.oldest_due_date}: "
        f"{amounts} ({case.timezone}, {case.jurisdiction} rules"
        + (f", portfolio {case.portfolio}" if case.portfolio else "") + ")."
    )
    if case.payments:
        paid = sum(p.amount_minor for p in case.payments)
        text += f"\n\n{len(case.payments)} payment(s) already made: {money(paid, case.currency)}."
    if case.reopened_from:
        text += f"\n\nRe-opened from {case.reopened_from}."
    return text


@lru_cache(maxsize=4)
def _default_policies(policy_path: str | None) -> PolicyRegistry:
    return PolicyRegistry.from_settings(policy_path)


def with_instalments(case: CaseInput) -> CaseInput:
    """``case`` with its instalments listed (the contract's original shape, one oldest due date
    and its amounts, becomes its one instalment): what this project's clients send, so that a new
    case needs no marker to choose the case core."""
    if case.instalments:
        return case
    return case.model_copy(update={"instalments": case.loan_instalments()})


async def start_case(
    client: Client,
    case: CaseInput,
    *,
    task_queue: str | None = None,
    first_payment: PaymentReceived | None = None,
    start_signal: tuple[str, Any] | None = None,
    policies: PolicyRegistry | None = None,
    now: datetime | None = None,
) -> WorkflowHandle:
    """Open ``case`` (or return the running one: starting twice is a no-op).

    The input is sent in its instalment form (``with_instalments``). With ``first_payment`` (or
    any ``start_signal``, ``(name, payload)``), uses signal-with-start so that the signal is
    applied before any step (a reversal sent this way re-opens an ended case it names).
    ``policies`` are the ones the input is checked against (default: this process's settings;
    the worker checks again against its own). With ``now`` (the caller's clock, UTC), a due
    date after the borrower's local today is refused here too; the workflow always checks it
    against its own clock.

    Raises:
        ValueError: ``case`` breaks an input rule (checked here before anything is sent), naming
            every field and rule.
    """
    policies = policies or _default_policies(get_settings().collections_policy)
    problems = case_input_problems(case, policies)
    problem = due_date_problem(case, now) if (now is not None and not problems) else None
    if problems or problem:
        raise ValueError("; ".join(problems or [problem]))
    case = with_instalments(case)
    extra: dict[str, Any] = {}
    if first_payment is not None:
        start_signal = ("payment_received", first_payment)
    if start_signal is not None:
        extra = {"start_signal": start_signal[0], "start_signal_args": [start_signal[1]]}
    return await client.start_workflow(
        WORKFLOW_TYPE,
        case,
        id=case.workflow_id,
        task_queue=task_queue or get_settings().temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=sa.TypedSearchAttributes(
            sa.case_pairs(
                loan_id=case.loan_id,
                stage="identified",
                overdue_since=calendar.overdue_since(case.oldest_due_date, case.timezone),
                outstanding_minor=case.overdue_minor,
                jurisdiction=case.jurisdiction,
                outcome=None,
            )
            + ([sa.SearchAttributePair(sa.REGION, case.region)] if case.region else [])
        ),
        static_summary=static_summary(case, now=now, policy=policies.get(case.policy_version)),
        static_details=static_details(case),
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


class UpdateRejected(ValueError):
    """The case refused an update (``propose_plan``, ``record_contact_outcome``); the message
    names the field and the rule. The refusal is also written to ``rejected_updates``."""


def _update_failure(err: WorkflowUpdateFailedError) -> str:
    cause: BaseException | None = err.cause
    message = str(err)
    while cause is not None:
        text = getattr(cause, "message", None) or str(cause)
        if text:
            message = text
        cause = cause.__cause__
    return message


def _log_rejected_update(engine, *, loan_id: str, update_name: str, update_ref: str, reason: str, payload: dict) -> None:
    with Session(engine) as db:
        db.add(
            RejectedUpdate(
                workflow_id=workflow_id_for(loan_id),
                loan_id=loan_id,
                update_name=update_name,
                update_ref=update_ref[:200],
                reason=reason,
                payload_json=json.dumps(payload, default=str, sort_keys=True),
                rejected_at=datetime.now(UTC),
            )
        )
        db.commit()


async def _execute_update(client: Client, loan_id: str, name: str, payload, result_type, ref_field: str, engine):
    """Run update ``name``; on refusal log it (with ``engine``) and raise ``UpdateRejected``."""
    try:
        return await case_handle(client, loan_id).execute_update(name, payload, result_type=result_type)
    except WorkflowUpdateFailedError as err:
        reason = _update_failure(err)
        if engine is not None:
            as_dict = payload if isinstance(payload, dict) else {"payload": payload}
            _log_rejected_update(
                engine,
                loan_id=loan_id,
                update_name=name,
                update_ref=str(as_dict.get(ref_field, "")),
                reason=reason,
                payload=as_dict,
            )
        raise UpdateRejected(reason) from err


async def propose_plan(client: Client, loan_id: str, proposal: PlanProposal | dict, *, engine=None) -> PlanAccepted:
    """Send update ``propose_plan`` to ``loan_id``'s case and return the accepted schedule.

    Raises:
        UpdateRejected: the case's validator refused it (the field and the rule); the refusal is
            logged in ``rejected_updates`` when ``engine`` (the product database) is given.
        RPCError: no such case, or no worker answered.
    """
    payload = proposal.model_dump(mode="json", exclude_none=True) if isinstance(proposal, PlanProposal) else proposal
    return await _execute_update(client, loan_id, "propose_plan", payload, PlanAccepted, "plan_id", engine)


async def record_contact_outcome(
    client: Client, loan_id: str, report: ContactOutcomeReport | dict, *, note: str | None = None, engine=None
) -> ContactOutcome:
    """Send update ``record_contact_outcome`` for an agent task; store ``note`` (free text, may
    hold personal data) in ``contact_notes`` only, never in the workflow.

    Raises:
        UpdateRejected: refused (logged in ``rejected_updates`` when ``engine`` is given).
        ValueError: a ``note`` without ``engine`` (it would have nowhere to go).
    """
    if note and engine is None:
        raise ValueError("note: needs the product database (engine) to be stored")
    payload = report.model_dump(mode="json", exclude_none=True) if isinstance(report, ContactOutcomeReport) else report
    recorded = await _execute_update(
        client, loan_id, "record_contact_outcome", payload, ContactOutcome, "task_key", engine
    )
    if note:
        with Session(engine) as db:
            db.add(
                ContactNote(
                    loan_id=loan_id,
                    task_key=recorded.task_key,
                    agent_id=recorded.agent_id or "",
                    note=note,
                    written_at=datetime.now(UTC),
                )
            )
            db.commit()
    return recorded


#: Signals that pause or stop a case, with the model of their payload.
CASE_SIGNALS = {
    "dispute_opened": DisputeOpened,
    "dispute_resolved": DisputeResolved,
    "cease_contact": CeaseContact,
    "hardship": Hardship,
    "bankruptcy": CaseStop,
    "deceased": CaseStop,
    "breathing_space": BreathingSpace,
}


async def send_case_signal(client: Client, loan_id: str, name: str, payload: dict) -> None:
    """Send one of ``CASE_SIGNALS`` to ``loan_id``'s case after checking its payload here.

    Raises:
        ValueError: unknown signal, or a payload that breaks its model (field and rule).
    """
    model = CASE_SIGNALS.get(name)
    if model is None:
        raise ValueError(f"signal: must be one of {', '.join(CASE_SIGNALS)}, got {name!r}")
    try:
        checked = model.model_validate(payload)
    except ValidationError as err:
        raise ValueError("; ".join(describe_errors(err))) from err
    await case_handle(client, loan_id).signal(name, checked)


def contact_history(engine, loan_id: str) -> list[dict]:
    """Every contact of a loan from the database, oldest first: attempts (SMS, email, agent
    tasks, letters, hand-offs), agent task outcomes with their notes, logged calls (agents,
    agencies, the dialer) and hand-off states.

    Returns dicts ``{at, kind, what, status, detail}``; instants are UTC.
    """
    rows: list[dict] = []
    with Session(engine) as db:
        for attempt in db.exec(select(ContactAttempt).where(ContactAttempt.loan_id == loan_id)):
            rows.append(
                {
                    "at": attempt.created_at,
                    "kind": "contact",
                    "what": f"{attempt.step}: {attempt.action} ({attempt.channel})",
                    "status": attempt.status,
                    "detail": attempt.last_error or attempt.idempotency_key,
                }
            )
        notes: dict[str, list[str]] = {}
        for note in db.exec(select(ContactNote).where(ContactNote.loan_id == loan_id)):
            notes.setdefault(note.task_key, []).append(f"{note.agent_id}: {note.note}")
        for outcome in db.exec(select(ContactOutcomeRecord).where(ContactOutcomeRecord.loan_id == loan_id)):
            extra = [f"promise {outcome.promise_id}" if outcome.promise_id else "", f"dispute {outcome.dispute_id}" if outcome.dispute_id else ""]
            rows.append(
                {
                    "at": outcome.recorded_at,
                    "kind": "outcome",
                    "what": f"{outcome.action} outcome" + (f" by {outcome.agent_id}" if outcome.agent_id else ""),
                    "status": outcome.outcome,
                    "detail": "; ".join([e for e in extra if e] + notes.get(outcome.task_key, [])) or outcome.task_key,
                }
            )
        for call in db.exec(select(CallAttemptRecord).where(CallAttemptRecord.loan_id == loan_id)):
            rows.append(
                {
                    "at": call.attempted_at,
                    "kind": "call",
                    "what": f"call by {call.source}" + (f" to number {call.phone_number_id}" if call.phone_number_id else ""),
                    "status": "connected" if call.connected else "unanswered",
                    "detail": call.attempt_key,
                }
            )
        for event in db.exec(select(HandOffEventRecord).where(HandOffEventRecord.loan_id == loan_id)):
            rows.append(
                {
                    "at": event.recorded_at,
                    "kind": event.hand_off,
                    "what": event.child_workflow_id,
                    "status": event.status,
                    "detail": event.reason or (str(event.occurred_on) if event.occurred_on else ""),
                }
            )
    for row in rows:
        if row["at"].tzinfo is None:  # SQLite returns naive UTC
            row["at"] = row["at"].replace(tzinfo=UTC)
    return sorted(rows, key=lambda row: row["at"])


#: Input fields a case carries along rather than describes the loan with.
CARRIED_FIELDS = {"resume", "core", "instalments", "payments", "opening_reason", "reopened_from"}


async def input_differences(client: Client, handle: WorkflowHandle, case: CaseInput) -> list[str]:
    """Fields of ``case`` whose values differ from the running case's own input, as
    ``"field: running X, given Y"`` strings (the input is decoded with ``client``'s data
    converter: it is encrypted at rest)."""
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    original: dict = {}
    if started.input.payloads:
        (original,) = await client.data_converter.decode(list(started.input.payloads)[:1], [dict])
    # The loan's own fields; its instalments are compared by ``missing_instalments``.
    wanted = json.loads(case.model_dump_json(exclude=CARRIED_FIELDS))
    return [
        f"{name}: running {original.get(name)!r}, given {value!r}"
        for name, value in wanted.items()
        if original.get(name) != value
    ]


async def failure_of(handle: WorkflowHandle) -> str:
    """The failure message a closed case ended with, or its status name (``completed``...)."""
    from temporalio.api.enums.v1 import EventType

    history = await handle.fetch_history()
    last = history.events[-1]
    if last.HasField("workflow_execution_failed_event_attributes"):
        return last.workflow_execution_failed_event_attributes.failure.message
    return EventType.Name(last.event_type).removeprefix("EVENT_TYPE_WORKFLOW_EXECUTION_").lower()


async def missing_instalments(client: Client, case: CaseInput) -> list[LoanInstalment]:
    """The instalments of ``case`` that the loan's running case lacks (by ``instalment_id``)."""
    running = await case_status(client, case.loan_id)
    known = {line.instalment_id for line in running.ledger.lines} if running.ledger else set()
    if not running.ledger:  # a case from before the loan ledger: its one instalment is its due date
        known = {f"due-{running.oldest_due_date.isoformat()}"}
    return [line for line in with_instalments(case).instalments if line.instalment_id not in known]


async def send_instalment(client: Client, loan_id: str, instalment: InstalmentDue | LoanInstalment) -> None:
    """Signal ``instalment_due`` to ``loan_id``'s case."""
    payload = instalment if isinstance(instalment, InstalmentDue) else InstalmentDue(**instalment.model_dump())
    await case_handle(client, loan_id).signal("instalment_due", payload)
