"""Collections cases: list them through Temporal visibility, read one's status and contact
history, open one, and post payments, promises, other signals, plans and contact outcomes."""

import asyncio
import base64
import binascii
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import keys
from api.deps import (
    refuse_parameters,
    RPC_TIMEOUT,
    IdempotencyKey,
    LoanPath,
    check_list_parameters,
    client_of,
    engine_of,
    fail_if_running,
    policies_of,
    require,
    rpc_problem,
    running_status,
    status_url,
)
from api.idempotency import run_idempotent
from api.problems import FieldProblem, ProblemError, field_problems, invalid_input, problem_responses
from api.schemas import (
    CaseList,
    CaseOpenRequest,
    CaseRef,
    CaseSummary,
    ContactHistory,
    ContactOutcomeRequest,
    ContactRow,
    PaymentRequest,
    PlanRequest,
    PromiseRequest,
    SignalAccepted,
)
from collections_domain.case import search_attributes as sa
from collections_domain.case.contract import (
    REGION_PATTERN,
    SIGNAL_ID_FIELD,
    WORKFLOW_TYPE,
    CaseInput,
    CaseStatus,
    ContactOutcome,
    Outcome,
    PaymentReceived,
    PlanAccepted,
    PromiseToPay,
    describe_errors,
)
from collections_domain.client import (
    CASE_SIGNALS,
    UpdateRejected,
    case_handle,
    contact_history,
    failure_of,
    input_differences,
    missing_instalments,
    propose_plan,
    record_contact_outcome,
    send_case_signal,
    send_instalment,
    start_case,
)
from collections_domain.portfolio.loan_book import BookConflict
from collections_domain.portfolio.servicing import Delivery, deliver_payment
from collections_domain.ops.logs import get_logger
from collections_domain.rules.validation import case_input_problems, due_date_problem
from collections_domain.store.reconciliation import PaymentConflict, ended_case_problem

log = get_logger("api")

router = APIRouter()

read = Depends(require("read"))
write = Depends(require("write"))

#: How long ``POST /v1/cases`` waits for the worker's first answer (a refused input fails the run).
OPEN_CHECK_SECONDS = 3.0

SignalName = Literal["dispute_opened", "dispute_resolved", "cease_contact", "hardship", "bankruptcy", "deceased", "breathing_space"]

LIST_PARAMETERS = ("stage", "outcome", "jurisdiction", "region", "min_outstanding_minor", "max_outstanding_minor",
                   "execution_status", "page_size", "page_token")

PAGE_TOKEN_RULE = "page_token: must be a next_page_token this API returned for the same filters"


# -- listing and reading --------------------------------------------------------------------


def _visibility_query(stage, outcome, jurisdiction, region, min_outstanding_minor, max_outstanding_minor, execution_status) -> str:
    """A Temporal list filter from checked parameters (every value matched a pattern or an enum)."""
    clauses = [f'WorkflowType="{WORKFLOW_TYPE}"']
    if stage:
        clauses.append(f'{sa.COLLECTION_STAGE.name}="{stage}"')
    if outcome:
        clauses.append(f'{sa.COLLECTION_OUTCOME.name}="{outcome}"')
    if jurisdiction:
        clauses.append(f'{sa.JURISDICTION.name}="{jurisdiction}"')
    if region:
        clauses.append(f'{sa.REGION.name}="{region}"')
    if min_outstanding_minor is not None:
        clauses.append(f"{sa.OUTSTANDING_MINOR.name} >= {min_outstanding_minor}")
    if max_outstanding_minor is not None:
        clauses.append(f"{sa.OUTSTANDING_MINOR.name} <= {max_outstanding_minor}")
    if execution_status == "running":
        clauses.append('ExecutionStatus="Running"')
    elif execution_status == "closed":
        clauses.append('ExecutionStatus!="Running"')
    return " AND ".join(clauses)


def _page_token(raw: bytes, query: str) -> str:
    """Temporal's page token, tied to ``query`` by a digest so that a token from another filter
    or a made-up one is refused here (422) instead of reaching the server."""
    digest = hashlib.sha256(query.encode() + b"\0" + raw).digest()[:12]
    return base64.urlsafe_b64encode(digest + raw).decode().rstrip("=")


