"""The engineers' command line: open cases, load the real portfolio, send payments and promises,
read a case's status, run the dev server or the whole demo, and replay the data in a simulation.

Every command reads TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE and DATABASE_URL
(docs/CONTRACT.md, "Processes and settings"). Amounts are integers in minor units (fen, cents).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time as wallclock
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlmodel import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from typer._click import exceptions as click_errors
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from api.schemas import (
    AdjustmentRequest,
    ApiKeyRequest,
    CaseOpenRequest,
    ContactOutcomeRequest,
    InstalmentRequest,
    Instant,
    IsoDate,
    PaymentRequest,
    PlanRequest,
    PromiseRequest,
    ReversalRequest,
    ScanRequestBody,
)
from collections_domain.case.children import LegalStatusUpdate
from collections_domain.case.contract import (
    WORKFLOW_ID_PREFIX,
    CaseInput,
    CaseStatus,
    LoanInstalment,
    PaymentReceived,
    PaymentReversed,
    PromiseToPay,
    ScheduleAdjusted,
    describe_errors,
)
from collections_domain.client import (
    CASE_SIGNALS,
    UpdateRejected,
    case_handle,
    case_status,
    connect,
    contact_history,
    failure_of,
    input_differences,
    propose_plan,
    record_contact_outcome,
    send_case_signal,
    send_promise,
    start_case,
)
from collections_domain.ops import devserver
from collections_domain.ops.logs import configure_logging
from collections_domain.ops.codec import KeyRingError
from collections_domain.ops.connection import TemporalConnectionError, TlsSettingsError
from collections_domain.ops.settings import get_settings
from collections_domain.portfolio import home_credit
from collections_domain.portfolio.servicing import (
    deliver_adjustment,
    deliver_instalment,
    deliver_payment,
    deliver_reversal,
    running_run,
)
from collections_domain.rules.calendar import daytime_zone
from collections_domain.rules.validation import (
    MAX_AGE_DAYS,
    case_input_problems,
    due_date_problem,
    due_date_range_problem,
    id_problem,
    parse_minor,
    payment_entry_problem,
    time_zone_problem,
)
from collections_domain.store.db import make_engine
from collections_domain.store.models import Loan


def _one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines too) made one space."""
    return " ".join(str(text).split())


def _say_error(message: str) -> None:
    """Write ``error: <message>`` as exactly one line on stderr (no markup, no wrapping)."""
    sys.stderr.write(f"error: {_one_line(message)}\n")
    sys.stderr.flush()


def _debug() -> bool:
    """``LOG_LEVEL=DEBUG``: unexpected errors show their traceback instead of one line."""
    return os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG"


def _usage_message(err: click_errors.ClickException) -> str:
    """A Click/Typer usage error as one line naming the option: ``--limit: ... (see: ... --help)``."""
    message = err.format_message()
    if isinstance(err, click_errors.BadParameter) and not isinstance(err, click_errors.MissingParameter):
        param = getattr(err, "param", None)
        if param is not None:
            message = f"{_shown(param)}: {err.message}"
    ctx = getattr(err, "ctx", None)
    return f"{message} (see: {ctx.command_path} --help)" if ctx is not None else message


def _runtime_message(err: Exception) -> str:
    """An expected runtime failure as one line: Temporal, database, file or settings errors
    (a database error's first line only: never its statement or parameters)."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(err, RPCError):
        return f"Temporal: {err.status.name if err.status else 'error'}: {err.message}"
    if isinstance(err, SQLAlchemyError):
        first = (str(err).splitlines() or [""])[0]
        return f"database: {type(err).__name__}: {first[:300]}"
    if isinstance(err, OSError):
        return f"{err.filename or 'I/O'}: {err.strerror or err}"
    if isinstance(err, ValidationError):
        return "settings: " + "; ".join(describe_errors(err))
    if isinstance(err, TimeoutError):
        return f"timed out: {err or 'no answer in time'}"
    from collections_domain.rules.policy import PolicyError

    if isinstance(err, PolicyError):
        return f"COLLECTIONS_POLICY: {err}"
    return f"unexpected {type(err).__name__}: {str(err)[:300]} (LOG_LEVEL=DEBUG shows the traceback)"


class OneLineErrors(TyperGroup):
    """The command group: every failure ends the process with one line on stderr, never a
    traceback. Bad input (usage errors, refused values) exits 2; expected runtime failures
    (Temporal unreachable, database errors, files) exit 1; with ``LOG_LEVEL=DEBUG`` an
    unexpected exception is raised with its traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as err:  # no command given: the help, as Click shows it
            err.show()
            code = err.exit_code
        except click_errors.ClickException as err:
            _say_error(_usage_message(err))
            code = err.exit_code
        except typer.Abort:
            _say_error("aborted")
            code = 1
        except Exception as err:  # the one place every failure becomes one line
            if _debug():
                raise
            _say_error(_runtime_message(err))
            code = 1
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None, cls=OneLineErrors)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
LoanId = Annotated[str, typer.Argument(metavar="LOAN_ID", help="The loan id (the workflow id without 'collection-').")]
#: Amounts are read as text and checked by ``rules.validation.parse_minor`` (digits only), then by the API's models.
MINOR = "INTEGER"


def _me() -> str:
    """How to run this command line again, as the user ran it (for the hints we print)."""
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    return f"{python} {Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith('.py') else 'starter.py'}"


def _fail(message: str, code: int = 2) -> None:
    """Exit with ``code`` (2: bad input or a refusal) and ``message`` as one line on stderr."""
    _say_error(message)
    raise typer.Exit(code)


def _shown(param) -> str:
    """How the help names ``param``: ``--limit`` for an option, ``LOAN_ID`` for an argument."""
    return param.get_error_hint().split(" / ")[0].strip("'\"")


def _option_for(field: str, aliases: dict[str, str]) -> str:
    """The running command's name for model field ``field``: its option (``--principal-due-minor``)
    or argument (``AMOUNT_MINOR``); ``aliases`` maps a field to a parameter of another name.
    A nested field keeps its path: ``--dates[1]``, ``--add (add.0.due_date)``."""
    ctx = get_current_context(silent=True)
    params = {param.name: param for param in ctx.command.params} if ctx is not None else {}
    head, _, rest = field.partition(".")
    for key, tail in ((field, ""), (head, rest)):
        param = params.get(aliases.get(key, key))
        if param is not None:
            return _shown(param) + (f"[{tail}]" if tail.isdigit() else f" ({field})" if tail else "")
    return field


def _named(problem: str, aliases: dict[str, str] | None = None) -> str:
    """``"field: rule"`` with each field (``a + b``, ``a, b`` lists too) named as on the command line."""
    field, sep, rule = problem.partition(": ")
    names = [part for part in field.replace(" + ", ",").replace(", ", ",").split(",")]
    if not sep or any(not name or " " in name for name in names):
        return problem
    joiner = " + " if " + " in field else ", "
    return joiner.join(_option_for(name, aliases or {}) for name in names) + ": " + rule


def _refuse(problems: list[str], aliases: dict[str, str] | None = None) -> None:
    """Exit 2 with every broken rule on one line, each field named as its option or argument."""
    _fail("; ".join(_named(problem, aliases) for problem in problems))


def _request(model, aliases: dict[str, str] | None = None, **fields):
    """``model`` (the API's request model, or the contract's message) of ``fields`` (``None``
    left out, so the model's default applies), or exit 2 naming each option and rule it breaks."""
    try:
        return model.model_validate({name: value for name, value in fields.items() if value is not None})
    except ValidationError as err:
        _refuse(describe_errors(err), aliases)


def _minor(text: str | None, field: str) -> int | None:
    """An amount option or argument (minor units) as the integer the API takes, or exit 2 naming
    it (``rules.validation.parse_minor``: digits only; bounds are the request model's)."""
    if text is None:
        return None
    try:
        return parse_minor(text.strip(), field)
    except ValueError as err:
        _refuse([str(err)])


def _date(text: str, field: str) -> date:
    """A ``YYYY-MM-DD`` option as the API reads one (``api.schemas.IsoDate``), or exit 2."""
    try:
        return TypeAdapter(IsoDate).validate_python(text)
    except ValidationError as err:
        _refuse([f"{field}: {problem.partition(': ')[2] or problem}" for problem in describe_errors(err)])


def _instant(text: str, field: str) -> datetime:
    """An RFC 3339 instant with its offset, as the API reads one (``api.schemas.Instant``), or exit 2."""
    try:
        return TypeAdapter(Instant).validate_python(text)
    except ValidationError as err:
        _refuse([f"{field}: {problem.partition(': ')[2] or problem}" for problem in describe_errors(err)])


def _id(value: str | None, field: str) -> str | None:
    """``value`` when it is an id the API takes (``ID_PATTERN``), else exit 2 naming ``field``."""
    if value is not None and id_problem(value, field):
        _refuse([id_problem(value, field)])
    return value


def _loan(value: str) -> str:
    """A LOAN_ID argument (a workflow id ``collection-<loan id>`` is accepted too), checked
    against the API's id rule before anything connects."""
    return _id(_loan_id(value), "loan_id")


async def _client() -> Client:
    settings = get_settings()
    try:
        return await connect(settings)
    except (TemporalConnectionError, TlsSettingsError, KeyRingError) as err:  # says what is wrong
        _fail(str(err), code=1)
        raise
    except Exception as err:  # connection refused, bad address
        _fail(f"cannot reach Temporal at {settings.temporal_address}: {err}. Is the dev server running?", code=1)
        raise


def _rpc_message(err: RPCError, loan_id: str) -> str:
    if err.status == RPCStatusCode.NOT_FOUND:
        return f"no open case for loan {loan_id!r} (workflow collection-{loan_id} not found or already closed)"
    if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return (
            f"no answer from a worker for loan {loan_id!r} in time ({err.message}). Is worker.py running? "
            "A busy worker may take a while to pick the case up; try again in a moment."
        )
    return f"{err.status.name if err.status else 'error'}: {err.message}"


def _loan_id(value: str) -> str:
    """Accept a workflow id where a loan id is expected."""
    return value.removeprefix(WORKFLOW_ID_PREFIX) if value.startswith(WORKFLOW_ID_PREFIX) else value


# -- servers -----------------------------------------------------------------------------------


