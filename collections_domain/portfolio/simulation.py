"""Replay the Home Credit loans through the real product on Temporal's time-skipping server.

Convention: each borrower's loans are replayed from one virtual day, ``day0`` (the borrower's
first day in the file falls on it; their own days keep their distances), in their own time zone
(``home_credit.py``). The loan book knows every schedule from the start, as a servicing system
does. Then time runs, and on each loan's days the product does what it does in production:

- at 00:30 local on a day an instalment falls due, or its grace ran out, the delinquency scan
  (``portfolio.scan``, restricted to that day's loans) forwards the instalment to a running case
  or opens a case for the overdue loan;
- at 12:00 local on each payment's day, the payment is posted as the gateway would
  (``portfolio.servicing.deliver_payment``): to the running case, or to the loan book;
- the cases run the ladder, cure, and are written off at the policy's ``[write_off]`` day.

The run ends after every loan's last event plus the longest write-off delay. What each loan did
comes from the product's own records (``collection_cases``, ``contact_decisions``, the loan book):
its cases, the highest DPD they reached, its outstanding amount at the end, the last case's
outcome, and the furthest ladder step taken.
"""

from __future__ import annotations

import asyncio
import csv
import tempfile
import time as wallclock
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlmodel import Session, select
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from collections_domain.analytics.figures import KpiReport, WhatIf, WhatIfRun
from collections_domain.analytics.kpis import compute_kpis, whatif_run
from collections_domain.case.search_attributes import CLI_TYPES, INDEXED_TYPES
from collections_domain.ops import codec
from collections_domain.ops.binaries import find_binary
from collections_domain.ops.settings import Settings
from collections_domain.ops.wiring import build_activities, build_worker
from collections_domain.portfolio import loan_book
from collections_domain.portfolio.home_credit import HomeCreditLoan, borrower_row
from collections_domain.portfolio.scan import ScanRequest, scan_page
from collections_domain.portfolio.servicing import deliver_payment
from collections_domain.rules import calendar, ladder
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, CollectionPolicy
from collections_domain.store.models import (
    Borrower,
    CollectionCase,
    ContactAttempt,
    ContactDecisionRecord,
)

#: An in-memory server lives only for this run: a key of its own, kept nowhere.
RING = codec.KeyRing.generate()

SCAN_WALL_TIME = time(0, 30)
SKIP_DEADLINE = timedelta(minutes=20)
#: The worker's activity threads: as many as the SQLite engine's pool has connections (5 + 10
#: overflow), so that no thread waits for one; more threads only contend for the GIL.
ACTIVITY_THREADS = 16
#: Payments of one instant delivered at once, at most.
CONCURRENT_DELIVERIES = 64
#: Outcome of a loan that never had a case (current, or never over the identification minimum).
NOT_OPENED = "not_opened"
#: The last case still running at the end.
STILL_OPEN = "open"


@dataclass
class LoanResult:
    """What one loan did in the replay (a row of ``simulate --loans-csv``)."""

    source_loan_id: str
    loan_id: str
    instalments: int
    cases: int
    max_days_past_due: int
    final_outstanding_minor: int
    outcome: str
    furthest_stage: str
    contacts: int = 0