def _read_page_token(token: str, query: str) -> bytes:
    """The Temporal page token inside ``token``. Raises ProblemError (422) when it is not one of ours."""
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as err:
        raise invalid_input([PAGE_TOKEN_RULE]) from err
    digest, raw = blob[:12], blob[12:]
    if not raw or hashlib.sha256(query.encode() + b"\0" + raw).digest()[:12] != digest:
        raise invalid_input([PAGE_TOKEN_RULE])
    return raw


def _summary(execution) -> CaseSummary:
    attrs = execution.typed_search_attributes
    return CaseSummary(
        loan_id=attrs.get(sa.LOAN_ID),
        workflow_id=execution.id,
        run_id=execution.run_id,
        execution_status=execution.status.name.lower() if execution.status else "unknown",
        stage=attrs.get(sa.COLLECTION_STAGE),
        outstanding_minor=attrs.get(sa.OUTSTANDING_MINOR),
        jurisdiction=attrs.get(sa.JURISDICTION),
        region=attrs.get(sa.REGION),
        outcome=attrs.get(sa.COLLECTION_OUTCOME),
        overdue_since=attrs.get(sa.OVERDUE_SINCE),
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


@router.get("/v1/cases", response_model=CaseList, tags=["cases"], responses=problem_responses(403, 503))
async def list_cases(
    request: Request,
    _: Annotated[keys.Principal, read],
    stage: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$", description="CollectionStage, e.g. deep, legal.")] = None,
    outcome: Annotated[Outcome | None, Query(description="CollectionOutcome of closed cases.")] = None,
    jurisdiction: Annotated[Literal["CN", "US", "UK"] | None, Query()] = None,
    region: Annotated[str | None, Query(pattern=REGION_PATTERN, description="Region (ISO 3166-2), e.g. CN-SH.")] = None,
    min_outstanding_minor: Annotated[int | None, Query(ge=0, le=9_007_199_254_740_991)] = None,
    max_outstanding_minor: Annotated[int | None, Query(ge=0, le=9_007_199_254_740_991)] = None,
    execution_status: Annotated[Literal["running", "closed", "all"], Query()] = "all",
    page_size: Annotated[int, Query(ge=1, le=100)] = 50,
    page_token: Annotated[str | None, Query(max_length=4000, pattern=r"^[A-Za-z0-9_-]+$",
                                            description="next_page_token of the previous page.")] = None,
) -> CaseList:
    """Cases by stage, outcome, jurisdiction, region and outstanding amount, from Temporal
    visibility (search attributes; newest first). "Deep collection over 10,000 yuan in
    Shanghai": ``?stage=deep&region=CN-SH&min_outstanding_minor=1000001``. Needs scope ``read``."""
    check_list_parameters(request, LIST_PARAMETERS)
    query = _visibility_query(stage, outcome, jurisdiction, region, min_outstanding_minor, max_outstanding_minor,
                              execution_status)
    token = _read_page_token(page_token, query) if page_token else None
    client = await client_of(request)
    iterator = client.list_workflows(query, page_size=page_size, next_page_token=token, rpc_timeout=RPC_TIMEOUT)
    try:
        await iterator.fetch_next_page(page_size=page_size)
    except RPCError as err:
        if token and err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.UNKNOWN):
            raise invalid_input([PAGE_TOKEN_RULE]) from err
        raise rpc_problem(err, "") from err
    cases = [_summary(execution) for execution in iterator.current_page or []]
    next_token = iterator.next_page_token
    return CaseList(query=query, cases=cases, next_page_token=_page_token(next_token, query) if next_token else None)


async def _closed_case_status(client: Client, handle, loan_id: str, status: WorkflowExecutionStatus) -> CaseStatus:
    """The result of the loan's last completed run; 404 naming how the last run ended if none completed."""
    # A refused reopen (or a terminated run) must not hide the case's last result.
    async for execution in client.list_workflows(
        f'WorkflowId="{handle.id}" AND ExecutionStatus="Completed"', limit=1, rpc_timeout=RPC_TIMEOUT
    ):
        return await client.get_workflow_handle(handle.id, run_id=execution.run_id,
                                                result_type=CaseStatus).result(rpc_timeout=RPC_TIMEOUT)
    raise ProblemError(404, "not-found",
                       f"loan_id: the last case of loan {loan_id!r} {status.name.lower()}: "
                       f"{await failure_of(handle)}")