@app.command("dev-server")
def dev_server() -> None:
    """Run Temporal's dev server with the UI and the search attributes, in the foreground."""
    import subprocess

    settings = get_settings()
    command = devserver.dev_server_command(settings)
    console.print(f"Temporal dev server on {settings.temporal_address}; UI at {devserver.ui_address(settings)}")
    server = subprocess.Popen(command)
    try:
        added = asyncio.run(_server_ready(settings))
        if added:
            console.print(f"Registered search attributes missing from the saved state: {', '.join(added)}")
        raise typer.Exit(server.wait())
    except KeyboardInterrupt:
        server.terminate()
        raise typer.Exit(server.wait()) from None


@app.command()
def demo(
    loans: Annotated[int, typer.Option(min=1, help="How many real Home Credit loans to put in the loan book (most recent first); the scan opens the overdue ones' cases.")] = 600,
    anchor: Annotated[str | None, typer.Option(help="Date of the file's day 0, YYYY-MM-DD (default today, UTC).")] = None,
    exit_after_load: Annotated[bool, typer.Option(help="Stop the servers once the cases are loaded.")] = False,
) -> None:
    """The main job: dev server with UI, a worker, the HTTP API, and the real portfolio loaded. Ctrl-C stops it."""
    anchor_date = _anchor(anchor)
    settings = get_settings()
    _policies()  # a policy file that breaks a rule is named before any server starts
    configure_logging("WARNING")
    logs = Path(settings.data_dir) / "logs"
    server = devserver.spawn(devserver.dev_server_command(settings), logs / "temporal.log")
    worker = api = None
    try:
        added = asyncio.run(_server_ready(settings))
        console.print(f"Temporal dev server up on {settings.temporal_address} (log {logs / 'temporal.log'})")
        if added:
            console.print(f"Registered search attributes missing from the saved state: {', '.join(added)}")
        worker = devserver.spawn(devserver.python_command("worker.py"), logs / "worker.log")
        console.print(f"Worker started on task queue {settings.temporal_task_queue!r} (log {logs / 'worker.log'})")
        # The demo's API serves its OpenAPI docs (off by default: API_DOCS_ENABLED).
        api = devserver.spawn(devserver.python_command("starter.py") + ["api"], logs / "api.log",
                              env={"API_DOCS_ENABLED": "true"})
        _wait_for_api(settings, api, logs / "api.log")
        console.print(f"HTTP API on http://{settings.api_host}:{settings.api_port} "
                      f"(docs http://{settings.api_host}:{settings.api_port}/docs, log {logs / 'api.log'})")
        _load(limit=loans, anchor=anchor_date, csv=None)
        scan_schedules_command(zone=None)  # from now on the scan runs daily in each zone of the book
        report_schedule_command(at="06:00", zone="UTC", days=None)  # and the KPI report every morning
        wallclock.sleep(2)
        if worker.poll() is not None:
            _fail(f"the worker exited with code {worker.returncode}; see {logs / 'worker.log'}")
        console.print()
        console.print(f"[bold]Temporal UI:[/bold] {devserver.ui_address(settings)}")
        if settings.payload_encryption:
            console.print(f"Payloads are encrypted (keys: {settings.payload_keys and 'PAYLOAD_KEYS' or settings.resolved_payload_keys_file}). "
                          f"To see them in the UI: a key with scope decode ({_me()} api-key create --name me --scopes decode), "
                          f"then {devserver.codec_endpoint(settings)}/login, and 'Include cross-origin credentials' "
                          "in the UI's codec settings.")
        console.print(
            'Filter the list with a query such as  CollectionStage="legal"  or  '
            "OutstandingMinor > 1000000  or  Jurisdiction=\"US\"."
        )
        console.print(f"Drive a case from another terminal:  {_me()} --help")
        console.print(f"Collection KPIs (tables and an HTML report with charts):  {_me()} report")
        if exit_after_load:
            return
        console.print("Running. Press Ctrl-C to stop the worker and the dev server (state is kept in data/).")
        stop_event = {"stop": False}
        signal.signal(signal.SIGTERM, lambda *_: stop_event.update(stop=True))
        while not stop_event["stop"]:
            if server.poll() is not None:
                _fail(f"the dev server exited with code {server.returncode}; see {logs / 'temporal.log'}")
            if worker.poll() is not None:
                _fail(f"the worker exited with code {worker.returncode}; see {logs / 'worker.log'}")
            if api.poll() is not None:
                _fail(f"the HTTP API exited with code {api.returncode}; see {logs / 'api.log'}")
            wallclock.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (api, worker):
            if process is not None:
                devserver.stop(process)
        devserver.stop(server)
        console.print("Stopped the HTTP API, the worker and the dev server.")


async def _server_ready(settings) -> list[str]:
    """Wait for the dev server, then register any search attribute its saved state lacks."""
    client = await devserver.wait_for_server(settings, timeout_seconds=90)
    return await devserver.ensure_search_attributes(client)