@dataclass
class SimulationResult:
    """Every loan's result, the run's wall time (seconds), ``day0``, and the ladder's stages in
    order (for the table). ``totals``: contacts by channel, hand-offs."""

    loans: list[LoanResult]
    wall_seconds: float
    day0: str
    stages: list[str]
    totals: dict[str, int] = field(default_factory=dict)
    #: The run's what-if totals (``analytics.kpis.whatif_run``): cures, recovered, contacts, cost.
    whatif: WhatIfRun | None = None
    #: The KPI report of the run's records at its end (``simulate(kpis=True)``).
    kpis: KpiReport | None = None
    #: Wall seconds by phase: ``load`` (the loan book), ``skip`` (moving the clock: the cases'
    #: timers and all they start), ``scan``, ``payments``, ``results``, ``other`` (the server's and
    #: the worker's start and stop, the what-if totals, the KPIs); and ``instants``, how many
    #: instants the replay stopped at.
    phases: dict[str, float] = field(default_factory=dict)

    def table(self) -> tuple[list[str], list[tuple[str, dict[str, int]]]]:
        """Loans by the furthest stage reached (rows, in ladder order) and outcome (columns)."""
        outcomes = sorted({loan.outcome for loan in self.loans}, key=lambda o: (o == NOT_OPENED, o))
        rows = []
        for stage in self.stages:
            counts = {o: sum(1 for loan in self.loans if loan.furthest_stage == stage and loan.outcome == o) for o in outcomes}
            if any(counts.values()):
                rows.append((stage, counts))
        return outcomes, rows

    def write_csv(self, path: Path | str) -> None:
        """One row per loan (``LoanResult``'s fields)."""
        with Path(path).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(LoanResult.__dataclass_fields__))
            writer.writeheader()
            for loan in self.loans:
                writer.writerow(asdict(loan))


def _quiet_runtime() -> Runtime:
    """A runtime whose SDK core logs errors only (thousands of tasks at one instant make it warn)."""
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


async def skip_to(env: WorkflowEnvironment, instant: datetime) -> None:
    """Move the time-skipping server's clock to ``instant``, every timer on the way firing (a
    long RPC deadline: a skip waits for the work the fired timers start)."""
    delta = instant - (await env.get_current_time()).astimezone(UTC)
    if delta <= timedelta(0):
        return
    request = SleepRequest()
    request.duration.FromTimedelta(delta)
    await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SKIP_DEADLINE)


async def register_search_attributes(client: Client) -> None:
    """Register the project's search attributes on a test server."""
    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=client.namespace, search_attributes={name: INDEXED_TYPES[kind] for name, kind in CLI_TYPES.items()}))


def borrower_anchors(loans: Sequence[HomeCreditLoan], day0: date) -> dict[str, date]:
    """The date of day 0 of the file for each borrower, so that their first day falls on ``day0``."""
    first: dict[str, int] = {}
    for loan in loans:
        first[loan.borrower_id] = min(first.get(loan.borrower_id, loan.first_day), loan.first_day)
    return {borrower: day0 - timedelta(days=day) for borrower, day in first.items()}


@dataclass
class _Events:
    scans: dict[datetime, list[str]] = field(default_factory=dict)
    payments: dict[datetime, list[tuple[HomeCreditLoan, object]]] = field(default_factory=dict)
    horizon: datetime | None = None


def events(loans: Sequence[HomeCreditLoan], anchors: dict[str, date], policy: CollectionPolicy) -> _Events:
    """The replay's instants: scans (00:30 local on due days and when the grace runs out) and
    payments (12:00 local), and the horizon after which nothing can change."""
    grace = policy.identification.grace_days
    delay = max(policy.write_off.days_past_due, policy.write_off.no_payment_days + 1) + 2
    found = _Events()
    latest = datetime.min.replace(tzinfo=UTC)
    for loan in loans:
        anchor, tz = anchors[loan.borrower_id], loan.market.timezone
        for instalment in loan.instalments:
            due = anchor + timedelta(days=instalment.due_day)
            for day in (due, due + timedelta(days=grace + 1)):
                at = calendar.local_instant(day, SCAN_WALL_TIME, tz)
                found.scans.setdefault(at, [])
                if loan.loan_id not in found.scans[at]:
                    found.scans[at].append(loan.loan_id)
        for payment in loan.payments:
            at = loan.paid_at(payment, anchor)
            found.payments.setdefault(at, []).append((loan, payment))
        last = max([anchor + timedelta(days=i.due_day) for i in loan.instalments]
                   + [anchor + timedelta(days=p.day) for p in loan.payments])
        latest = max(latest, calendar.local_instant(last + timedelta(days=delay), time(0, 0), tz))
    found.horizon = latest
    return found


