"""Scale-out proven small (issue 14): two ``worker.py`` processes on one task queue, one database
and one payload key ring, against the real dev server; cases move between them and nothing is
lost or done twice.

N_CASES cases (CN rules, no accrual, DPD 3, in zones whose clock is now inside the contact window,
so the ``initial`` step, an SMS and an email, is due at once) open while worker A is the only
process polling: A takes every case's first workflow tasks and its step's activities. Then:

- ``test_cases_move_between_workers_on_graceful_stops``: a payment each while only A runs (A,
  sticky); worker B starts, A is stopped gracefully with SIGTERM (what Compose and Kubernetes
  send; ``worker.py`` drains its worker on it) and a second payment and a promise to pay reach
  every case: B handles them. A new A process (A2) starts, B is stopped with SIGINT and a third
  payment each is handled by A2. Each case's history shows its workflow tasks started by
  exactly A, then B, then A2, in that order and by no other process.
- ``test_case_moves_when_worker_killed_mid_flight``: with B polling too, the test takes the
  database's write lock, and payments reach three of the cases: A starts their workflow tasks and
  blocks in the local activity that writes the payment (the ``payments`` table is checked to be
  still empty for them), and A is SIGKILLed there. A second payment reaches those three cases
  while their tasks are still started on the dead A, and a first one reaches the two others, whose
  next task the server first offers A's (dead) sticky queue. The lock is released. The in-flight
  tasks time out after their 10 s start-to-close timeout (``WORKFLOW_TASK_TIMED_OUT``,
  START_TO_CLOSE, asserted) and B re-runs them from history, the payment write included; the two
  others reach B after the sticky queue's schedule-to-start timeout (10 s, the SDK default, the
  worker sets none) or at once, if the server already knew A's sticky poller was gone (either is
  accepted and printed).

Both then assert, for every case: the ``status`` query has every posted payment applied once,
``paid_minor`` and ``outstanding_minor`` right to the minor unit, the promise open, no rejected
signal, the ``initial`` step taken once with both its contacts recorded; the database holds
exactly the posted payments (ids and amounts), one ``collection_cases`` row, the promise once,
the two ``contact_attempts`` rows and no rejected signal; no workflow task failed
(non-determinism would show as ``WORKFLOW_TASK_FAILED``).

Which process handled a task: the ``identity`` of ``WORKFLOW_TASK_STARTED`` (and
``ACTIVITY_TASK_STARTED``) events. ``worker.py`` and ``Settings`` have no identity setting, so
each process has the SDK's default, ``<pid>@<host>``: distinct per process, known from the pid the
test started.

Real clock throughout; waits poll (``eventually``) with generous bounds. Measured on the 2-core
build machine (load average 9-10 from other work, 3 runs): the file takes 25-34 s with the dev
server's start; the graceful test 8-13 s, each hand-over settling within 0.4-1.1 s of the signals
(a worker stopped gracefully tells the server its sticky queue is gone, so nothing waits for a
timeout); the
SIGKILL test 17-20 s, the cases settling 10.6-11.4 s after the kill, and the two queued cases
showed a SCHEDULE_TO_START timeout in every run.

Before issue 14, ``worker.py`` on SIGTERM exited at once with -15, without draining: its cases
waited for the same 10 s timeouts as after a SIGKILL. The graceful test fails on that code.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import func, select
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from collections_domain.case.contract import (
    CaseInput,
    CaseStatus,
    PaymentReceived,
    PromiseToPay,
)
from collections_domain.client import (
    case_handle,
    send_payment,
    send_promise,
    start_case,
)
from collections_domain.rules import calendar
from collections_domain.store.db import make_engine, session
from collections_domain.store.models import (
    CollectionCase,
    ContactAttempt,
    Payment,
    PromiseRecord,
    RejectedSignalRecord,
)
from tests.databases import fresh_database_url, on_postgres
from tests.e2e.chaos_test import WorkerProcess, zones_in_window
from tests.e2e.conftest import eventually
from tests.helpers import seed_borrower
from tests.keys import TEST_PAYLOAD_KEYS

N_CASES = 5
PRINCIPAL_MINOR = 300_000  # CNY 3,000.00
DAYS_PAST_DUE = 3  # the ``initial`` step: SMS and email
INITIAL_ACTIONS = ("sms_reminder", "email_overdue_notice")
#: How long anything may take to settle on a loaded 2-core machine (polled, not slept).
SETTLE_TIMEOUT = 60.0
#: The workflow task timeout (the SDK's default start-to-close, ``start_case`` sets none) and the
#: sticky queue's schedule-to-start timeout (the SDK's default, ``build_worker`` sets none).
TASK_TIMEOUT = 10.0
HOST = socket.gethostname()
WFT_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
WFT_TIMED_OUT = EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
WFT_FAILED = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
ACTIVITY_STARTED = EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED


@dataclass
class Case:
    loan_id: str
    tz: str
    due: date
    payments: list[tuple[str, int]] = field(default_factory=list)
    promises: list[tuple[str, int, date]] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        return f"collection-{self.loan_id}"

    @property
    def paid_minor(self) -> int:
        return sum(amount for _, amount in self.payments)


class Worker(WorkerProcess):
    """``chaos_test.WorkerProcess`` with a name, its own log folder, its identity and a graceful
    stop."""

    def __init__(self, name: str, env: dict[str, str], tmp_path: Path):
        log_dir = tmp_path / f"worker-{name}"
        log_dir.mkdir()
        super().__init__(env, log_dir)
        self.name = name

    @property
    def identity(self) -> str:
        """The SDK's default identity of this process (``<pid>@<host>``)."""
        assert self.process is not None
        return f"{self.process.pid}@{HOST}"

    async def interrupt(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the worker gracefully with ``signum`` (SIGTERM, what Compose and Kubernetes
        send, or SIGINT: ``worker.py`` drains its worker on either, then exits 0) by the pid this
        test started; the exit status."""
        assert self.process is not None and self.process.poll() is None
        os.kill(self.process.pid, signum)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} still running {timeout}s after {signum!r}:\n{self.tail()}")
            await asyncio.sleep(0.1)
        return self.process.returncode


def worker_env(client, task_queue: str, database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path),
        "PAYLOAD_KEYS": TEST_PAYLOAD_KEYS,
        "DELIVERY_BACKEND": "record",
        "METRICS_BIND_ADDRESS": "",  # two processes: no port to share
        "LOG_LEVEL": "WARNING",
    }


def new_cases(tag: str) -> list[Case]:
    now = datetime.now(UTC)
    zones = zones_in_window(now)
    cases = []
    for index in range(N_CASES):
        tz = zones[index % len(zones)]
        due = calendar.local_date(now, tz) - timedelta(days=DAYS_PAST_DUE)
        cases.append(Case(loan_id=f"L-2w-{tag}-{index}", tz=tz, due=due))
    return cases


async def open_cases(client, engine, task_queue: str, cases: list[Case]) -> None:
    for case in cases:
        seed_borrower(engine, f"B-{case.loan_id}", tz=case.tz)
    for case in cases:
        await start_case(client, CaseInput(
            loan_id=case.loan_id, borrower_id=f"B-{case.loan_id}", currency="CNY",
            principal_due_minor=PRINCIPAL_MINOR, oldest_due_date=case.due, timezone=case.tz,
            jurisdiction="CN", portfolio="no-accrual",
        ), task_queue=task_queue)


async def pay(client, case: Case, payment_id: str, amount_minor: int) -> None:
    await send_payment(client, case.loan_id, PaymentReceived(
        payment_id=payment_id, amount_minor=amount_minor, currency="CNY", paid_at=datetime.now(UTC)))
    case.payments.append((payment_id, amount_minor))


async def promise(client, case: Case, promise_id: str, amount_minor: int) -> None:
    promised = calendar.local_date(datetime.now(UTC), case.tz) + timedelta(days=7)
    await send_promise(client, case.loan_id, PromiseToPay(
        promise_id=promise_id, amount_minor=amount_minor, promised_date=promised))
    case.promises.append((promise_id, amount_minor, promised))


async def settle_problem(client, engine, case: Case) -> str | None:
    """Why ``case`` has not settled (its step taken, every signal applied, nothing pending), or
    ``None``. The database and ``describe`` first: a query waits while a task is out on a dead
    worker."""
    with session(engine) as db:
        contacts = db.exec(select(func.count()).select_from(ContactAttempt).where(ContactAttempt.loan_id == case.loan_id)).one()
        payments = set(db.exec(select(Payment.payment_id).where(Payment.loan_id == case.loan_id)))
        promises = set(db.exec(select(PromiseRecord.promise_id).where(PromiseRecord.loan_id == case.loan_id)))
    if contacts < len(INITIAL_ACTIONS):
        return f"{contacts} contact attempts recorded"
    if missing := [pid for pid, _ in case.payments if pid not in payments]:
        return f"payments not in the payments table yet: {missing}"
    if missing := [pid for pid, _, _ in case.promises if pid not in promises]:
        return f"promises not in the promises table yet: {missing}"
    handle = case_handle(client, case.loan_id)
    try:
        described = (await handle.describe()).raw_description
    except RPCError as err:
        return f"no describe answer ({err})"
    if described.HasField("pending_workflow_task"):
        return f"a workflow task is pending (attempt {described.pending_workflow_task.attempt})"
    if described.pending_activities:
        return f"{len(described.pending_activities)} activities pending"
    try:
        st = await handle.query("status", result_type=CaseStatus, rpc_timeout=timedelta(seconds=5))
    except (RPCError, WorkflowQueryFailedError) as err:
        return f"no status answer ({err.__class__.__name__}: {str(err)[:80]})"
    if [s.step for s in st.steps_done] != ["initial"]:
        return f"steps done {[s.step for s in st.steps_done]}"
    applied = {p.payment_id for p in (st.ledger.payments if st.ledger else []) if p.status == "applied"}
    if missing := [pid for pid, _ in case.payments if pid not in applied]:
        return f"payments not applied in the ledger yet: {missing}"
    return None


async def settle(client, engine, cases: list[Case], what: str, workers: list[Worker]) -> float:
    """Wait until every case settled; the seconds it took."""
    began = time.monotonic()
    problems: dict[str, str] = {}

    async def all_settled() -> bool:
        problems.clear()
        for case in cases:
            if problem := await settle_problem(client, engine, case):
                problems[case.loan_id] = problem
        return not problems

    if not await eventually(all_settled, timeout=SETTLE_TIMEOUT, interval=0.3):
        logs = "\n".join(f"worker {w.name} (exit {w.process.poll()}):\n{w.tail(15)}" for w in workers if w.process)
        raise AssertionError(f"{what}: not settled after {SETTLE_TIMEOUT:.0f}s:\n"
                             + "\n".join(f"  {loan}: {why}" for loan, why in sorted(problems.items())) + f"\n{logs}")
    return time.monotonic() - began


async def history_of(client, case: Case):
    return (await client.get_workflow_handle(case.workflow_id).fetch_history()).events


def runs(identities: list[str]) -> list[str]:
    """``identities`` with consecutive repeats collapsed: the hand-overs, in order."""
    out: list[str] = []
    for identity in identities:
        if not out or out[-1] != identity:
            out.append(identity)
    return out


def task_identities(events) -> list[str]:
    return [e.workflow_task_started_event_attributes.identity for e in events if e.event_type == WFT_STARTED]


async def assert_complete(client, engine, cases: list[Case]) -> None:
    """Every case's status, ledger and database rows: each signal applied once, to the minor unit."""
    for case in cases:
        st = await case_handle(client, case.loan_id).query("status", result_type=CaseStatus)
        assert not st.rejected_signals, f"{case.loan_id}: rejected signals {st.rejected_signals}"
        applied = sorted((p.payment_id, p.amount_minor) for p in st.ledger.payments if p.status == "applied")
        assert applied == sorted(case.payments), f"{case.loan_id}: ledger {applied}, posted {sorted(case.payments)}"
        assert len(st.ledger.payments) == len(case.payments), f"{case.loan_id}: ledger {st.ledger.payments}"
        assert st.paid_minor == case.paid_minor, f"{case.loan_id}: paid {st.paid_minor}, posted {case.paid_minor}"
        assert st.outstanding_minor == PRINCIPAL_MINOR - case.paid_minor, (
            f"{case.loan_id}: outstanding {st.outstanding_minor}, expected {PRINCIPAL_MINOR - case.paid_minor}")
        assert st.overpaid_minor == 0 and st.outcome is None, f"{case.loan_id}: {st.overpaid_minor}, {st.outcome}"
        if case.promises:
            promise_id, amount, promised = case.promises[-1]
            assert st.open_promise is not None, f"{case.loan_id}: no open promise"
            assert (st.open_promise.promise_id, st.open_promise.amount_minor, st.open_promise.promised_date) == (
                promise_id, amount, promised), f"{case.loan_id}: open promise {st.open_promise}"
        assert [s.step for s in st.steps_done] == ["initial"], f"{case.loan_id}: steps {st.steps_done}"
        results = {r.action: r.status for r in st.steps_done[0].results}
        assert sorted(results) == sorted(INITIAL_ACTIONS), f"{case.loan_id}: step results {results}"
        with session(engine) as db:
            payments = list(db.exec(select(Payment).where(Payment.loan_id == case.loan_id)))
            cases_rows = list(db.exec(select(CollectionCase).where(CollectionCase.loan_id == case.loan_id)))
            promises = list(db.exec(select(PromiseRecord).where(PromiseRecord.loan_id == case.loan_id)))
            contacts = list(db.exec(select(ContactAttempt).where(ContactAttempt.loan_id == case.loan_id)))
            rejected = list(db.exec(select(RejectedSignalRecord).where(RejectedSignalRecord.loan_id == case.loan_id)))
        assert sorted((p.payment_id, p.amount_minor) for p in payments) == sorted(case.payments), (
            f"{case.loan_id}: payments table {[(p.payment_id, p.amount_minor) for p in payments]}, posted {case.payments}")
        assert all(p.applied_minor == p.amount_minor and p.overpaid_minor == 0 for p in payments), case.loan_id
        assert len(cases_rows) == 1, f"{case.loan_id}: {len(cases_rows)} collection_cases rows"
        assert cases_rows[0].outstanding_minor == PRINCIPAL_MINOR - case.paid_minor, (
            f"{case.loan_id}: collection_cases.outstanding_minor {cases_rows[0].outstanding_minor}")
        assert sorted((p.promise_id, p.amount_minor, p.promised_date) for p in promises) == sorted(case.promises), (
            f"{case.loan_id}: promises table {[(p.promise_id, p.amount_minor) for p in promises]}")
        assert sorted((c.step, c.action) for c in contacts) == sorted(("initial", a) for a in INITIAL_ACTIONS), (
            f"{case.loan_id}: contact attempts {[(c.step, c.action, c.status) for c in contacts]}")
        assert all(c.status == "recorded" and c.attempts == 1 for c in contacts), (
            f"{case.loan_id}: contact attempts {[(c.action, c.status, c.attempts) for c in contacts]}")
        assert not rejected, f"{case.loan_id}: rejected_signals rows {[(r.kind, r.reason) for r in rejected]}"
        described = await case_handle(client, case.loan_id).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING, f"{case.loan_id}: {described.status}"
        events = await history_of(client, case)
        failed = [e.workflow_task_failed_event_attributes.cause for e in events if e.event_type == WFT_FAILED]
        assert not failed, f"{case.loan_id}: workflow tasks failed: {failed}"


class WriteLock:
    """The database's write lock, held by the test: a worker's write blocks until it is released
    (SQLite: ``BEGIN IMMEDIATE``, readers go on under WAL; PostgreSQL: ``LOCK TABLE payments``)."""

    def __init__(self, engine, database_url: str):
        self.postgres = on_postgres()
        if self.postgres:
            self.connection = engine.connect()
            self.transaction = self.connection.begin()
            self.connection.execute(text("LOCK TABLE payments IN EXCLUSIVE MODE"))
        else:
            path = make_url(database_url).database
            self.connection = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")

    def payments_of(self, loan_ids: list[str]) -> int:
        marks = ", ".join(f"'{loan}'" for loan in loan_ids)  # the test's own ids
        sql = f"SELECT count(*) FROM payments WHERE loan_id IN ({marks})"
        if self.postgres:
            return self.connection.execute(text(sql)).scalar_one()
        return self.connection.execute(sql).fetchone()[0]

    def release(self) -> None:
        if self.connection is None:
            return
        if self.postgres:
            self.transaction.rollback()
        else:
            self.connection.execute("ROLLBACK")
        self.connection.close()
        self.connection = None


async def cleanup(client, cases: list[Case], workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop()
    for case in cases:  # leave nothing running on the shared server
        try:
            await client.get_workflow_handle(case.workflow_id).terminate(reason="two-workers test finished")
        except RPCError:
            pass


async def start_polling(worker: Worker) -> None:
    worker.start()
    await worker.polling()


@pytest.mark.timeout(240)
async def test_cases_move_between_workers_on_graceful_stops(local_env, tmp_path):
    began = time.monotonic()
    client = local_env.client
    task_queue = f"two-workers-{uuid.uuid4().hex[:8]}"
    database_url = fresh_database_url(tmp_path, "two-workers")
    engine = make_engine(database_url)
    env = worker_env(client, task_queue, database_url, tmp_path)
    a, b, a2 = Worker("a", env, tmp_path), Worker("b", env, tmp_path), Worker("a2", env, tmp_path)
    cases = new_cases(uuid.uuid4().hex[:6])
    timings: dict[str, float] = {}
    try:
        await start_polling(a)
        await open_cases(client, engine, task_queue, cases)
        timings["open"] = await settle(client, engine, cases, "first steps on A", [a])
        for n, case in enumerate(cases):
            await pay(client, case, f"{case.loan_id}-p0", 10_001 + n)
        timings["pay_on_a"] = await settle(client, engine, cases, "payment on A", [a])

        await start_polling(b)
        exit_a = await a.interrupt()
        assert exit_a == 0, f"worker A exited {exit_a} on SIGTERM:\n{a.tail()}"
        for n, case in enumerate(cases):
            await pay(client, case, f"{case.loan_id}-p1", 2_345 + n)
            await promise(client, case, f"{case.loan_id}-ptp", 50_000)
        timings["pay_on_b"] = await settle(client, engine, cases, "payment and promise after A stopped", [a, b])

        await start_polling(a2)
        exit_b = await b.interrupt(signal.SIGINT)
        assert exit_b == 0, f"worker B exited {exit_b} on SIGINT:\n{b.tail()}"
        for n, case in enumerate(cases):
            await pay(client, case, f"{case.loan_id}-p2", 99 + n)
        timings["pay_on_a2"] = await settle(client, engine, cases, "payment after B stopped", [b, a2])

        await assert_complete(client, engine, cases)
        expected = [a.identity, b.identity, a2.identity]
        for case in cases:
            events = await history_of(client, case)
            identities = task_identities(events)
            assert runs(identities) == expected, (
                f"{case.loan_id}: workflow tasks by {runs(identities)} (each {identities}), expected A, B, A2 = {expected}")
            activities = {e.activity_task_started_event_attributes.identity for e in events if e.event_type == ACTIVITY_STARTED}
            assert activities <= set(expected), f"{case.loan_id}: activities run by {activities}"
            # A graceful stop hands the cases over at once: no task waited for a timeout.
            assert not [e for e in events if e.event_type == WFT_TIMED_OUT], f"{case.loan_id}: a workflow task timed out"
        print(f"\ntwo workers, graceful: {N_CASES} cases A -> B -> A2 ({expected}); "
              + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) + f"; total {time.monotonic() - began:.1f}s")
    finally:
        await cleanup(client, cases, [a, b, a2])
        engine.dispose()


@pytest.mark.timeout(240)
async def test_case_moves_when_worker_killed_mid_flight(local_env, tmp_path):
    began = time.monotonic()
    client = local_env.client
    task_queue = f"two-workers-{uuid.uuid4().hex[:8]}"
    database_url = fresh_database_url(tmp_path, "two-workers")
    engine = make_engine(database_url)
    env = worker_env(client, task_queue, database_url, tmp_path)
    a, b = Worker("a", env, tmp_path), Worker("b", env, tmp_path)
    cases = new_cases(uuid.uuid4().hex[:6])
    in_flight, queued = cases[:3], cases[3:]
    timings: dict[str, float] = {}
    lock: WriteLock | None = None
    try:
        await start_polling(a)
        await open_cases(client, engine, task_queue, cases)
        timings["open"] = await settle(client, engine, cases, "first steps on A", [a])
        await start_polling(b)

        lock = WriteLock(engine, database_url)
        before = {case.loan_id: len(await history_of(client, case)) for case in in_flight}  # events before the payment
        for n, case in enumerate(in_flight):
            await pay(client, case, f"{case.loan_id}-p0", 10_001 + n)

        async def a_started_them() -> bool:
            for case in in_flight:
                events = await history_of(client, case)
                after = [e for e in events if e.event_type == SIGNALED]
                if not after or not [e for e in events if e.event_id > after[-1].event_id and e.event_type == WFT_STARTED]:
                    return False
            return True

        assert await eventually(a_started_them, timeout=SETTLE_TIMEOUT, interval=0.1), (
            f"A did not start the payments' workflow tasks:\n{a.tail()}")
        a.kill()
        killed_at = time.monotonic()
        assert a.process.returncode == -signal.SIGKILL
        # The kill landed mid-flight: A started the tasks, and their payment writes had not committed.
        assert lock.payments_of([c.loan_id for c in in_flight]) == 0, "A wrote a payment through the lock"
        for n, case in enumerate(in_flight):
            await pay(client, case, f"{case.loan_id}-p1", 2_345 + n)  # arrives while its task is out on dead A
        for n, case in enumerate(queued):
            await pay(client, case, f"{case.loan_id}-p0", 777 + n)  # first offered to A's sticky queue
        lock.release()
        timings["recovered"] = await settle(client, engine, cases, "after A was killed", [a, b])
        timings["since_kill"] = time.monotonic() - killed_at

        # A promise each, on B alone, after the hand-over.
        for case in cases:
            await promise(client, case, f"{case.loan_id}-ptp", 50_000)
        timings["promise_on_b"] = await settle(client, engine, cases, "promise on B", [b])

        await assert_complete(client, engine, cases)
        timeouts: dict[str, list[str]] = {}
        for case in cases:
            events = await history_of(client, case)
            identities = task_identities(events)
            assert runs(identities) == [a.identity, b.identity], (
                f"{case.loan_id}: workflow tasks by {runs(identities)}, expected A then B = {[a.identity, b.identity]}")
            kinds = [TimeoutType.Name(e.workflow_task_timed_out_event_attributes.timeout_type)
                     for e in events if e.event_type == WFT_TIMED_OUT]
            timeouts[case.loan_id] = kinds
            if case in in_flight:
                assert kinds == ["TIMEOUT_TYPE_START_TO_CLOSE"], f"{case.loan_id}: workflow task timeouts {kinds}"
                started_by_a = [e for e in events[before[case.loan_id]:] if e.event_type == WFT_STARTED
                                and e.workflow_task_started_event_attributes.identity == a.identity]
                assert started_by_a, f"{case.loan_id}: A started no task after the payment"
            else:
                assert set(kinds) <= {"TIMEOUT_TYPE_SCHEDULE_TO_START"}, f"{case.loan_id}: workflow task timeouts {kinds}"
        assert timings["since_kill"] >= TASK_TIMEOUT - 1, (
            f"the in-flight tasks came back {timings['since_kill']:.1f}s after the kill, before their timeout")
        print(f"\ntwo workers, SIGKILL mid-flight: {N_CASES} cases A -> B ({a.identity} -> {b.identity}); "
              f"workflow task timeouts { {k[-1]: v for k, v in timeouts.items()} }; "
              + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) + f"; total {time.monotonic() - began:.1f}s")
    finally:
        if lock is not None:
            lock.release()
        await cleanup(client, cases, [a, b])
        engine.dispose()