def _wait_for_api(settings, process, log_file: Path, timeout_seconds: float = 60.0) -> None:
    """Wait until the API answers ``/healthz``; fail naming its log if it exits or never answers."""
    import httpx

    deadline = wallclock.monotonic() + timeout_seconds
    while wallclock.monotonic() < deadline:
        if process.poll() is not None:
            _fail(f"the HTTP API exited with code {process.returncode}; see {log_file}")
        try:
            if httpx.get(f"http://{settings.api_host}:{settings.api_port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        wallclock.sleep(0.3)
    _fail(f"the HTTP API did not answer on port {settings.api_port} in {timeout_seconds:.0f}s; see {log_file}")


# -- cases -------------------------------------------------------------------------------------


def _policies():
    from collections_domain.rules.policy import PolicyRegistry

    return PolicyRegistry.from_settings(get_settings().collections_policy)


def _checked_case(**fields) -> CaseInput:
    """The case input of the options, checked as ``POST /v1/cases`` checks its body: the API's
    ``CaseOpenRequest`` (ids, amounts 0 to 2^53-1 and their sum, currency in capitals, dates,
    region), then ``rules.validation`` (ISO 4217 code the policy covers, IANA zone, policy
    version, due date not after the borrower's today). Exits 2 naming each option and rule."""
    body = _request(CaseOpenRequest, **fields)
    case = CaseInput.model_validate(body.model_dump())
    problems = case_input_problems(case, _policies())
    if not problems:
        problems = [p for p in [due_date_problem(case, datetime.now(UTC))] if p]
    if problems:
        _refuse(problems)
    return case


@app.command("start-case")
def start_case_command(
    loan_id: Annotated[str, typer.Option(help="Loan id: 1-64 letters, digits, '-', '_' or '.'.")],
    borrower_id: Annotated[str, typer.Option(help="Borrower id; contact details are read from the database.")],
    principal_due_minor: Annotated[str, typer.Option(metavar=MINOR, help="Overdue principal, minor units (0 to 2^53-1).")],
    oldest_due_date: Annotated[str, typer.Option(help="Oldest unpaid due date, YYYY-MM-DD, not after today (borrower's calendar), at most 10 years back.")],
    interest_due_minor: Annotated[str, typer.Option(metavar=MINOR, help="Overdue interest, minor units (0 to 2^53-1).")] = "0",
    fees_due_minor: Annotated[str, typer.Option(metavar=MINOR, help="Overdue fees, minor units (0 to 2^53-1).")] = "0",
    currency: Annotated[str, typer.Option(help="ISO 4217 code in capitals the policy has thresholds for (default policy: CNY, USD, GBP, EUR).")] = "CNY",
    timezone: Annotated[str, typer.Option(help="The borrower's IANA time zone, such as Asia/Shanghai or America/New_York.")] = "Asia/Shanghai",
    jurisdiction: Annotated[str, typer.Option(help="CN, US or UK.")] = "CN",
    policy_version: Annotated[str | None, typer.Option(help="Policy version (default: the current policy).")] = None,
    region: Annotated[str | None, typer.Option(help="The borrower's ISO 3166-2 region, e.g. CN-SH (search attribute Region).")] = None,
    portfolio: Annotated[str | None, typer.Option(help="The loan book's portfolio (the policy may switch accrual off for it: no-accrual).")] = None,
) -> None:
    """Open a collections case for a loan with one overdue instalment (the contract's input),
    checked by the HTTP API's rules before anything connects. If the loan's case is already
    running, nothing changes; a loan with several instalments opens from the loan book
    (``loan-import``, ``scan``)."""
    case = _checked_case(
        loan_id=loan_id, borrower_id=borrower_id, currency=currency,
        principal_due_minor=_minor(principal_due_minor, "principal_due_minor"),
        interest_due_minor=_minor(interest_due_minor, "interest_due_minor"),
        fees_due_minor=_minor(fees_due_minor, "fees_due_minor"),
        oldest_due_date=oldest_due_date, timezone=timezone, jurisdiction=jurisdiction,
        policy_version=policy_version, region=region, portfolio=portfolio,
    )
    asyncio.run(_start_case(case))


async def _start_case(case: CaseInput) -> None:
    """Start ``case`` (or say that its loan's case already runs, and how the input differs)."""
    client = await _client()
    try:
        running = await case_handle(client, case.loan_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            _fail(_rpc_message(err, case.loan_id))
        running = None
    if running is not None and running.status == WorkflowExecutionStatus.RUNNING:
        console.print(
            f"A case for loan {case.loan_id} is already running (opened {running.start_time:%Y-%m-%d %H:%M} UTC, "
            f"run {running.run_id}); nothing changed. See: {_me()} status {case.loan_id}"
        )
        differences = await input_differences(client, case_handle(client, case.loan_id), case)
        if differences:
            console.print("These values differ from the running case's and were not applied: " + "; ".join(differences))
        return
    try:
        handle = await start_case(client, case, now=datetime.now(UTC))
    except ValueError as err:
        _refuse([str(err)])
    await asyncio.sleep(1.0)
    described = await handle.describe()
    if described.status is not None and described.status != WorkflowExecutionStatus.RUNNING:
        _fail(f"the case did not open: {await failure_of(handle)}")
    console.print(f"Case open: workflow {handle.id} (run {handle.result_run_id}). See: {_me()} status {case.loan_id}")


@app.command("load-portfolio")
def load_portfolio(
    limit: Annotated[int, typer.Option(min=1, help="How many Home Credit loans to put in the loan book (most recent first).")] = 600,
    anchor: Annotated[str | None, typer.Option(help="Date of the file's day 0, YYYY-MM-DD (default today, UTC), at most 10 years back.")] = None,
    csv: Annotated[Path | None, typer.Option(help="An installments_payments.csv (default: the packaged one).")] = None,
) -> None:
    """Put real Home Credit loans in the loan book (their schedules and the payments made by now,
    day 0 of the file on the anchor), then run the delinquency scan: it opens a case for every
    loan still overdue, and none for the current ones."""
    anchor_date = _anchor(anchor)
    configure_logging("WARNING")
    _load(limit=limit, anchor=anchor_date, csv=csv)


def _anchor(anchor: str | None) -> date:
    """The ``--anchor`` date (default today, UTC), within the due dates' bounds (10 years back,
    50 ahead: ``rules.validation.due_date_range_problem``), or exit 2."""
    today = datetime.now(UTC).date()
    if anchor is None:
        return today
    day = _date(anchor, "anchor")
    problem = due_date_range_problem(day, today, "anchor")
    if problem:
        _refuse([problem])
    return day


def _load(*, limit: int, anchor: date, csv: Path | None) -> None:
    try:
        loans = home_credit.recent_first(home_credit.read_loans(csv or home_credit.PACKAGED_CSV))[:limit]
    except (OSError, home_credit.DataFileError) as err:
        _fail(str(err))
    with Progress(TextColumn("Loading the loan book"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("load", total=1)
        count = home_credit.load_into_book(_engine(), _policy(), loans, anchor, datetime.now(UTC))
        progress.update(task, completed=1)
    console.print(f"Loan book: {count} real Home Credit loans (day 0 of the file on {anchor}); scanning for overdue ones.")
    scan_command(zone=None)


@app.command()
def pay(
    loan_id: LoanId,
    amount_minor: Annotated[str, typer.Argument(metavar="AMOUNT_MINOR", help="Amount in minor units (fen, cents), 1 to 2^53-1.")],
    currency: Annotated[str | None, typer.Option(help="ISO 4217 code in capitals (default: the case's or the loan book's own).")] = None,
    payment_id: Annotated[str | None, typer.Option(help="The payment's id (default: a new one).")] = None,
    paid_at: Annotated[str | None, typer.Option(help="When it was paid, RFC 3339 with offset (default: now), not in the future, at most 10 years back: applied as of then.")] = None,
) -> None:
    """A payment of a loan: to its running case, else to the loan book, else held for
    reconciliation. Checked as ``POST /v1/cases/{loan}/payments`` checks it before anything connects."""
    loan_id = _loan(loan_id)
    now = datetime.now(UTC)
    # "XXX" (ISO 4217: no currency) stands in until the case's or the book's currency is read.
    body = _request(PaymentRequest, payment_id=payment_id or f"cli-{uuid.uuid4().hex[:12]}", currency=currency or "XXX",
                    amount_minor=_minor(amount_minor, "amount_minor"), paid_at=paid_at or now.isoformat())
    payment = PaymentReceived(**body.model_dump())
    problem = payment_entry_problem(payment, currency=None, now=now)
    if problem:
        _refuse([problem])

    async def run() -> None:
        client = await _client()
        try:
            checked = payment if currency else payment.model_copy(update={"currency": await _currency_of(client, loan_id)})
            delivery = await deliver_payment(client, _engine(), _policy(), loan_id, checked, source="cli")
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
        except ValueError as err:
            _refuse([str(err)])
        _print_delivery(delivery, f"{checked.amount_minor} {checked.currency} minor units")

    asyncio.run(run())


async def _currency_of(client: Client, loan_id: str) -> str:
    """The running case's currency, else the loan book's; exits asking for --currency without either."""
    status_now, _ = await running_run(client, loan_id)
    if status_now == WorkflowExecutionStatus.RUNNING:
        return (await case_status(client, loan_id)).currency
    with Session(_engine()) as db:
        loan = db.get(Loan, loan_id)
    if loan is None:
        what = "never had a collections case" if status_now is None else "has no running collections case (it closed)"
        _fail(f"loan {loan_id!r} {what} and is not in the loan book; to hold the payment for reconciliation, give its --currency")
    return loan.currency


def _print_delivery(delivery, what: str) -> None:
    where = {
        "delivered": "sent to its case",
        "reopened": "re-opened its ended case",
        "recorded_in_book": "recorded in the loan book",
        "held_for_reconciliation": "held for reconciliation (table unmatched_payments)",
    }[delivery.status]
    detail = delivery.detail[:1].upper() + delivery.detail[1:]
    console.print(f"{delivery.signal} {delivery.id} ({what}) for {delivery.loan_id}: {where}. {detail}.")
    if delivery.status in ("delivered", "reopened"):
        console.print(f"Check it was applied:  {_me()} status {delivery.loan_id}")


@app.command()
def promise(
    loan_id: LoanId,
    amount_minor: Annotated[str, typer.Argument(metavar="AMOUNT_MINOR", help="Promised amount in minor units, 1 to 2^53-1.")],
    promised_date: Annotated[str, typer.Argument(metavar="PROMISED_DATE", help="Date the borrower will pay by, YYYY-MM-DD (their calendar).")],
    promise_id: Annotated[str | None, typer.Option(help="The promise's id (default: a new one).")] = None,
) -> None:
    """Send a promise_to_pay signal to a loan's case (checked as ``POST .../promises`` checks it)."""
    loan_id = _loan(loan_id)
    body = _request(PromiseRequest, promise_id=promise_id or f"ptp-{uuid.uuid4().hex[:12]}",
                    amount_minor=_minor(amount_minor, "amount_minor"), promised_date=promised_date)
    ptp = PromiseToPay(**body.model_dump())

    async def run() -> None:
        client = await _client()
        try:
            await send_promise(client, loan_id, ptp)
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
        console.print(f"Sent promise {ptp.promise_id}: {ptp.amount_minor} minor units by {ptp.promised_date} to {loan_id}.")
        console.print(f"Check it was accepted:  {_me()} status {loan_id}")

    asyncio.run(run())


@app.command()
def status(
    loan_id: LoanId,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw status JSON.")] = False,
) -> None:
    """Print a case's status (the workflow's `status` query)."""
    loan_id = _loan(loan_id)

    async def run() -> CaseStatus:
        client = await _client()
        handle = case_handle(client, loan_id)
        try:
            described = await handle.describe()
            if described.status in (WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT):
                _fail(f"the case of loan {loan_id} {described.status.name.lower()}: {await failure_of(handle)}")
            return await case_status(client, loan_id)
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
            raise

    result = asyncio.run(run())
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    _print_status(result)


def _print_status(st: CaseStatus) -> None:
    summary = Table(title=f"Case {st.loan_id}", show_header=False)
    summary.add_row("stage", st.stage)
    summary.add_row("outcome", st.outcome or "open")
    summary.add_row("days past due", f"{st.days_past_due} (as of the case's last event, {st.as_of:%Y-%m-%d %H:%M} UTC)")
    summary.add_row("outstanding", f"{st.outstanding_minor} {st.currency} minor units")
    if st.outstanding_components is not None:
        parts = st.outstanding_components
        summary.add_row("  by component", f"principal {parts.principal}, interest {parts.interest}, "
                        f"fees {parts.fees}, penalty {parts.penalty}")
    summary.add_row("paid / overpaid", f"{st.paid_minor} / {st.overpaid_minor}")
    if st.ledger is not None:
        summary.add_row("highest DPD", str(st.max_days_past_due))
    if st.opening_reason is not None:
        summary.add_row("opened by", st.opening_reason.source + (f": {st.opening_reason.rule}" if st.opening_reason.rule else ""))
    if st.reopened_from:
        summary.add_row("re-opens", f"run {st.reopened_from}")
    if st.strategy is not None:
        band = f"score band {st.strategy.score_band} ({st.strategy.model_version}), " if st.strategy.score_band else ""
        summary.add_row("strategy", f"{band}treatment {st.strategy.treatment}, arm {st.strategy.strategy_arm}")
    if st.open_promise:
        p = st.open_promise
        summary.add_row("open promise", f"{p.promise_id}: {p.amount_minor} by {p.promised_date}, paid toward {p.paid_toward_minor}")
    summary.add_row("promises kept / broken", f"{st.promises_kept} / {st.promises_broken}")
    summary.add_row("next step", f"{st.next_step.step} at {st.next_step.at:%Y-%m-%d %H:%M} UTC" if st.next_step else "-")
    if st.plan:
        paid = sum(1 for i in st.plan.instalments if i.status == "paid")
        summary.add_row("plan", f"{st.plan.plan_id} ({st.plan.kind}): {paid}/{len(st.plan.instalments)} paid, "
                        f"{st.plan.paid_toward_minor} of {st.plan.total_minor}")
    for pause in st.pauses:
        summary.add_row("paused", f"{pause.kind} {pause.id}" + (f" until {pause.until:%Y-%m-%d %H:%M} UTC" if pause.until else ""))
    if st.ladder_shift_days:
        summary.add_row("ladder moved by", f"{st.ladder_shift_days} paused days")
    for task in st.open_tasks:
        summary.add_row("agent task", f"{task.task_key} (report by {task.report_by:%Y-%m-%d %H:%M} UTC)")
    for hand_off in st.hand_offs:
        summary.add_row(hand_off.kind.replace("_", " "), f"{hand_off.workflow_id}: {hand_off.status}")
    if st.waived_minor:
        summary.add_row("waived", str(st.waived_minor))
    if st.written_off_minor is not None:
        summary.add_row("written off", str(st.written_off_minor))
    summary.add_row("policy", st.policy_version)
    console.print(summary)
    if st.ledger is not None and st.ledger.lines:
        _print_ledger_lines(st.ledger)
    if st.steps_done:
        steps = Table(title="Steps taken")
        for column in ("step", "DPD", "at (UTC)", "actions"):
            steps.add_column(column)
        for record in st.steps_done:
            results = "; ".join(
                f"{r.action}: {r.status}" + (f" ({r.detail})" if r.detail else "") for r in record.results
            ) or ", ".join(record.actions)
            steps.add_row(record.step, str(record.days_past_due), f"{record.at:%Y-%m-%d %H:%M}", results)
        console.print(steps)
    if st.steps_skipped:
        skipped = Table(title="Steps skipped")
        for column in ("step", "DPD", "reason"):
            skipped.add_column(column)
        for record in st.steps_skipped:
            skipped.add_row(record.step, str(record.days_past_due), record.reason)
        console.print(skipped)
    if st.deferred_step:
        d = st.deferred_step
        console.print(f"Deferred: {d.step} waits until {d.until:%Y-%m-%d %H:%M} UTC ({d.rule_id}).")
    if st.contact_decisions:
        gate = Table(title="Compliance decisions")
        for column in ("at (UTC)", "step", "action", "decision", "rule", "ran"):
            gate.add_column(column)
        for d in st.contact_decisions:
            gate.add_row(f"{d.decided_at:%Y-%m-%d %H:%M}", d.step, d.action, d.decision, d.rule_id, d.run_action or "-")
        console.print(gate)
    if st.rejected_signals:
        rejected = Table(title="Rejected signals")
        for column in ("kind", "id", "reason"):
            rejected.add_column(column)
        for record in st.rejected_signals:
            rejected.add_row(record.kind, record.id, record.reason)
        console.print(rejected)


def _print_ledger_lines(view) -> None:
    """The case's instalments (``CaseStatus.ledger.lines``): charged, outstanding, paid, DPD."""
    lines = Table(title="Instalments (minor units)")
    for column in ("instalment", "due", "status", "charged", "outstanding", "paid", "DPD"):
        lines.add_column(column)
    for line in view.lines:
        lines.add_row(line.instalment_id, str(line.due_date), line.status, str(line.charged.total),
                      str(line.outstanding.total), str(line.paid_minor), str(line.days_past_due))
    console.print(lines)


@app.command()
def history(
    loan_id: LoanId,
    limit: Annotated[int, typer.Option(min=0, help="Show the last N events (0: all).")] = 60,
    all_events: Annotated[bool, typer.Option("--all", help="Include workflow-task bookkeeping events.")] = False,
) -> None:
    """The case's Temporal history as a table: each event with its time and what it did (the
    activity, timer or child and its summary, the signal or update received). Current run only."""
    loan_id = _loan(loan_id)

    async def run() -> None:
        client = await _client()
        try:
            fetched = await case_handle(client, loan_id).fetch_history()
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
        rows = [row for row in [_history_row(event, await _summary_of(client, event)) for event in fetched.events]
                if all_events or not row[2].startswith("workflow task")]
        shown = rows[-limit:] if limit > 0 else rows
        table = Table(title=f"History of collection-{loan_id} ({len(fetched.events)} events; "
                            f"{len(shown)} shown{'' if all_events else ', workflow tasks hidden'})")
        for column in ("#", "at (UTC)", "event", "what"):
            table.add_column(column, overflow="fold")
        for row in shown:
            table.add_row(*row)
        console.print(table)

    asyncio.run(run())


async def _summary_of(client: Client, event) -> str:
    """The event's summary, decrypted with the client's payload keys ("" when it has none; a
    note when this process's keys cannot read it)."""
    if not (event.HasField("user_metadata") and event.user_metadata.HasField("summary")):
        return ""
    try:
        (text,) = await client.data_converter.decode([event.user_metadata.summary], [str])
    except Exception as err:  # a key this process lacks, or a summary that is not text
        return f"(summary not readable here: {type(err).__name__})"
    return str(text)


def _history_row(event, what: str = "") -> tuple[str, str, str, str]:
    """One history event as (id, time, readable type, what): summaries and names only."""
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower().replace("_", " ")
    details = {
        "activity_task_scheduled_event_attributes": lambda a: a.activity_type.name,
        "timer_started_event_attributes": lambda a: f"timer {timedelta(seconds=round(a.start_to_fire_timeout.ToTimedelta().total_seconds()))}",
        "workflow_execution_signaled_event_attributes": lambda a: a.signal_name,
        "workflow_execution_update_accepted_event_attributes": lambda a: a.accepted_request.input.name,
        "start_child_workflow_execution_initiated_event_attributes": lambda a: f"{a.workflow_type.name} {a.workflow_id}",
        "marker_recorded_event_attributes": lambda a: a.marker_name,
        "activity_task_failed_event_attributes": lambda a: a.failure.message,
        "workflow_execution_failed_event_attributes": lambda a: a.failure.message,
    }
    for field, describe in details.items():
        if event.HasField(field):
            detail = describe(getattr(event, field))
            what = f"{detail}: {what}" if what and detail else (what or detail)
    return str(event.event_id), f"{event.event_time.ToDatetime():%Y-%m-%d %H:%M:%S}", kind, str(what)


# -- negotiation, contact outcomes, pauses and stops -------------------------------------------


def _engine():
    return make_engine(get_settings().resolved_database_url)


@app.command("propose-plan")
def propose_plan_command(
    loan_id: LoanId,
    kind: Annotated[str, typer.Option(help="instalments, deferral or waiver.")],
    plan_id: Annotated[str | None, typer.Option(help="The plan's id (default: a new one).")] = None,
    dates: Annotated[str | None, typer.Option(help="instalments: the due dates, YYYY-MM-DD,YYYY-MM-DD,... (borrower's calendar).")] = None,
    first_minor: Annotated[str | None, typer.Option(metavar=MINOR, help="instalments: the first instalment, minor units (default: an equal share).")] = None,
    new_due_date: Annotated[str | None, typer.Option(help="deferral: the new due date, YYYY-MM-DD.")] = None,
    waive_minor: Annotated[str | None, typer.Option(metavar=MINOR, help="waiver: interest and fees to forgive, minor units.")] = None,
    pay_by: Annotated[str | None, typer.Option(help="waiver: the rest is due by this date (default: policy plans.waiver_pay_within_days).")] = None,
    approver: Annotated[str | None, typer.Option(help="waiver: approver id, needed above policy plans.auto_approve_waiver_bps.")] = None,
    proposed_by: Annotated[str | None, typer.Option(help="The agent's id.")] = None,
) -> None:
    """Propose a repayment plan (update propose_plan); prints the schedule or the rule it broke.
    Checked as ``POST .../plans`` checks it (``PlanRequest``) before anything connects."""
    loan_id = _loan(loan_id)
    body = _request(
        PlanRequest, {"instalment_dates": "dates", "first_instalment_minor": "first_minor", "approver_id": "approver"},
        plan_id=plan_id or f"plan-{uuid.uuid4().hex[:8]}", kind=kind,
        instalment_dates=[part.strip() for part in dates.split(",") if part.strip()] if dates is not None else None,
        first_instalment_minor=_minor(first_minor, "first_minor"), new_due_date=new_due_date,
        waive_minor=_minor(waive_minor, "waive_minor"), pay_by=pay_by, approver_id=approver, proposed_by=proposed_by,
    )
    proposal = body.model_dump(mode="json", exclude_none=True)

    async def run() -> None:
        client = await _client()
        try:
            accepted = await propose_plan(client, loan_id, proposal, engine=_engine())
        except UpdateRejected as err:
            _fail(f"plan refused: {err}")
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
        table = Table(title=f"Plan {accepted.plan_id} ({accepted.kind}) accepted for {loan_id}")
        for column in ("#", "due date", f"amount ({accepted.currency} minor units)"):
            table.add_column(column)
        for instalment in accepted.instalments:
            table.add_row(str(instalment.seq), str(instalment.due_date), str(instalment.amount_minor))
        console.print(table)
        console.print(f"Total {accepted.total_minor}" + (f"; {accepted.waived_minor} forgiven when it is paid" if accepted.waived_minor else ""))
        console.print(f"Watched by child workflow {accepted.plan_workflow_id}.")

    asyncio.run(run())


@app.command("record-outcome")
def record_outcome_command(
    loan_id: LoanId,
    task_key: Annotated[str, typer.Option(help="The agent task's key (`status` lists open tasks).")],
    outcome: Annotated[str, typer.Option(help="reached, no_answer, wrong_number, refused, promise_made or dispute_raised.")],
    agent: Annotated[str, typer.Option(help="The agent's id.")],
    note: Annotated[str | None, typer.Option(help="Free text, 1-2000 characters; stored in the database only, never in the workflow.")] = None,
    promise_amount_minor: Annotated[str | None, typer.Option(metavar=MINOR, help="promise_made: the promised amount, minor units.")] = None,
    promise_date: Annotated[str | None, typer.Option(help="promise_made: the promised date, YYYY-MM-DD.")] = None,
    promise_id: Annotated[str | None, typer.Option(help="promise_made: the promise's id (default: a new one).")] = None,
    dispute_id: Annotated[str | None, typer.Option(help="dispute_raised: the dispute's id.")] = None,
) -> None:
    """Record what an agent call or visit achieved (update record_contact_outcome). Checked as
    ``POST .../contact-outcomes`` checks it (``ContactOutcomeRequest``) before anything connects."""
    loan_id = _loan(loan_id)
    promised = None
    if promise_amount_minor is not None or promise_date is not None:
        promised = {"promise_id": promise_id or f"ptp-{uuid.uuid4().hex[:12]}",
                    "amount_minor": _minor(promise_amount_minor, "promise_amount_minor"), "promised_date": promise_date}
        promised = {name: value for name, value in promised.items() if value is not None}
    aliases = {"agent_id": "agent", "promise": "promise_amount_minor", "promise.amount_minor": "promise_amount_minor",
               "promise.promised_date": "promise_date", "promise.promise_id": "promise_id"}
    body = _request(ContactOutcomeRequest, aliases, task_key=task_key, outcome=outcome, agent_id=agent, note=note,
                    promise=promised, dispute_id=dispute_id)
    report = body.model_dump(mode="json", exclude_none=True, exclude={"note"})

    async def run() -> None:
        client = await _client()
        try:
            recorded = await record_contact_outcome(client, loan_id, report, note=note, engine=_engine())
        except UpdateRejected as err:
            _fail(f"outcome refused: {err}")
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
        console.print(f"Recorded {recorded.outcome} for {recorded.task_key}" + (" (note stored in the database)" if note else "") + ".")
        console.print(f"Contact history:  {_me()} contacts {loan_id}")

    asyncio.run(run())


def _signal_command(name: str, loan_id: str, payload: dict) -> None:
    """Send case signal ``name``, its ``payload`` checked by the model the API checks it with
    (``client.CASE_SIGNALS``) and the loan id by the API's id rule, before anything connects."""
    loan_id = _loan(loan_id)
    checked = _request(CASE_SIGNALS[name], **payload)
    payload = checked.model_dump(mode="json", exclude_none=True)

    async def run() -> None:
        client = await _client()
        try:
            await send_case_signal(client, loan_id, name, payload)
        except ValueError as err:
            _fail(str(err))
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
        console.print(f"Sent {name} to {loan_id}. Check it was applied:  {_me()} status {loan_id}")

    asyncio.run(run())


@app.command("dispute")
def dispute_command(
    loan_id: LoanId,
    dispute_id: Annotated[str, typer.Option(help="The dispute's id.")],
    reason_code: Annotated[str, typer.Option(help="amount, not_my_debt, already_paid or other.")] = "other",
) -> None:
    """Open a dispute (signal dispute_opened): no collection contact while it is open."""
    _signal_command("dispute_opened", loan_id, {"dispute_id": dispute_id, "reason_code": reason_code})


@app.command("resolve-dispute")
def resolve_dispute_command(
    loan_id: LoanId,
    dispute_id: Annotated[str, typer.Option(help="The open dispute's id.")],
    resolution: Annotated[str, typer.Option(help="upheld or rejected.")],
    corrected_outstanding_minor: Annotated[str | None, typer.Option(metavar=MINOR, help="upheld: the corrected outstanding amount, minor units.")] = None,
) -> None:
    """Resolve a dispute (signal dispute_resolved): upheld corrects the amount, rejected resumes."""
    payload: dict = {"dispute_id": dispute_id, "resolution": resolution,
                     "corrected_outstanding_minor": _minor(corrected_outstanding_minor, "corrected_outstanding_minor")}
    _signal_command("dispute_resolved", loan_id, payload)


@app.command("cease-contact")
def cease_contact_command(loan_id: LoanId, request_id: Annotated[str, typer.Option(help="The written request's id.")]) -> None:
    """Record a cease-contact request (signal cease_contact): only the permitted notices continue."""
    _signal_command("cease_contact", loan_id, {"request_id": request_id})


@app.command("hardship")
def hardship_command(loan_id: LoanId, hardship_id: Annotated[str, typer.Option(help="The hardship case's id.")]) -> None:
    """Pause the ladder for the policy's pauses.hardship_days (signal hardship)."""
    _signal_command("hardship", loan_id, {"hardship_id": hardship_id})


@app.command("bankruptcy")
def bankruptcy_command(loan_id: LoanId, notice_id: Annotated[str, typer.Option(help="The bankruptcy notice's id.")]) -> None:
    """End the case as closed_bankruptcy (signal bankruptcy); recalls any placement."""
    _signal_command("bankruptcy", loan_id, {"notice_id": notice_id})


@app.command("deceased")
def deceased_command(loan_id: LoanId, notice_id: Annotated[str, typer.Option(help="The notice of death's id.")]) -> None:
    """End the case as closed_deceased (signal deceased); recalls any placement."""
    _signal_command("deceased", loan_id, {"notice_id": notice_id})


@app.command("legal-status")
def legal_status_command(
    loan_id: LoanId,
    status_name: Annotated[str, typer.Option("--status", help="lawyers_letter_sent, suit_filed, judgment or settled.")],
    event_id: Annotated[str | None, typer.Option(help="The event's id (default: a new one).")] = None,
    occurred_on: Annotated[str | None, typer.Option(help="The local date it happened, YYYY-MM-DD, at most 10 years back.")] = None,
    awarded_minor: Annotated[str | None, typer.Option(metavar=MINOR, help="judgment: what the court awarded for the debt, minor units.")] = None,
    court_costs_minor: Annotated[str | None, typer.Option(metavar=MINOR, help="judgment: court costs the borrower owes, minor units.")] = None,
) -> None:
    """Record a state of the case's legal referral (signal legal_status to its child workflow); a
    judgment's award and court costs enter the case's ledger, a settlement ends it settled."""
    loan_id = _loan(loan_id)
    day = _date(occurred_on, "occurred_on") if occurred_on is not None else None
    problem = due_date_range_problem(day, datetime.now(UTC).date(), "occurred_on") if day else None
    if problem:
        _refuse([problem])
    checked = _request(LegalStatusUpdate, {"status": "status_name"}, event_id=event_id or f"legal-{uuid.uuid4().hex[:8]}",
                       status=status_name, occurred_on=day, awarded_minor=_minor(awarded_minor, "awarded_minor"),
                       court_costs_minor=_minor(court_costs_minor, "court_costs_minor"))
    payload = checked.model_dump(mode="json", exclude_none=True)

    async def run() -> None:
        client = await _client()
        try:
            st = await case_status(client, loan_id)
            legal = [h for h in st.hand_offs if h.kind == "legal_referral"]
            if not legal:
                _fail(f"loan {loan_id} has no legal referral (stage {st.stage})")
            await client.get_workflow_handle(legal[-1].workflow_id).signal("legal_status", payload)
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
        console.print(f"Sent legal_status {status_name} to {legal[-1].workflow_id}.")
        console.print(f"Check it was recorded:  temporal workflow query --workflow-id {legal[-1].workflow_id} --type status")

    asyncio.run(run())


@app.command("daytime-zone")
def daytime_zone_command() -> None:
    """Print a time zone where it is now between 09:00 and 20:00 (for trying cases whose due
    steps should run at once: contact is lawful only in the jurisdiction's hours)."""
    print(daytime_zone(datetime.now(UTC)))


@app.command("contacts")
def contacts_command(
    loan_id: LoanId,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List a loan's whole contact history from the database: contacts, outcomes with notes, hand-offs."""
    loan_id = _loan(loan_id)
    history = contact_history(_engine(), loan_id)
    if as_json:
        for row in history:
            print(json.dumps(row, default=str))
        return
    if not history:
        _fail(f"no contacts recorded for loan {loan_id} in {get_settings().resolved_database_url}", code=1)
    table = Table(title=f"Contact history of {loan_id}")
    for column in ("at (UTC)", "kind", "what", "status", "detail"):
        table.add_column(column)
    for row in history:
        table.add_row(f"{row['at']:%Y-%m-%d %H:%M}", row["kind"], row["what"], row["status"], row["detail"])
    console.print(table)


# -- compliance: preferences, the call log, breathing space, the audit ----------------------------


@app.command("preferences")
def preferences_command(
    borrower_id: Annotated[str, typer.Argument(metavar="BORROWER_ID", help="The borrower's id.")],
    preferred_hours: Annotated[str | None, typer.Option(help="Local HH:MM-HH:MM the borrower prefers ('' clears).")] = None,
    agreed_hours: Annotated[str | None, typer.Option(help="CN: local HH:MM-HH:MM of a stored agreement that widens the hours ('' clears).")] = None,
    opt_out: Annotated[list[str] | None, typer.Option(help="A medium the borrower opted out of: sms, email, call, visit, letter (repeatable).")] = None,
    opt_in: Annotated[list[str] | None, typer.Option(help="Withdraw an opt-out (repeatable).")] = None,
    preferred_medium: Annotated[list[str] | None, typer.Option(help="UK: a medium the borrower prefers (repeatable; replaces the list).")] = None,
    sms_consent: Annotated[bool | None, typer.Option("--sms-consent/--no-sms-consent", help="US: recorded consent to SMS.")] = None,
    attorney_id: Annotated[str | None, typer.Option(help="The attorney who represents the borrower ('' removes).")] = None,
    attorney_name: Annotated[str | None, typer.Option(help="The attorney's name (a new attorney).")] = None,
    attorney_address: Annotated[str | None, typer.Option(help="The attorney's postal address (letters go there).")] = None,
    time_zone: Annotated[list[str] | None, typer.Option(help="US: another IANA zone the borrower may be in (repeatable; replaces the list).")] = None,
    ombudsman_complaint: Annotated[bool | None, typer.Option("--ombudsman-complaint/--no-ombudsman-complaint", help="UK: a complaint is with the ombudsman.")] = None,
) -> None:
    """Show or change a borrower's contact preferences and consents (read by the compliance gate
    before every step). Without options, shows them."""
    from collections_domain.store.preferences import (
        get_contact_preferences,
        set_contact_preferences,
    )

    _id(borrower_id, "borrower_id")
    if attorney_id:
        _id(attorney_id, "attorney_id")
    zone_problems = [p for p in (time_zone_problem(zone) for zone in time_zone or []) if p]
    if zone_problems:
        _refuse(zone_problems)
    engine = _engine()
    changes = dict(
        preferred_hours=preferred_hours, agreed_hours=agreed_hours, opt_out=opt_out, opt_in=opt_in,
        preferred_media=preferred_medium, sms_consent=sms_consent, attorney_id=attorney_id,
        attorney_name=attorney_name, attorney_address=attorney_address,
        extra_time_zones=time_zone, ombudsman_complaint_open=ombudsman_complaint,
    )
    try:
        if any(value is not None for value in changes.values()):
            prefs = set_contact_preferences(engine, borrower_id, **changes)
        else:
            prefs = get_contact_preferences(engine, borrower_id)
    except ValueError as err:
        _refuse([str(err)], {"preferred_media": "preferred_medium", "extra_time_zones": "time_zone"})
    table = Table(title=f"Contact preferences of {borrower_id}", show_header=False)
    hours = lambda a, b: f"{a}-{b}" if a else "-"  # noqa: E731
    table.add_row("preferred hours", hours(prefs.preferred_opens, prefs.preferred_closes))
    table.add_row("agreed hours (CN)", hours(prefs.agreed_opens, prefs.agreed_closes))
    table.add_row("opted out of", ", ".join(prefs.opted_out_media) or "-")
    table.add_row("preferred media", ", ".join(prefs.preferred_media) or "-")
    table.add_row("SMS consent", "yes" if prefs.sms_consent else "no")
    table.add_row("attorney", prefs.attorney_id or "-")
    table.add_row("other time zones", ", ".join(prefs.extra_time_zones) or "-")
    table.add_row("ombudsman complaint", "open" if prefs.ombudsman_complaint_open else "no")
    console.print(table)


@app.command("record-call")
def record_call_command(
    loan_id: LoanId,
    attempt_id: Annotated[str, typer.Option(help="The dialer's or agency's id for the attempt.")],
    at: Annotated[str, typer.Option(help="When, RFC 3339 with an offset (2026-12-01T10:00:00+08:00).")],
    connected: Annotated[bool, typer.Option("--connected/--unanswered", help="Whether the borrower answered.")] = False,
    number_id: Annotated[str | None, typer.Option(help="An id of the number dialled (not the number).")] = None,
    source: Annotated[str, typer.Option(help="agency, dialer or agent.")] = "dialer",
    borrower_id: Annotated[str | None, typer.Option(help="The borrower (default: the loan's case's borrower).")] = None,
) -> None:
    """Log a call attempt made outside the product, so the call caps count it."""
    from collections_domain.store.preferences import record_call_attempt

    loan_id = _loan(loan_id)
    for value, field in ((attempt_id, "attempt_id"), (number_id, "number_id"), (borrower_id, "borrower_id")):
        _id(value, field)
    attempted_at = _instant(at, "at")
    now = datetime.now(UTC)
    if attempted_at > now + timedelta(minutes=5):
        _fail(f"--at: a call cannot be logged before it happens, got {attempted_at.isoformat()} (now {now:%Y-%m-%dT%H:%M}Z)")
    if attempted_at < now - timedelta(days=MAX_AGE_DAYS):
        _fail(f"--at: must be within the last {MAX_AGE_DAYS} days (10 years), got {attempted_at.isoformat()}")
    try:
        new = record_call_attempt(_engine(), attempt_id=attempt_id, loan_id=loan_id, attempted_at=attempted_at,
                                  connected=connected, phone_number_id=number_id, source=source, borrower_id=borrower_id)
    except ValueError as err:
        _refuse([str(err)], {"attempted_at": "at", "phone_number_id": "number_id"})
    console.print(f"{'Logged' if new else 'Already logged'} call attempt {source}:{attempt_id} for {loan_id}.")


@app.command("breathing-space")
def breathing_space_command(loan_id: LoanId, breathing_space_id: Annotated[str, typer.Option(help="The breathing space's reference.")]) -> None:
    """UK: pause the ladder for compliance.UK.breathing_space_days (signal breathing_space)."""
    _signal_command("breathing_space", loan_id, {"breathing_space_id": breathing_space_id})


@app.command("audit")
def audit_command(
    loan_id: Annotated[str | None, typer.Argument(metavar="LOAN_ID", help="One loan; omit for the whole portfolio.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write every row as CSV to this file ('-': standard output).")] = None,
) -> None:
    """The compliance audit: every contact decision (allowed, deferred, rerouted, skipped) with its
    rule id and what was sent, from the database. A portfolio audit ends with counts by rule."""
    from collections_domain.store.audit import audit_rows, summary, write_csv

    if loan_id is not None:
        loan_id = _loan(loan_id)
    rows = audit_rows(_engine(), loan_id)
    if not rows and loan_id is not None:
        _fail(f"no contact decisions recorded for loan {loan_id} in {get_settings().resolved_database_url}", code=1)
    if csv_path is not None:
        if str(csv_path) == "-":
            write_csv(rows, sys.stdout)
            return
        try:
            with csv_path.open("w", newline="", encoding="utf-8") as stream:
                write_csv(rows, stream)
        except OSError as err:
            _fail(f"csv: cannot write {csv_path}: {err.strerror or err}")
        console.print(f"Wrote {len(rows)} decisions to {csv_path}.")
        return
    if not rows:
        _fail(f"no contact decisions recorded in {get_settings().resolved_database_url}", code=1)
    table = Table(title=f"Compliance audit of {loan_id or 'the portfolio'}")
    for column in ("local time", "loan", "step", "action", "decision", "rule", "ran", "status", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r.decided_at_local or r.decided_at_utc, r.loan_id, f"{r.step} (DPD {r.days_past_due})", r.action,
                      r.decision, r.rule_id, r.ran or "-", r.contact_status, r.reason)
    console.print(table)
    if loan_id is None:
        counts = Table(title="Decisions by rule")
        for column in ("jurisdiction", "decision", "rule", "count"):
            counts.add_column(column)
        for jurisdiction, decision, rule, count in summary(rows):
            counts.add_row(jurisdiction, decision, rule, str(count))
        console.print(counts)


# -- the loan book: loans, instalments, reversals, adjustments, the delinquency scan -------------


def _policy():
    return _policies().current


def _run_delivery(loan_id: str, deliver, what: str) -> None:
    async def run() -> None:
        client = await _client()
        try:
            delivery = await deliver(client)
        except RPCError as err:
            _fail(_rpc_message(err, loan_id))
        except (LookupError, ValueError) as err:
            _refuse([str(err).strip("'\"")])
        _print_delivery(delivery, what)

    asyncio.run(run())


@app.command("reverse")
def reverse_command(
    loan_id: LoanId,
    payment_id: Annotated[str, typer.Option(help="The payment that bounced or was charged back.")],
    reason: Annotated[str, typer.Option(help="bounced, chargeback, error or other.")] = "bounced",
    reversal_id: Annotated[str | None, typer.Option(help="The reversal's id (default: a new one).")] = None,
    reversed_at: Annotated[str | None, typer.Option(help="When, RFC 3339 with an offset (default: now).")] = None,
) -> None:
    """Reverse a payment (signal payment_reversed): the running case undoes it; a case that ended
    because of it (cured, settled) re-opens from its own ledger; the loan book marks it."""
    loan_id = _loan(loan_id)
    body = _request(ReversalRequest, reversal_id=reversal_id or f"rev-{uuid.uuid4().hex[:10]}", payment_id=payment_id,
                    reason=reason, reversed_at=reversed_at)
    reversal = PaymentReversed(**body.model_dump())
    _run_delivery(loan_id, lambda client: deliver_reversal(client, _engine(), _policy(), loan_id, reversal,
                                                           task_queue=get_settings().temporal_task_queue),
                  f"of payment {payment_id}, {reason}")


@app.command("instalment")
def instalment_command(
    loan_id: LoanId,
    instalment_id: Annotated[str, typer.Option(help="The servicing system's id of the instalment.")],
    due_date: Annotated[str, typer.Option(help="Its due date, YYYY-MM-DD (borrower's calendar).")],
    principal_minor: Annotated[str, typer.Option(metavar=MINOR, help="Principal due, minor units.")] = "0",
    interest_minor: Annotated[str, typer.Option(metavar=MINOR, help="Interest due, minor units.")] = "0",
    fees_minor: Annotated[str, typer.Option(metavar=MINOR, help="Fees due, minor units.")] = "0",
) -> None:
    """An instalment of the loan fell due (signal instalment_due to its running case, and the
    loan book); checked as ``POST /v1/loans/{loan}/instalments`` checks it."""
    loan_id = _loan(loan_id)
    body = _request(InstalmentRequest, instalment_id=instalment_id, due_date=due_date,
                    principal_minor=_minor(principal_minor, "principal_minor"),
                    interest_minor=_minor(interest_minor, "interest_minor"), fees_minor=_minor(fees_minor, "fees_minor"))
    line = _request(LoanInstalment, **body.model_dump())
    if line.problem():
        _refuse([line.problem()])
    _run_delivery(loan_id, lambda client: deliver_instalment(client, _engine(), _policy(), loan_id, line),
                  f"due {line.due_date}, {line.total_minor} minor units")


def _instalment_spec(spec: str, index: int) -> dict:
    """One ``--add`` value ``ID:YYYY-MM-DD:PRINCIPAL[:INTEREST[:FEES]]`` (minor units) as the
    fields of an ``InstalmentRequest``; exits 2 naming ``--add`` for a malformed one."""
    parts = spec.split(":")
    if len(parts) < 3 or len(parts) > 5:
        _refuse([f"add.{index}: must be ID:YYYY-MM-DD:PRINCIPAL[:INTEREST[:FEES]] in minor units, got {spec[:80]!r}"])
    amounts = {name: _minor(value, f"add.{index}.{name}")
               for name, value in zip(("principal_minor", "interest_minor", "fees_minor"), parts[2:])}
    return {"instalment_id": parts[0], "due_date": parts[1], **amounts}


@app.command("adjust")
def adjust_command(
    loan_id: LoanId,
    reason_code: Annotated[str, typer.Option(help="restructure, cancellation, correction or other.")],
    cancel: Annotated[list[str] | None, typer.Option(help="An instalment id to cancel (repeatable).")] = None,
    add: Annotated[list[str] | None, typer.Option(help="A new instalment ID:YYYY-MM-DD:PRINCIPAL[:INTEREST[:FEES]] (repeatable).")] = None,
    adjustment_id: Annotated[str | None, typer.Option(help="The adjustment's id (default: a new one).")] = None,
    reference: Annotated[str | None, typer.Option(help="The servicing system's record id (an id, no free text).")] = None,
) -> None:
    """Change the loan's schedule (signal schedule_adjusted): cancel instalments, add new ones."""
    loan_id = _loan(loan_id)
    body = _request(AdjustmentRequest, adjustment_id=adjustment_id or f"adj-{uuid.uuid4().hex[:10]}",
                    reason_code=reason_code, reference=reference, cancel=list(cancel or []),
                    add=[_instalment_spec(spec, index) for index, spec in enumerate(add or [])])
    adjustment = _request(ScheduleAdjusted, **body.model_dump())
    line_problems = [line.problem(f"add.{index}") for index, line in enumerate(adjustment.add) if line.problem()]
    if line_problems:
        _refuse(line_problems)
    _run_delivery(loan_id, lambda client: deliver_adjustment(client, _engine(), _policy(), loan_id, adjustment),
                  f"{reason_code}: cancel {list(cancel or [])}, add {len(add or [])}")


@app.command("loan-import")
def loan_import_command(
    path: Annotated[Path, typer.Argument(help="The servicing system's CSV (UTF-8, a byte-order mark is fine).")],
) -> None:
    """Import the loan book's nightly file: loans, instalments, payments and reversals, one
    ``record`` a row (columns: portfolio.loan_book.CSV_COLUMNS). Refused rows are listed by line
    and column; the others are imported. Running it again changes nothing."""
    from collections_domain.portfolio import loan_book

    try:
        report = loan_book.import_csv(_engine(), _policy(), path)
    except OSError as err:
        _fail(f"PATH: cannot read {path}: {err.strerror or err}")
    console.print(f"Imported {path}: {report.loans} new loan(s), {report.instalments} instalment(s), "
                  f"{report.payments} payment(s), {report.reversals} reversal(s); {report.unchanged} row(s) already there.")
    for error in report.errors:
        err_console.print(f"[yellow]refused[/yellow] {error}")
    if report.new_reversals:
        _deliver_imported_reversals(report.new_reversals)
    if report.loans or report.instalments or report.payments:
        console.print(f"The scan opens cases for the overdue ones:  {_me()} scan")
    if report.errors:
        err_console.print(f"{len(report.errors)} row(s) refused; fix them and import the file again (the rest is in).")
        raise typer.Exit(1)


def _deliver_imported_reversals(reversals) -> None:
    """Send the file's new reversals to the loans' cases: a running case undoes the payment, a
    case that ended because of it re-opens (``servicing.deliver_reversal``)."""
    from collections_domain.portfolio.servicing import deliver_reversal

    async def run() -> None:
        client = await _client()
        for loan_id, reversal in reversals:
            try:
                delivery = await deliver_reversal(client, _engine(), _policy(), loan_id, reversal,
                                                  task_queue=get_settings().temporal_task_queue)
            except (RPCError, LookupError, ValueError) as err:
                err_console.print(f"[yellow]not delivered[/yellow] reversal {reversal.reversal_id} of {loan_id}: {err}"
                                  " (in the loan book; the scan delivers it)")
                continue
            _print_delivery(delivery, f"of payment {reversal.payment_id}")

    asyncio.run(run())


@app.command("loan")
def loan_command(loan_id: LoanId, as_json: Annotated[bool, typer.Option("--json", help="Print the ledger view as JSON.")] = False) -> None:
    """Show a loan of the loan book: its instalments, payments and what they add up to now."""
    from collections_domain.portfolio import loan_book

    loan_id = _loan(loan_id)
    book = loan_book.read_loan(_engine(), loan_id, _policy())
    if book is None:
        _fail(f"loan_id: loan {loan_id} is not in the loan book", code=1)
    view = book.view
    if as_json:
        print(view.model_dump_json(indent=2))
        return
    loan = book.loan
    console.print(f"Loan {loan.id} ({loan.status}) of borrower {loan.borrower_id}, {loan.currency}, {loan.timezone}, "
                  f"{loan.jurisdiction}, portfolio {loan.portfolio or '-'}: DPD {view.days_past_due}, outstanding "
                  f"{view.outstanding.total} (overdue {view.overdue.total}), credit {view.credit_minor}")
    if book.recovery is not None:
        r = book.recovery
        console.print(f"Written off {r.written_off_minor} on {r.written_off_at:%Y-%m-%d}; recovered since {r.recovered_minor}, "
                      f"remaining {r.remaining_minor}")
    table = Table("instalment", "due", "status", "charged", "outstanding", "paid", "DPD")
    for line in view.lines:
        table.add_row(line.instalment_id, str(line.due_date), line.status, str(line.charged.total),
                      str(line.outstanding.total), str(line.paid_minor), str(line.days_past_due))
    console.print(table)
    if view.payments:
        paid = Table("payment", "amount", "value date (UTC)", "status", "allocated")
        for payment in view.payments:
            paid.add_row(payment.payment_id, str(payment.amount_minor), f"{payment.value_at:%Y-%m-%d %H:%M}", payment.status,
                         ", ".join(f"{a.instalment_id}/{a.component} {a.amount_minor}" for a in payment.allocations))
        console.print(paid)


@app.command("scan")
def scan_command(
    zone: Annotated[str | None, typer.Option("--zone", help="Only this IANA time zone's loans (default: all).")] = None,
) -> None:
    """Run the delinquency scan now: open a case for every overdue loan of the book (policy
    [identification]) and bring running cases what the book learned. Safe to run again."""
    from collections_domain.portfolio.scan import ScanRequest, scan_page

    body = _request(ScanRequestBody, {"time_zone": "zone"}, time_zone=zone)
    first = _request(ScanRequest, {"time_zone": "zone"}, time_zone=body.time_zone,
                     scan_id=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}")

    async def run() -> None:
        client = await _client()
        request = first
        opened, forwarded, current, failed = [], {}, 0, 0
        while True:
            page = await scan_page(_engine(), client, _policy(), request, task_queue=get_settings().temporal_task_queue)
            opened += [(loan, page.reasons[loan]) for loan in page.opened]
            forwarded.update(page.forwarded)
            current += len(page.current) + len(page.below_minimum)
            failed += len(page.errors)
            for error in page.errors:
                err_console.print(f"[yellow]not scanned[/yellow] {error}")
            if page.next_after is None:
                break
            request = request.model_copy(update={"after": page.next_after})
        for loan, reason in opened:
            console.print(f"opened  {loan}: {reason}")
        for loan, sent in forwarded.items():
            console.print(f"sent    {loan}: {', '.join(sent)}")
        console.print(f"Scan {request.scan_id}: {len(opened)} case(s) opened, {len(forwarded)} running case(s) updated, "
                      f"{current} loan(s) with something unpaid left without a case (within the grace or under the "
                      f"minimum); loans with nothing unpaid are not read."
                      + (f" {failed} loan(s) not scanned (listed above)." if failed else ""))

    asyncio.run(run())


@app.command("scan-schedules")
def scan_schedules_command(
    zone: Annotated[list[str] | None, typer.Option("--zone", help="A time zone to scan (repeatable; default: every zone of the book).")] = None,
) -> None:
    """Install (or update) the Temporal Schedules that run the delinquency scan daily in each time
    zone at SCAN_LOCAL_TIME on its own clock (default 00:30)."""
    from collections_domain.portfolio.scan import book_time_zones
    from collections_domain.portfolio.schedules import ensure_scan_schedules

    problems = [p for p in (time_zone_problem(z, "zone") for z in zone or []) if p]
    if problems:
        _refuse(problems)
    settings = get_settings()
    zones = list(zone or []) or book_time_zones(_engine())
    if not zones:
        _fail("no time zone: the loan book is empty; give --zone")
    hours, minutes = (int(part) for part in settings.scan_local_time.split(":"))

    async def run() -> None:
        client = await _client()
        try:
            ids = await ensure_scan_schedules(client, zones, time(hours, minutes), settings.temporal_task_queue)
        except ValueError as err:
            _fail(str(err))
        for schedule in ids:
            console.print(f"schedule {schedule}: daily at {settings.scan_local_time} local")

    asyncio.run(run())


# -- the HTTP API ------------------------------------------------------------------------------

payload_keys_app = typer.Typer(no_args_is_help=True, help="List and rotate the payload encryption keys (never printed).")
app.add_typer(payload_keys_app, name="payload-keys")


@payload_keys_app.command("list")
def payload_keys_list() -> None:
    """The payload key ids (PAYLOAD_KEYS or the key file) and which one is active; never the keys."""
    from collections_domain.ops import codec

    settings = get_settings()
    source = "PAYLOAD_KEYS" if settings.payload_keys else str(settings.resolved_payload_keys_file)
    try:
        ring = codec.load_key_ring(keys=settings.payload_keys, active=settings.payload_active_key_id,
                                   key_file=settings.resolved_payload_keys_file, create=False)
    except codec.KeyRingError as err:
        _fail(f"{err} (the first worker, API or demo run creates it)", code=1)
        raise
    for key_id in ring.keys:
        console.print(f"{key_id}{'  (active)' if key_id == ring.active else ''}")
    console.print(f"from {source}")


@payload_keys_app.command("rotate")
def payload_keys_rotate(
    key_id: Annotated[str | None, typer.Option("--id", help="The new key's id (default k<n+1>): 1-64 letters, digits, '-' or '_'.")] = None,
) -> None:
    """Add a new key to the key file and make it active; the old keys stay, so every history still
    opens. Restart the workers, the API and the CLI's users afterwards. With PAYLOAD_KEYS set, put
    the new id:key first there instead."""
    from collections_domain.ops import codec

    settings = get_settings()
    if settings.payload_keys:
        _fail("PAYLOAD_KEYS: the keys come from the environment; add the new id:base64 key first there "
              "(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')")
    if key_id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key_id):
        _fail(f"--id: must be 1-64 letters, digits, '-' or '_', got {key_id!r}")
    path = settings.resolved_payload_keys_file
    try:
        new = codec.load_key_ring(keys=None, active=None, key_file=path).rotated(key_id)
    except codec.KeyRingError as err:
        _fail(str(err))
        raise
    codec.save_key_ring(new, path)
    console.print(f"payload key {new.active!r} is now active in {path} (kept: {', '.join(k for k in new.keys if k != new.active)}); "
                  "restart the workers and the API")


api_keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke the HTTP API's keys (stored hashed in api_keys).")
app.add_typer(api_keys_app, name="api-key")


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default API_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port, 1-65535 (default API_PORT, 8000).")] = None,
) -> None:
    """Serve the HTTP API with uvicorn (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from api.app import create_app, uvicorn_options

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    host, port = host or settings.api_host, port or settings.api_port
    console.print(f"HTTP API on http://{host}:{port} (docs http://{host}:{port}/docs), Temporal at {settings.temporal_address}")
    # log_config=None: uvicorn's own lines go through the logging configured above (JSON with LOG_JSON).
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(), access_log=False,
                log_config=None, **uvicorn_options(settings))


@api_keys_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. 'payment gateway'.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, decode (payloads in the UI), admin (all), e.g. read,write.")],
    key_only: Annotated[bool, typer.Option(help="Print only the key (for scripts).")] = False,
) -> None:
    """Create an API key and print it once (only its SHA-256 is stored)."""
    from api import keys

    body = _request(ApiKeyRequest, name=name, scopes=[s.strip() for s in scopes.split(",") if s.strip()])
    try:
        row, secret = keys.create_api_key(_engine(), body.name, list(body.scopes))
    except ValueError as err:
        _refuse([str(err)])
    if key_only:
        print(secret)
        return
    console.print(f"API key {row.id} ({row.name}; scopes {row.scopes}). Shown this once:")
    print(secret)
    console.print("Send it as:  Authorization: Bearer <key>")


@api_keys_app.command("list")
def api_key_list() -> None:
    """List the API keys (ids, names, scopes, revocation; never the secrets)."""
    from api import keys

    table = Table("id", "name", "scopes", "created (UTC)", "revoked (UTC)")
    for row in keys.list_api_keys(_engine()):
        table.add_row(row.id, row.name, row.scopes, f"{row.created_at:%Y-%m-%d %H:%M}",
                      f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "")
    console.print(table)


@api_keys_app.command("revoke")
def api_key_revoke(key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (16 hex digits).")]) -> None:
    """Revoke an API key; it is refused from the next request on."""
    from api import keys

    if not re.fullmatch(r"[0-9a-f]{16}", key_id):
        _fail(f"KEY_ID: must be the key's id, 16 lower-case hex digits (as `api-key list` shows it), got {key_id[:40]!r}")
    row = keys.revoke_api_key(_engine(), key_id)
    if row is None:
        _fail(f"KEY_ID: no API key {key_id!r}")
    console.print(f"Revoked API key {row.id} ({row.name}) at {row.revoked_at:%Y-%m-%d %H:%M} UTC.")


# -- simulation --------------------------------------------------------------------------------


@app.command()
def simulate(
    csv: Annotated[Path | None, typer.Option(help="An installments_payments.csv (default: the packaged one).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N loans (by loan id).")] = None,
    loans_csv: Annotated[Path | None, typer.Option("--loans-csv", help="Write one row per loan to this CSV file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table and the totals as JSON.")] = False,
    policy: Annotated[list[Path] | None, typer.Option(
        "--policy", help="A policy file to replay under (default: the packaged one). Twice or more: a what-if "
                         "comparison of the same loans under each, side by side.")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write the replay's KPI report (HTML) here; with two or more "
                                                   "--policy, the first policy's, with the comparison.")] = None,
) -> None:
    """Replay the Home Credit loans, loan by loan, through the real product on the time-skipping
    server: instalments fall due on their days, the scan opens cases, payments arrive on theirs.
    With two or more --policy files, replay the same loans under each and compare them."""
    configure_logging("WARNING")
    try:
        loans = home_credit.read_loans(csv or home_credit.PACKAGED_CSV)
    except (OSError, home_credit.DataFileError) as err:
        _fail(str(err))
    if limit is not None:
        loans = loans[:limit]
    policies = _policy_files(policy or [])
    if len(policies) > 1:
        _what_if(loans, policies, html, as_json)
        return
    result = _with_progress(lambda report: _run_simulation(loans, report, policies[0] if policies else None, html is not None))
    if loans_csv is not None:
        result.write_csv(loans_csv)
    if html is not None and result.kpis is not None:
        from collections_domain.analytics.report import write_html

        console.print(f"KPI report of the replay: {write_html(result.kpis, html)}")
    if as_json:
        outcomes, rows = result.table()
        print(json.dumps({"outcomes": outcomes, "rows": [{"furthest_stage": stage, **counts} for stage, counts in rows],
                          "totals": result.totals, "loans": len(result.loans), "wall_seconds": round(result.wall_seconds, 1),
                          "whatif": result.whatif.model_dump() if result.whatif else None}))
        return
    _print_simulation(result, loans_csv)


def _policy_files(paths: list[Path]) -> list[Path]:
    """The --policy files, each checked (exit 2 naming the file and the key that is wrong)."""
    from collections_domain.rules.policy import PolicyError, load_policy

    for path in paths:
        try:
            load_policy(path)
        except PolicyError as err:
            _fail(f"--policy: {err}")
    return paths


def _with_progress(run):
    """Run ``run(report)`` under a progress display (``report(phase, done, total)``)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console) as progress:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done)

        return run(report)


def _run_simulation(loans, report, policy_path: Path | None, kpis: bool = False):
    from collections_domain.portfolio.simulation import simulate as run_simulation
    from collections_domain.rules.policy import PolicyError

    try:
        return asyncio.run(run_simulation(loans, progress=report, policy_path=policy_path, kpis=kpis))
    except PolicyError as err:
        _fail(f"--policy: {err}")


def _what_if(loans, policies: list[Path], html: Path | None, as_json: bool) -> None:
    from collections_domain.analytics.report import print_whatif
    from collections_domain.portfolio.simulation import what_if
    from collections_domain.rules.policy import PolicyError

    try:
        runs, comparison = _with_progress(
            lambda report: asyncio.run(what_if(loans, policies, progress=report, with_kpis=html is not None)))
    except (PolicyError, ValueError) as err:
        _fail(f"--{err}" if str(err).startswith("policy") else f"--policy: {err}")
    if as_json:
        print(comparison.model_dump_json())
    else:
        print_whatif(comparison, console)
    if html is not None and runs[0].kpis is not None:
        from collections_domain.analytics.report import write_html

        written = write_html(runs[0].kpis, html, whatif=comparison)
        console.print(f"report of the first policy's replay, with the comparison: {written}")


def _print_simulation(result, loans_csv: Path | None) -> None:
    outcomes, rows = result.table()
    table = Table(title=f"{len(result.loans)} Home Credit loans by the furthest stage reached and the last case's outcome")
    table.add_column("furthest stage")
    for outcome in outcomes:
        table.add_column(outcome, justify="right")
    table.add_column("loans", justify="right")
    for stage, counts in rows:
        table.add_row(stage, *(str(counts[o]) for o in outcomes), str(sum(counts.values())))
    table.add_row("total", *(str(sum(c[o] for _, c in rows)) for o in outcomes), str(len(result.loans)))
    console.print(table)
    unpaid = sum(1 for loan in result.loans if loan.final_outstanding_minor > 0)
    console.print(f"{sum(loan.cases for loan in result.loans)} cases; {unpaid} loans still owe something at the end; "
                  f"contacts by channel {result.totals}." + (f" Per loan: {loans_csv}" if loans_csv else ""))
    console.print(f"Wall time: {result.wall_seconds:.1f} s")


# -- analysis and strategy -----------------------------------------------------------------------


@app.command("report")
def report_command(
    opened_from: Annotated[str | None, typer.Option(help="Cases opened on or after this day (YYYY-MM-DD, UTC).")] = None,
    opened_to: Annotated[str | None, typer.Option(help="Cases opened on or before this day (YYYY-MM-DD, UTC).")] = None,
    policy_version: Annotated[str | None, typer.Option(help="Only cases of this policy version.")] = None,
    arm: Annotated[str | None, typer.Option(help="Only this strategy arm (<experiment>:<arm>, or none).")] = None,
    segment: Annotated[str | None, typer.Option(help="Only this score band or portfolio.")] = None,
    jurisdiction: Annotated[str | None, typer.Option(help="Only this jurisdiction (CN, US, UK).")] = None,
    channel: Annotated[str | None, typer.Option(help="Only contacts on this channel (sms, email, agent_task, letter...).")] = None,
    html: Annotated[Path | None, typer.Option(help="Where to write the HTML report, with its JSON beside it (default: "
                                                   "DATA_DIR/reports/report-<UTC time>.html; a folder: kpi-report.html in it).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON (the API's shape) instead of tables; no file.")] = False,
) -> None:
    """The collection KPIs from the database (DATABASE_URL): roll rates, cure rates, promises,
    contact, recovery, cost per cure and the experiments' arms, as tables, and an HTML report
    with charts."""
    from collections_domain.analytics.figures import Filters
    from collections_domain.analytics.kpis import compute_kpis
    from collections_domain.analytics.produce import KpiReportRequest, produce
    from collections_domain.analytics.report import print_kpis

    # The API's own filter model (GET /v1/reports/kpis), so both refuse the same values.
    filters = _request(Filters, {"strategy_arm": "arm"}, opened_from=opened_from and _date(opened_from, "opened_from"),
                       opened_to=opened_to and _date(opened_to, "opened_to"), policy_version=policy_version,
                       strategy_arm=arm, segment=segment, jurisdiction=jurisdiction, channel=channel)

    engine = _recorded_engine()
    if as_json:
        print(compute_kpis(engine, _policy(), filters).model_dump_json())
        return
    if html is not None and html.is_dir():
        html = html / "kpi-report.html"
    # Not the daily Schedule's kpi-report.html: a filtered report by hand must not replace it.
    html = html or get_settings().data_dir / "reports" / f"report-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.html"
    report, produced = produce(engine, _policy(), KpiReportRequest(filters=filters, name=html.stem), html.parent)
    print_kpis(report, console)
    if report.cases == 0 and filters.model_dump(exclude_none=True):
        console.print("No case matches these filters (a policy version, arm or segment that does not exist looks the same).")
    console.print(f"HTML report: {produced.html_path}  (JSON: {produced.json_path})")


def _recorded_engine():
    """The engine of the database the product recorded into; a SQLite file that does not exist is
    refused (the report would create an empty one and show nothing), exit 1 naming it."""
    from sqlalchemy.engine import make_url

    url = make_url(get_settings().resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" and not Path(url.database).exists():
        _fail(f"database: no database at {url.database} (DATABASE_URL, DATA_DIR): nothing was recorded there; "
              "run the demo or a worker first, or point DATABASE_URL at the product's database", code=1)
    return _engine()


@app.command("report-schedule")
def report_schedule_command(
    at: Annotated[str, typer.Option(help="Local time of day to produce it (HH:MM).")] = "06:00",
    zone: Annotated[str, typer.Option(help="The time zone of --at.")] = "UTC",
    days: Annotated[int | None, typer.Option(min=1, max=3650, help="Only cases opened in the last N days (default: all).")] = None,
) -> None:
    """Install (or update) the Temporal Schedule kpi-report-daily: the KPI report, written by a
    worker into DATA_DIR/reports every day at --at in --zone."""
    from collections_domain.analytics.produce import KpiReportRequest
    from collections_domain.analytics.schedule import ensure_report_schedule

    problems = [p for p in (time_zone_problem(zone, "zone"),) if p]
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
        problems.append(f"at: must be HH:MM (00:00-23:59), got {at!r}")
    if problems:
        _refuse(problems)
    hours, minutes = (int(part) for part in at.split(":"))

    async def run() -> None:
        client = await _client()
        schedule = await ensure_report_schedule(client, time(hours, minutes), zone, get_settings().temporal_task_queue,
                                                KpiReportRequest(days=days))
        scope = f", the cases opened in the last {days} days" if days else ", every case"
        console.print(f"schedule {schedule}: daily at {at} {zone}{scope}, into the workers' DATA_DIR/reports/kpi-report.html")

    asyncio.run(run())


score_app = typer.Typer(no_args_is_help=True, help="The propensity-to-pay model: rebuild it and print how good it is.")
app.add_typer(score_app, name="score-model")


@score_app.command("rebuild")
def score_model_rebuild(
    out: Annotated[Path | None, typer.Option(help="Where to write the model JSON (default: the packaged file).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Where to write the calibration plot PNG (default: docs/scoring/calibration.png).")] = None,
) -> None:
    """Train the propensity model again on the packaged data (held-out split, calibrated) and
    print its ROC AUC, Brier score and calibration table, for both data sets."""
    from collections_domain.scoring import train

    argv = [*(["--out", str(out)] if out else []), *(["--plot", str(plot)] if plot else [])]
    raise typer.Exit(train.main(argv))


# -- database ----------------------------------------------------------------------------------


@app.command("db-upgrade")
def db_upgrade_command() -> None:
    """Bring the database (DATABASE_URL) to the latest migration. Workers and commands do it on
    start too; this is for a deploy step that migrates before anything starts."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from collections_domain.store.db import db_upgrade

    url = get_settings().resolved_database_url
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        revision = db_upgrade(url)
    except (RuntimeError, SQLAlchemyError) as err:
        _fail(f"{shown}: {err}", code=1)
    print(f"{shown} is at revision {revision} (head)")


def exit_without_finalizing(code: int) -> None:
    """Flush and leave without interpreter finalization.

    The Temporal client's Rust threads can abort a short-lived process while Python finalizes
    ("PyGILState_Release: thread state ... must be current", temporalio/sdk-python#300); once the
    command's work is done there is nothing left to finalize.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_code = 0
    try:
        app()
    except SystemExit as done:
        exit_code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except KeyboardInterrupt:
        exit_code = 130
    exit_without_finalizing(exit_code)