async def simulate(
    loans: Sequence[HomeCreditLoan],
    *,
    progress: Callable[[str, int, int], None] | None = None,
    database_url: str | None = None,
    policy_path: Path | str | None = None,
    kpis: bool = False,
    price_list: dict[str, dict[str, int]] | None = None,
) -> SimulationResult:
    """Replay ``loans`` (module docstring) on a fresh time-skipping server, with a database of
    their own (``database_url``, or a temporary SQLite file) and the ``record`` delivery back-end,
    under the policy file ``policy_path`` (default: the packaged default; another must have a
    version of its own, like any released policy). ``kpis``: also compute the KPI report of the
    run's records as of its end (``result.kpis``). ``price_list``: the unit costs (currency ->
    action -> minor units) to cost the run's contacts at, instead of the policy's own.

    Raises:
        PolicyError: the policy file is invalid, or reuses a packaged version with other content.
    """
    started = wallclock.perf_counter()
    report = progress or (lambda phase, done, total: None)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"), data_converter=codec.data_converter(RING),
        runtime=_quiet_runtime(),
    )
    try:
        await register_search_attributes(env.client)
        with tempfile.TemporaryDirectory(prefix="collections-sim-") as folder:
            settings = Settings(temporal_task_queue="collections-simulation", data_dir=Path(folder),
                                database_url=database_url or f"sqlite:///{Path(folder) / 'simulation.db'}",
                                delivery_backend="record",
                                collections_policy=str(policy_path) if policy_path is not None else None)
            activities = build_activities(settings)
            policy = activities.policies.current
            worker = build_worker(env.client, settings, activities, max_activity_threads=ACTIVITY_THREADS,
                                  max_cached_workflows=2 * len(loans) + 100)
            async with worker:
                result = await _replay(env, loans, activities.engine, policy, settings.temporal_task_queue, report)
            priced = policy if price_list is None else policy.model_copy(update={"unit_costs": price_list})
            result.whatif = whatif_run(activities.engine, priced, policy_path=str(policy_path or DEFAULT_POLICY_PATH),
                                       loans=len(loans))
            if kpis:
                result.kpis = compute_kpis(activities.engine, policy, now=(await env.get_current_time()).astimezone(UTC))
            activities.delivery.close()
            activities.engine.dispose()
    finally:
        await env.shutdown()
    result.wall_seconds = wallclock.perf_counter() - started
    result.phases["other"] = result.wall_seconds - sum(v for k, v in result.phases.items() if k != "instants")
    return result


async def _replay(env, loans, engine, policy, task_queue, report) -> SimulationResult:
    client = env.client
    phases: dict[str, float] = {}
    clock = wallclock.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now_ = wallclock.perf_counter()
        phases[phase] = phases.get(phase, 0.0) + now_ - clock
        clock = now_

    now = (await env.get_current_time()).astimezone(UTC)
    day0 = now.date() + timedelta(days=2)
    anchors = borrower_anchors(loans, day0)
    with Session(engine) as db:
        for loan in {loan.borrower_id: loan for loan in loans}.values():
            db.merge(Borrower(**borrower_row(loan)))
        db.commit()
    for index, loan in enumerate(loans):
        loan_book.upsert_loan(engine, loan.loan_in(anchors[loan.borrower_id]), policy, source="home-credit")
        loan_book.refresh(engine, loan.loan_id, policy, now)
        report("loading the loan book", index + 1, len(loans))
    found = events(loans, anchors, policy)
    instants = sorted(set(found.scans) | set(found.payments))
    gate = asyncio.Semaphore(CONCURRENT_DELIVERIES)
    lap("load")

    async def pay(loan: HomeCreditLoan, payment, at: datetime) -> None:
        async with gate:
            await deliver_payment(client, engine, policy, loan.loan_id,
                                  loan.payment_received(payment, anchors[loan.borrower_id]), source="home-credit", now=at)

    for done, at in enumerate(instants, start=1):
        await skip_to(env, at)
        lap("skip")
        if at in found.scans:
            request = ScanRequest(loan_ids=found.scans[at], as_of=at, scan_id=f"simulation-{at:%Y%m%dT%H%M}",
                                  limit=len(found.scans[at]) + 1)
            page = await scan_page(engine, client, policy, request, task_queue=task_queue, now=at)
            if page.errors:
                raise RuntimeError(f"the scan at {at} failed: {page.errors[:3]}")
            lap("scan")
        if at in found.payments:
            await asyncio.gather(*(pay(loan, payment, at) for loan, payment in found.payments[at]))
            lap("payments")
        report("replaying events", done, len(instants))
    await skip_to(env, found.horizon)  # type: ignore[arg-type]
    await asyncio.sleep(0.5)
    lap("skip")
    result = _results(engine, loans, policy, day0, found.horizon)  # type: ignore[arg-type]
    lap("results")
    result.phases = {**phases, "instants": float(len(instants))}
    return result