@router.get("/v1/cases/{loan_id}", response_model=CaseStatus, tags=["cases"], responses=problem_responses(403, 404, 503),
            dependencies=[Depends(refuse_parameters)])
async def get_case(request: Request, loan_id: LoanPath, _: Annotated[keys.Principal, read]) -> CaseStatus:
    """The case's status (CONTRACT.md "Query status"): stage, DPD, outstanding, promises,
    steps, next step, rejected signals, plans, pauses, hand-offs, compliance decisions.
    A closed case answers with its result. Needs scope ``read``."""
    client = await client_of(request)
    handle = case_handle(client, loan_id)
    try:
        described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        if described.status == WorkflowExecutionStatus.COMPLETED:
            return await handle.result(rpc_timeout=RPC_TIMEOUT)
        if described.status != WorkflowExecutionStatus.RUNNING:
            return await _closed_case_status(client, handle, loan_id, described.status)
        return await handle.query("status", result_type=CaseStatus, rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED) or "Timeout" in err.message:
            raise ProblemError(503, "temporal-unavailable",
                               f"no worker answered the status query within {RPC_TIMEOUT.seconds} s: the workers "
                               "are busy (e.g. catching up after a start) or not running; retry shortly",
                               headers={"Retry-After": "5"}) from err
        raise rpc_problem(err, loan_id) from err


@router.get("/v1/cases/{loan_id}/contacts", response_model=ContactHistory, tags=["cases"],
            responses=problem_responses(403),
            dependencies=[Depends(refuse_parameters)])
async def get_contacts(request: Request, loan_id: LoanPath, _: Annotated[keys.Principal, read]) -> ContactHistory:
    """Every contact of the loan from the database, oldest first: SMS, email, agent tasks,
    letters, hand-offs, agents' outcomes with their notes, logged calls (empty for a loan
    nobody contacted yet). Needs scope ``read``."""
    rows = await asyncio.to_thread(contact_history, engine_of(request), loan_id)
    return ContactHistory(loan_id=loan_id, contacts=[ContactRow(**row) for row in rows])


# -- writes ---------------------------------------------------------------------------------


def _rejection(err: UpdateRejected) -> ProblemError:
    message = str(err)
    return ProblemError(422, "rejected-by-case", message, field_problems([message]))