async def what_if(loans: Sequence[HomeCreditLoan], policy_paths: Sequence[Path | str], *,
                  progress: Callable[[str, int, int], None] | None = None,
                  with_kpis: bool = False) -> tuple[list[SimulationResult], WhatIf]:
    """Replay the same ``loans`` under each policy file in turn, each on a server and a database of
    its own (``simulate``), and put their totals side by side (``runs[0]`` is the baseline, whose
    KPI report ``with_kpis`` computes as well). Every run is costed at the baseline's unit costs
    (``[unit_costs]``), so that the costs compare what each policy does, at one price list.

    Raises:
        PolicyError: a policy file is invalid; ValueError: fewer than two policies, or two with
            one version (their figures could not be told apart).
    """
    from collections_domain.rules.policy import load_policy

    policies = [load_policy(path) for path in policy_paths]
    versions = [policy.version for policy in policies]
    if len(policy_paths) < 2:
        raise ValueError("policy: give at least two policies to compare")
    if len(set(versions)) != len(versions):
        raise ValueError(f"policy: each policy needs a version of its own, got {versions}")
    results = []
    for index, path in enumerate(policy_paths):
        step = progress and (lambda phase, done, total, v=versions[index]: progress(f"{v}: {phase}", done, total))
        results.append(await simulate(loans, progress=step, policy_path=path, kpis=with_kpis and index == 0,
                                      price_list=policies[0].unit_costs))
    return results, WhatIf(runs=[r.whatif for r in results if r.whatif is not None])


def _results(engine, loans, policy, day0: date, horizon: datetime) -> SimulationResult:
    stages = [NOT_OPENED, *ladder.stage_order(policy)]
    rank = {stage: i for i, stage in enumerate(stages)}
    with Session(engine) as db:
        cases: dict[str, list[CollectionCase]] = {}
        for row in db.exec(select(CollectionCase).order_by(CollectionCase.id)):
            cases.setdefault(row.loan_id, []).append(row)
        steps: dict[str, set[str]] = {}
        for loan_id, step_name in db.exec(select(ContactDecisionRecord.loan_id, ContactDecisionRecord.step)):
            steps.setdefault(loan_id, set()).add(step_name)
        contacts: dict[str, int] = {}
        totals: dict[str, int] = {}
        for loan_id, channel in db.exec(select(ContactAttempt.loan_id, ContactAttempt.channel)):
            contacts[loan_id] = contacts.get(loan_id, 0) + 1
            totals[channel] = totals.get(channel, 0) + 1
    results = []
    for loan in loans:
        episodes = cases.get(loan.loan_id, [])
        book = loan_book.read_loan(engine, loan.loan_id, policy, horizon)
        taken = steps.get(loan.loan_id, set()) | ({"identified"} if episodes else set())
        furthest = max(taken | {NOT_OPENED}, key=lambda s: rank.get(s, 0))
        results.append(LoanResult(
            source_loan_id=loan.source_loan_id,
            loan_id=loan.loan_id,
            instalments=len(loan.instalments),
            cases=len(episodes),
            max_days_past_due=max((c.max_days_past_due or 0 for c in episodes), default=0),
            final_outstanding_minor=book.view.outstanding.total if book else 0,
            outcome=(episodes[-1].outcome or STILL_OPEN) if episodes else NOT_OPENED,
            furthest_stage=furthest,
            contacts=contacts.get(loan.loan_id, 0),
        ))
    return SimulationResult(loans=results, wall_seconds=0.0, day0=day0.isoformat(), stages=stages, totals=totals)