async def _first_answer(handle, timeout_seconds: float = OPEN_CHECK_SECONDS) -> str:
    """Wait briefly for the worker's first workflow task: ``"running"`` once it completed,
    ``"pending"`` when no worker took it in ``timeout_seconds``, else the failure message of a
    run the worker refused."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while True:
        described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        if described.status not in (None, WorkflowExecutionStatus.RUNNING):
            return await failure_of(handle) if described.status == WorkflowExecutionStatus.FAILED else described.status.name.lower()
        history = await handle.fetch_history()
        if any(event.HasField("workflow_task_completed_event_attributes") for event in history.events):
            return "running"
        if asyncio.get_running_loop().time() > deadline:
            return "pending"
        await asyncio.sleep(0.2)


def _checked_case(request: Request, body: CaseOpenRequest) -> CaseInput:
    """The case input of ``body``. Raises ProblemError (422) naming each rule it breaks."""
    case = CaseInput.model_validate(body.model_dump())
    problems = case_input_problems(case, policies_of(request))
    if not problems:
        problems = [p for p in [due_date_problem(case, datetime.now(UTC))] if p]
    if problems:
        raise invalid_input(problems)
    return case


async def _running_case_ref(client: Client, case: CaseInput) -> CaseRef:
    """The reference of the loan's running case (``created=False``), how ``case`` differs from it,
    and the instalments of ``case`` it lacked (sent to it now as ``instalment_due``)."""
    handle = case_handle(client, case.loan_id)
    described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    forwarded = []
    if case.instalments:
        for line in await missing_instalments(client, case):
            await send_instalment(client, case.loan_id, line)
            forwarded.append(line.instalment_id)
    return CaseRef(loan_id=case.loan_id, workflow_id=case.workflow_id, run_id=described.run_id,
                   created=False, differences=await input_differences(client, handle, case), forwarded_instalments=forwarded,
                   status_url=status_url(case.loan_id))


async def _open(request: Request, principal: keys.Principal, body: CaseOpenRequest) -> tuple[int, CaseRef]:
    """Open the case of ``body`` (``open_case``'s answer before idempotency).

    Temporal decides who opened it: the start fails when the case is already running
    (``deps.fail_if_running``), so of concurrent opens exactly one is told ``created`` and the
    others 200 with the running case (a look at the status first would let two both start it).
    """
    case = _checked_case(request, body)
    client = await client_of(request)
    try:
        if await running_status(client, case.loan_id) == WorkflowExecutionStatus.RUNNING:
            return 200, await _running_case_ref(client, case)
        ended = await asyncio.to_thread(ended_case_problem, engine_of(request), case)
        if ended:
            raise ProblemError(409, "conflict", f"the case did not open: {ended}", field_problems([ended]))
        try:
            with fail_if_running():
                handle = await start_case(client, case, task_queue=request.app.state.settings.temporal_task_queue,
                                          policies=policies_of(request), now=datetime.now(UTC))
        except WorkflowAlreadyStartedError:
            return 200, await _running_case_ref(client, case)
        except ValueError as err:
            raise invalid_input([str(err)]) from err
        answer = await _first_answer(handle)
    except RPCError as err:
        raise rpc_problem(err, case.loan_id) from err
    if answer not in ("running", "pending", "completed"):
        refusal = answer.removeprefix("invalid case input: ")
        raise ProblemError(409, "conflict", f"the case did not open: {refusal}", field_problems(refusal.split("; ")))
    log.info("api.case.opened", loan_id=case.loan_id, workflow_id=case.workflow_id, key_id=principal.key_id,
             pending=answer == "pending")
    return (202 if answer == "pending" else 201), CaseRef(
        loan_id=case.loan_id, workflow_id=case.workflow_id, run_id=handle.result_run_id or "", created=True,
        pending=answer == "pending", status_url=status_url(case.loan_id))


@router.post("/v1/cases", status_code=201, response_model=CaseRef, tags=["cases"],
             responses={200: {"model": CaseRef, "description": "The loan's case was already running; nothing changed."},
                        202: {"model": CaseRef, "description": "Started; no worker has taken it yet (pending)."},
                        **problem_responses(403, 409, 503)})
async def open_case(request: Request, body: CaseOpenRequest, idempotency_key: IdempotencyKey,
                    principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """Open a collections case (workflow ``collection-<loan_id>``). 201 when it opened, 200
    when it was already running (nothing changes; ``differences`` lists given values that
    differ), 202 when no worker has taken it yet (``pending``; the worker still checks it),
    409 when the case of that loan and due date already ended or the worker refused it,
    422 naming the field and rule an input breaks. Needs scope ``write``."""

    async def produce():
        return await _open(request, principal, body)

    return await run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body=body, produce=produce)


def _accepted(delivery: Delivery) -> SignalAccepted:
    """The API's answer for a ``servicing.Delivery``."""
    url = (f"/v1/reconciliation/payments?loan_id={delivery.loan_id}" if delivery.status == "held_for_reconciliation"
           else f"/v1/loans/{delivery.loan_id}" if delivery.status == "recorded_in_book" else status_url(delivery.loan_id))
    return SignalAccepted(loan_id=delivery.loan_id, signal=delivery.signal, id=delivery.id, status=delivery.status,
                          reason=delivery.reason, detail=delivery.detail, status_url=url)


async def deliver(request: Request, send) -> tuple[int, SignalAccepted]:
    """Run ``send(client, engine, policy)`` (a ``portfolio.servicing`` route) and answer 202; a
    known id with other values is a 409, an unknown loan or payment a 404."""
    client = await client_of(request)
    try:
        delivery = await send(client, engine_of(request), policies_of(request).current)
    except (PaymentConflict, BookConflict) as err:
        raise ProblemError(409, "conflict", str(err), field_problems([str(err)])) from err
    except LookupError as err:
        message = str(err).strip("'\"")
        raise ProblemError(404, "not-found", message, field_problems([message])) from err
    except ValueError as err:
        raise invalid_input([str(err)]) from err
    except RPCError as err:
        raise rpc_problem(err, "") from err
    if delivery.status == "held_for_reconciliation" and delivery.new and delivery.signal == "payment_received":
        request.app.state.metrics.payments_held.labels(delivery.reason or "").inc()
        log.warning("api.payment.held", loan_id=delivery.loan_id, payment_id=delivery.id, reason=delivery.reason)
    return 202, _accepted(delivery)


async def _pay(request: Request, principal: keys.Principal, loan_id: str, body: PaymentRequest) -> tuple[int, SignalAccepted]:
    """Route the payment: the running case, the loan book, or held (``servicing.deliver_payment``)."""
    payment = PaymentReceived(**body.model_dump())
    return await deliver(request, lambda client, engine, policy: deliver_payment(
        client, engine, policy, loan_id, payment, api_key_id=principal.key_id))


@router.post("/v1/cases/{loan_id}/payments", status_code=202, response_model=SignalAccepted, tags=["payments"],
             responses=problem_responses(403, 409, 503))
async def post_payment(request: Request, loan_id: LoanPath, body: PaymentRequest, idempotency_key: IdempotencyKey,
                       principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """A payment received (signal ``payment_received``), applied once per ``payment_id`` as of
    its ``paid_at``. 202 ``delivered``: the case applies it, or rejects it with the rule listed
    in its ``rejected_signals``. 202 ``recorded_in_book``: no case is open, the loan book applied
    it. 202 ``held_for_reconciliation``: no case is running and the loan is not in the book; the
    payment is stored in ``unmatched_payments`` and listed by ``GET /v1/reconciliation/payments``.
    The same as ``POST /v1/loans/{loan_id}/payments``. Needs scope ``write``."""

    async def produce():
        return await _pay(request, principal, loan_id, body)

    return await run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body=body, produce=produce)


async def _signal(request: Request, principal: keys.Principal, idempotency_key: str, loan_id: str, name: str,
                  payload, signal_id: str, body) -> JSONResponse:
    """Deliver signal ``name`` to the loan's running case (404 when none runs)."""

    async def produce():
        client = await client_of(request)
        try:
            status = await running_status(client, loan_id)
            if status != WorkflowExecutionStatus.RUNNING:
                what = "was never opened" if status is None else "has closed"
                raise ProblemError(404, "not-found", f"loan_id: the collections case of loan {loan_id!r} {what}",
                                   field_problems([f"loan_id: the collections case of loan {loan_id!r} {what}"]))
            if name in CASE_SIGNALS:
                await send_case_signal(client, loan_id, name, payload.model_dump(mode="json"))
            else:
                await case_handle(client, loan_id).signal(name, payload, rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            raise rpc_problem(err, loan_id) from err
        return 202, SignalAccepted(loan_id=loan_id, signal=name, id=signal_id, status="delivered",
                                   status_url=status_url(loan_id),
                                   detail="the case applies it once per id, or lists it with the rule under rejected_signals")

    return await run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body=body, produce=produce)


@router.post("/v1/cases/{loan_id}/promises", status_code=202, response_model=SignalAccepted, tags=["cases"],
             responses=problem_responses(403, 404, 503))
async def post_promise(request: Request, loan_id: LoanPath, body: PromiseRequest, idempotency_key: IdempotencyKey,
                       principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """A promise to pay (signal ``promise_to_pay``). 202 ``delivered``: the case opens it or
    lists it with the rule under ``rejected_signals`` (in the past, above the outstanding,
    beyond the policy's horizon, another open, two broken). 404: no running case. Needs
    scope ``write``."""
    return await _signal(request, principal, idempotency_key, loan_id, "promise_to_pay",
                         PromiseToPay(**body.model_dump()), body.promise_id, body)


@router.post("/v1/cases/{loan_id}/signals/{signal_name}", status_code=202, response_model=SignalAccepted, tags=["cases"],
             responses=problem_responses(403, 404, 503))
async def post_signal(request: Request, loan_id: LoanPath, signal_name: SignalName, body: dict[str, Any],
                      idempotency_key: IdempotencyKey, principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """A pause or stop (CONTRACT.md "Additions"): ``dispute_opened`` {dispute_id, reason_code},
    ``dispute_resolved`` {dispute_id, resolution, corrected_outstanding_minor},
    ``cease_contact`` {request_id}, ``hardship`` {hardship_id}, ``bankruptcy`` / ``deceased``
    {notice_id}, ``breathing_space`` {breathing_space_id}. Needs scope ``write``."""
    model = CASE_SIGNALS[signal_name]
    try:
        checked = model.model_validate(body)
        extra = sorted(set(body) - set(model.model_fields))
        if extra:
            raise invalid_input([f"{name}: not a field of {signal_name}" for name in extra])
    except ValidationError as err:
        raise invalid_input(describe_errors(err)) from err
    signal_id = getattr(checked, SIGNAL_ID_FIELD[signal_name])
    return await _signal(request, principal, idempotency_key, loan_id, signal_name, checked, signal_id, body)


def _plan_differs(proposal: PlanRequest, accepted: PlanAccepted) -> str:
    """How ``proposal`` differs from the plan the case holds under its ``plan_id`` (the case
    answers a repeated ``plan_id`` with the plan it accepted first), or ``""``."""
    if proposal.kind != accepted.kind:
        return f"kind {accepted.kind}, proposed {proposal.kind}"
    if proposal.kind == "instalments" and proposal.instalment_dates is not None:
        dates = [i.due_date for i in accepted.instalments]
        if list(proposal.instalment_dates) != dates:
            return f"instalment_dates {', '.join(map(str, dates))}"
    if proposal.kind == "deferral" and proposal.new_due_date is not None:
        if [i.due_date for i in accepted.instalments][-1:] != [proposal.new_due_date]:
            return f"new_due_date {accepted.instalments[-1].due_date if accepted.instalments else '?'}"
    if proposal.kind == "waiver" and proposal.waive_minor is not None and proposal.waive_minor != accepted.waived_minor:
        return f"waive_minor {accepted.waived_minor}"
    return ""


async def _update_rpc_problem(client: Client, err: RPCError, loan_id: str) -> ProblemError:
    """An update's RPC error as a problem; "not found" says whether the case never ran or closed."""
    if err.status == RPCStatusCode.NOT_FOUND:
        try:
            status = await running_status(client, loan_id)
        except RPCError:
            status = None
        if status is not None:
            rule = f"the collections case of loan {loan_id!r} has closed"
            return ProblemError(404, "not-found", f"loan_id: {rule}", [FieldProblem(field="loan_id", rule=rule)])
    return rpc_problem(err, loan_id)


@router.post("/v1/cases/{loan_id}/plans", response_model=PlanAccepted, tags=["cases"],
             responses=problem_responses(403, 404, 503))
async def post_plan(request: Request, loan_id: LoanPath, body: PlanRequest, idempotency_key: IdempotencyKey,
                    principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """Propose a repayment plan (update ``propose_plan``): 200 with the accepted schedule, or
    422 ``rejected-by-case`` naming the field and the policy rule (also written to
    ``rejected_updates``). Needs scope ``write``."""

    async def produce():
        client = await client_of(request)
        try:
            accepted = await propose_plan(client, loan_id, body.model_dump(mode="json", exclude_none=True),
                                          engine=engine_of(request))
        except UpdateRejected as err:
            raise _rejection(err) from err
        except RPCError as err:
            raise await _update_rpc_problem(client, err, loan_id) from err
        differs = _plan_differs(body, accepted)
        if differs:
            rule = (f"plan {body.plan_id} was already accepted with other terms ({differs}); "
                    "a new proposal needs a new plan_id")
            raise ProblemError(409, "conflict", f"plan_id: {rule}", [FieldProblem(field="plan_id", rule=rule)])
        return 200, accepted

    return await run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body=body, produce=produce)


@router.post("/v1/cases/{loan_id}/contact-outcomes", response_model=ContactOutcome, tags=["cases"],
             responses=problem_responses(403, 404, 503))
async def post_contact_outcome(request: Request, loan_id: LoanPath, body: ContactOutcomeRequest,
                               idempotency_key: IdempotencyKey,
                               principal: Annotated[keys.Principal, write]) -> JSONResponse:
    """Record what an agent's contact achieved (update ``record_contact_outcome``) for an open
    task (``task_key`` from the case's ``open_tasks``): 200 with the recorded outcome, or 422
    ``rejected-by-case``. ``note`` goes to the database only. Needs scope ``write``."""

    async def produce():
        client = await client_of(request)
        report = body.model_dump(mode="json", exclude_none=True, exclude={"note"})
        try:
            recorded = await record_contact_outcome(client, loan_id, report, note=body.note, engine=engine_of(request))
        except UpdateRejected as err:
            raise _rejection(err) from err
        except RPCError as err:
            raise await _update_rpc_problem(client, err, loan_id) from err
        return 200, recorded

    return await run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body=body, produce=produce)
