"""Chaos on the real dev server: the worker is SIGKILLed and restarted while cases take their
steps and payments arrive; nothing is lost, nothing is sent twice, nothing fails.

N_CASES cases (CN rules, no accrual, in zones whose clock is now inside the 09:00-20:00 contact
window, so every step is due at once) are opened at DPD 3-36: the ``initial`` step (SMS and
email), ``deep`` (agent call task and demand letter), ``agency`` (a placement child) and
``legal`` (a legal-referral child). ``worker.py`` runs as its own process with
``DELIVERY_BACKEND=http`` against ``tests.provider.IdempotentProvider`` (a local HTTP stub that
acts once per ``Idempotency-Key`` and answers a repeated key with its first result, like a real
provider), on the test's database and payload keys. KILLS times, at seeded moments after it
polls again, it is killed with SIGKILL and restarted after a seeded pause. Meanwhile 2-3
payments per case arrive as ``payment_received`` signals from a Temporal client
(``collections_domain.client.send_payment``), spread over the chaos window; every other case's
last payment pays the rest (it is posted once the provider saw the case's step, so that the
step is due in every run) and cures it, which recalls a placement or withdraws a referral.

Once every case has settled (its step taken, every payment applied, each cured case closed) it
asserts:

- 0 lost payments: every posted payment is in the case's ``status`` ledger (applied, none
  rejected), in ``paid_minor`` and in the database's ``payments`` table, exactly once;
- 0 duplicate messages: each ``(case, step, action)`` reached the provider under exactly one
  idempotency key; each key was acted on once (repeats of a key, retries after a kill answered
  with the first result, are counted and printed, not failed), the ``contact_attempts`` row of
  each key holds the provider's first answer, and the provider saw exactly the expected messages;
- 0 lost contacts: no action of a step failed over to a manual review;
- 0 failed workflows: visibility lists every case and child of the test's task queue as Running
  or Completed (none Failed, Terminated, TimedOut or Canceled).

N_CASES = 16, KILLS = 4 (the first inside the burst of first steps, when the provider has
received 4-14 of the 26 step messages; the others 0.3-6 s after each restart). Measured on the
2-core build machine: about 40 s a run, most of it the wait for the contact batches and
hand-offs running on the worker killed mid-burst: they heartbeat before each send, so the server
retries them on the restarted worker once their 30 s heartbeat timeout passes
(``workflows/case_shell.py`` ``CONTACT_HEARTBEAT``). Before the heartbeat they waited for their
120 s start-to-close timeout and a run took about 129 s (this test found it).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from collections_domain.case.children import legal_workflow_id, placement_workflow_id
from collections_domain.case.contract import CaseInput, CaseStatus, PaymentReceived
from collections_domain.client import case_handle, send_payment, start_case
from collections_domain.rules import calendar
from collections_domain.store.db import make_engine, session
from collections_domain.store.models import ContactAttempt, Payment
from tests.databases import fresh_database_url
from tests.helpers import seed_borrower
from tests.keys import TEST_PAYLOAD_KEYS
from tests.provider import IdempotentProvider

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261201
N_CASES = 16
KILLS = 4
#: Payments are posted over this many seconds from the first case's opening.
CHAOS_SECONDS = 30.0
#: After the chaos: how long every case may take to settle. A contact batch that was running on a
#: killed worker is retried only when its 120 s start-to-close timeout runs out (the activity does
#: not heartbeat), so the bound is that plus the restarts' sticky-queue and task timeouts.
SETTLE_TIMEOUT = 170.0
#: The provider's answer comes this long after it acted: a kill in between makes a retry repeat
#: the key (answered with the first result).
PROVIDER_LATENCY = 0.2
#: The first SIGKILL comes when the provider has received this many requests (seeded in the
#: range): inside the burst of the cases' first steps (29 messages), with contact batches running.
FIRST_KILL_AT_REQUEST = (4, 14)
#: (step, DPD choices, principal, actions the provider must see for it).
STEPS = [
    ("initial", (3, 4, 5, 6), 300_000, ("sms_reminder", "email_overdue_notice")),
    ("deep", (7, 8, 10, 12), 300_000, ("agent_call", "demand_letter")),
    ("agency", (30, 31, 33), 300_000, ("agency_placement",)),  # below CNY's legal threshold
    ("legal", (30, 32, 36), 2_000_000, ("legal_referral",)),  # at or above it
]
MIX = ["initial"] * 5 + ["deep"] * 5 + ["agency"] * 3 + ["legal"] * 3
#: What a cure sends to the provider for a hand-off child (``<hand off>_<status>``).
HAND_OFF_ENDING = {"agency": "placement_recalled", "legal": "legal_referral_withdrawn"}
BAD_STATUSES = {
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT,
    WorkflowExecutionStatus.CANCELED,
}


@dataclass
class CasePlan:
    loan_id: str
    tz: str
    step: str
    days_past_due: int
    principal_minor: int
    actions: tuple[str, ...]
    cure: bool
    #: (seconds after the chaos starts, amount, payment id), in order; a cure's last pays the rest.
    payments: list[tuple[float, int, str]]
    posted: list[tuple[str, int]] = field(default_factory=list)
    #: The local due date the case was opened with (set when it is opened).
    opened_due: date | None = None

    @property
    def workflow_id(self) -> str:
        return f"collection-{self.loan_id}"


def zones_in_window(now: datetime) -> list[str]:
    """The candidate zones whose clock is now in [09:00, 20:00): every step due today runs at once,
    with an hour's margin before the ladder's 21:00 close (CN's hours close at 22:00)."""
    zones = [tz for tz in calendar.DAYTIME_CANDIDATES
             if datetime.strptime("09:00", "%H:%M").time() <= calendar.local_wall_time(now, tz)
             < datetime.strptime("20:00", "%H:%M").time()]
    assert zones, f"no zone in the contact window at {now}"
    return zones


def make_plans(rng: random.Random, now: datetime) -> list[CasePlan]:
    zones = zones_in_window(now)
    by_name = {name: (dpds, principal, actions) for name, dpds, principal, actions in STEPS}
    tag = uuid.uuid4().hex[:6]
    plans = []
    for index, step in enumerate(MIX):
        dpds, principal, actions = by_name[step]
        loan_id = f"L-chaos-{tag}-{index:02d}"
        cure = index % 2 == 0
        count = rng.choice((2, 3))
        offsets = sorted(rng.uniform(0.5, CHAOS_SECONDS) for _ in range(count))
        # Partial payments keep the amount above the step's conditions (minimum, legal threshold).
        amounts = [rng.randrange(5_000, 50_000, 100) for _ in range(count)]
        if cure:
            amounts[-1] = principal - sum(amounts[:-1])
        plans.append(CasePlan(
            loan_id=loan_id, tz=zones[index % len(zones)], step=step, days_past_due=rng.choice(dpds),
            principal_minor=principal, actions=actions, cure=cure,
            payments=[(at, amount, f"{loan_id}-pay-{n}") for n, (at, amount) in enumerate(zip(offsets, amounts))],
        ))
    return plans


class WorkerProcess:
    """``worker.py`` as its own process (one at a time), its output in a log file per start."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.log_path: Path | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        self.log_path = self.log_dir / f"worker-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")], env=self.env, cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    async def polling(self, timeout: float = 60.0) -> None:
        """Wait until the worker connected and built (``worker: metrics at off`` on stderr)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker start {self.starts} exited {self.process.returncode}:\n{self.tail()}")
            if b"worker: metrics at" in self.log_path.read_bytes():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"worker start {self.starts} not polling after {timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL, by the pid this test started."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port(first: int = 7700, last: int = 7799) -> int:
    """A port of this session's range that nothing listens on."""
    import socket

    for port in range(first, last + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {first}-{last}")


async def in_flight(client, plans: list[CasePlan]) -> list[str]:
    """Activities started and not finished right after a kill (on this or an earlier killed
    worker: the server retries them only when their start-to-close timeout runs out)."""
    ids = [p.workflow_id for p in plans]
    ids += [placement_workflow_id(p.workflow_id, _due(p)) for p in plans if p.step == "agency"]
    ids += [legal_workflow_id(p.workflow_id, _due(p)) for p in plans if p.step == "legal"]
    running = []
    for workflow_id in ids:
        try:
            described = await client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            continue  # a child not started yet
        for pending in described.raw_description.pending_activities:
            if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                running.append(f"{workflow_id}:{pending.activity_type.name}#{pending.attempt}")
    return running


def _due(plan: CasePlan) -> date:
    assert plan.opened_due is not None
    return plan.opened_due


async def settle_problem(client, engine, provider: IdempotentProvider, plan: CasePlan) -> str | None:
    """Why ``plan``'s case has not settled yet, or ``None``."""
    handle = case_handle(client, plan.loan_id)
    try:
        st = await handle.query("status", result_type=CaseStatus)
    except (RPCError, WorkflowQueryFailedError) as err:
        return f"no status answer ({err.__class__.__name__}: {str(err)[:80]})"
    taken = [s.step for s in st.steps_done]
    if plan.step not in taken:
        return f"step {plan.step} not taken (steps {taken}, stage {st.stage}, next {st.next_step})"
    seen = provider.messages()
    if unsent := [action for action in plan.actions if (plan.loan_id, plan.step, action) not in seen]:
        return f"step {plan.step} taken, the provider has not seen {unsent} yet"
    ledger_ids = {p.payment_id for p in (st.ledger.payments if st.ledger else [])}
    rejected = {r.id for r in st.rejected_signals}
    missing = [pid for pid, _ in plan.posted if pid not in ledger_ids and pid not in rejected]
    if missing:
        return f"payments not applied yet: {missing}"
    with session(engine) as db:
        stored = set(db.exec(select(Payment.payment_id).where(Payment.loan_id == plan.loan_id)))
    if missing := [pid for pid, _ in plan.posted if pid not in stored]:
        return f"payments not in the payments table yet: {missing}"
    if plan.cure:
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.COMPLETED:
            return f"cured case not closed yet: {described.status.name}, outcome {st.outcome}"
        if plan.step in HAND_OFF_ENDING:
            ending = (plan.loan_id, "", HAND_OFF_ENDING[plan.step])
            if ending not in provider.messages():
                seen = sorted(what for what in provider.messages() if what[0] == plan.loan_id)
                return f"provider has not seen the hand-off's {HAND_OFF_ENDING[plan.step]} yet (saw {seen})"
    return None


@pytest.mark.timeout(420)
async def test_worker_killed_while_cases_step_and_payments_arrive(local_env, tmp_path):
    began = time.monotonic()
    rng = random.Random(SEED)
    client = local_env.client
    now = datetime.now(UTC)
    plans = make_plans(rng, now)
    provider = IdempotentProvider(latency_seconds=PROVIDER_LATENCY, port=free_port())
    task_queue = f"chaos-{uuid.uuid4().hex[:8]}"
    database_url = fresh_database_url(tmp_path, "chaos")
    engine = make_engine(database_url)
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path),
        "PAYLOAD_KEYS": TEST_PAYLOAD_KEYS,
        "DELIVERY_BACKEND": "http",
        "DELIVERY_HTTP_URL": provider.url,
        "METRICS_BIND_ADDRESS": "",
        "LOG_LEVEL": "WARNING",
    }
    worker = WorkerProcess(env, tmp_path)
    kills: list[dict] = []
    try:
        for plan in plans:
            seed_borrower(engine, f"B-{plan.loan_id}", tz=plan.tz)
        worker.start()
        await worker.polling()
        opened_at = time.monotonic()
        for plan in plans:
            today = calendar.local_date(datetime.now(UTC), plan.tz)
            plan.opened_due = today - timedelta(days=plan.days_past_due)
            case = CaseInput(
                loan_id=plan.loan_id, borrower_id=f"B-{plan.loan_id}", currency="CNY",
                principal_due_minor=plan.principal_minor, oldest_due_date=plan.opened_due,
                timezone=plan.tz, jurisdiction="CN", portfolio="no-accrual",
            )
            await start_case(client, case, task_queue=task_queue)

        def step_seen(plan: CasePlan) -> bool:
            seen = provider.messages()
            return all((plan.loan_id, plan.step, action) in seen for action in plan.actions)

        async def post_payments() -> None:
            queue = sorted(((at, n, plan) for plan in plans for n, (at, _, _) in enumerate(plan.payments)),
                           key=lambda item: item[0])
            while queue:
                at, n, plan = queue.pop(0)
                wait = opened_at + at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if plan.cure and n == len(plan.payments) - 1 and not step_seen(plan):
                    if time.monotonic() - opened_at > CHAOS_SECONDS + SETTLE_TIMEOUT:
                        raise AssertionError(f"{plan.loan_id}: the provider never saw step {plan.step}")
                    queue.append((at + 1.0, n, plan))  # the cure waits for the step to be due in every run
                    queue.sort(key=lambda item: item[0])
                    continue
                _, amount, payment_id = plan.payments[n]
                await send_payment(client, plan.loan_id, PaymentReceived(
                    payment_id=payment_id, amount_minor=amount, currency="CNY", paid_at=datetime.now(UTC)))
                plan.posted.append((payment_id, amount))

        async def chaos() -> None:
            for kill in range(KILLS):
                if kill == 0:
                    # The first kill lands inside the burst of first steps: once the provider has
                    # received a seeded number of requests, some batches are half sent.
                    alive = float(rng.randint(*FIRST_KILL_AT_REQUEST))
                    deadline_burst = time.monotonic() + 60
                    while len(provider.snapshot()) < alive:
                        assert time.monotonic() < deadline_burst, (
                            f"the provider got {len(provider.snapshot())} requests in 60s, expected {alive:.0f}")
                        await asyncio.sleep(0.005)
                else:
                    alive = rng.uniform(0.3, 6.0)
                    await asyncio.sleep(alive)
                worker.kill()
                at = time.monotonic() - opened_at
                sent = len(provider.snapshot())
                running = await in_flight(client, plans)
                down = rng.uniform(0.2, 2.0)
                await asyncio.sleep(down)
                worker.start()
                await worker.polling()
                kills.append({"at": round(at, 1), ("after_requests" if kill == 0 else "alive"): round(alive, 1),
                              "down": round(down, 1), "provider_requests": sent,
                              "activities_started_unfinished": running})

        await asyncio.gather(post_payments(), chaos())
        chaos_done = time.monotonic()

        # -- settle: every case took its step, applied every payment; cured cases closed --------
        deadline = chaos_done + SETTLE_TIMEOUT
        problems: dict[str, str] = {}
        while True:
            problems = {}
            for plan in plans:
                problem = await settle_problem(client, engine, provider, plan)
                if problem:
                    problems[plan.loan_id] = problem
            if not problems or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        settled = time.monotonic()
        assert not problems, (
            f"not settled {SETTLE_TIMEOUT:.0f}s after the chaos ended (kills: {kills}):\n"
            + "\n".join(f"  {loan}: {why}" for loan, why in sorted(problems.items()))
            + f"\nworker log:\n{worker.tail()}"
        )

        # -- 0 lost payments ----------------------------------------------------------------
        statuses: dict[str, CaseStatus] = {}
        for plan in plans:
            st = await case_handle(client, plan.loan_id).query("status", result_type=CaseStatus)
            statuses[plan.loan_id] = st
            posted = sorted(pid for pid, _ in plan.posted)
            assert len(plan.posted) == len(plan.payments), f"{plan.loan_id}: not every payment was posted"
            assert not st.rejected_signals, f"{plan.loan_id}: signals rejected: {st.rejected_signals}"
            applied = sorted(p.payment_id for p in st.ledger.payments if p.status == "applied")
            assert applied == posted, f"{plan.loan_id}: ledger has {applied}, posted {posted}"
            assert st.paid_minor == sum(a for _, a in plan.posted), (
                f"{plan.loan_id}: paid_minor {st.paid_minor}, posted {sum(a for _, a in plan.posted)}")
            with session(engine) as db:
                rows = list(db.exec(select(Payment).where(Payment.loan_id == plan.loan_id)))
            assert sorted(r.payment_id for r in rows) == posted, (
                f"{plan.loan_id}: payments table has {sorted(r.payment_id for r in rows)}, posted {posted}")
            assert {r.payment_id: r.amount_minor for r in rows} == dict(plan.posted), plan.loan_id
            if plan.cure:
                assert st.outcome == "cured" and st.outstanding_minor == 0, (
                    f"{plan.loan_id}: outcome {st.outcome}, outstanding {st.outstanding_minor}")
            else:
                assert st.outcome is None and st.outstanding_minor == plan.principal_minor - st.paid_minor, (
                    f"{plan.loan_id}: outcome {st.outcome}, outstanding {st.outstanding_minor}")

        # -- 0 lost contacts, 0 duplicate messages ------------------------------------------
        for plan in plans:
            st = statuses[plan.loan_id]
            taken = [s for s in st.steps_done if s.step == plan.step]
            assert len(taken) == 1, f"{plan.loan_id}: step {plan.step} taken {len(taken)} times: {st.steps_done}"
            assert [s.step for s in st.steps_done] == [plan.step], f"{plan.loan_id}: steps {st.steps_done}"
            failed = [r for r in taken[0].results if r.status == "failed" or "fallback" in (r.detail or "")]
            assert not failed, f"{plan.loan_id}: actions failed over to manual review: {failed}"
        messages = provider.messages()
        expected = {(p.loan_id, p.step, action) for p in plans for action in p.actions}
        expected |= {(p.loan_id, "", HAND_OFF_ENDING[p.step]) for p in plans if p.cure and p.step in HAND_OFF_ENDING}
        unexpected = sorted(set(messages) - expected)
        assert not unexpected, f"the provider got messages nobody expected: {unexpected}"
        assert not expected - set(messages), f"never reached the provider: {sorted(expected - set(messages))}"
        duplicated = {what: sorted(keys) for what, keys in messages.items() if len(keys) != 1}
        assert not duplicated, f"(case, step, action) delivered under several idempotency keys: {duplicated}"
        by_key = provider.by_key()
        for key, items in by_key.items():
            firsts = [d for d in items if not d.replayed]
            assert len(firsts) == 1, f"{key}: acted on {len(firsts)} times"
            assert all(d.answer_id == firsts[0].answer_id for d in items), key
        with session(engine) as db:
            attempts = {a.idempotency_key: a for a in db.exec(select(ContactAttempt).where(
                ContactAttempt.loan_id.in_([p.loan_id for p in plans])))}
        manual = sorted(k for k, a in attempts.items() if a.status not in ("sent", "recorded"))
        assert not manual, f"contact attempts not sent: {[(k, attempts[k].status, attempts[k].last_error) for k in manual]}"
        contact_keys = {d.idempotency_key for items in by_key.values() for d in items if d.body.get("step")}
        for key in contact_keys:
            assert key in attempts, f"{key}: reached the provider but has no contact_attempts row"
            assert attempts[key].provider_reference == by_key[key][0].answer_id, (
                f"{key}: the database holds {attempts[key].provider_reference}, the provider answered "
                f"{by_key[key][0].answer_id} first")
        assert set(attempts) == contact_keys, f"attempts that never reached the provider: {set(attempts) - contact_keys}"

        # -- 0 failed workflows, through visibility -------------------------------------------
        expected_workflows = len(plans) + sum(1 for p in plans if p.step in HAND_OFF_ENDING)

        async def listed():
            found = [w async for w in client.list_workflows(f'TaskQueue="{task_queue}"')]
            closed_cures = {p.workflow_id for p in plans if p.cure}
            done = [w for w in found if w.id in closed_cures and w.status == WorkflowExecutionStatus.COMPLETED]
            return found if len(found) == expected_workflows and len(done) == len(closed_cures) else None

        deadline_visibility = time.monotonic() + 30
        found = None
        while found is None and time.monotonic() < deadline_visibility:
            found = await listed()
            if found is None:
                await asyncio.sleep(0.5)
        assert found is not None, f"visibility does not list the {expected_workflows} workflows of {task_queue}"
        bad = [(w.id, w.status.name) for w in found if w.status in BAD_STATUSES]
        assert not bad, f"workflows that did not run to plan: {bad}"
        counts: dict[str, int] = {}
        for w in found:
            counts[f"{w.workflow_type}:{w.status.name}"] = counts.get(f"{w.workflow_type}:{w.status.name}", 0) + 1

        repeats = provider.repeats()
        retry_gaps = {key: round(items[1].received_at - items[0].received_at, 1)
                      for key, items in by_key.items() if len(items) > 1}
        total = time.monotonic() - began
        print(
            f"\nchaos: N={len(plans)} cases, K={KILLS} SIGKILLs, {worker.starts} worker starts, "
            f"{sum(len(p.posted) for p in plans)} payments, {len(provider.snapshot())} provider requests for "
            f"{len(by_key)} keys ({sum(repeats.values())} repeats of {len(repeats)} keys, seconds to the first repeat: {retry_gaps}); "
            f"kills and payments done {chaos_done - opened_at:.1f}s after the opening, settled {settled - chaos_done:.1f}s later, total {total:.1f}s; "
            f"workflows {counts}; kills {kills}"
        )
    finally:
        worker.stop()
        for plan in plans:  # leave nothing running on the shared server
            ids = [plan.workflow_id]
            if plan.opened_due is not None:
                ids += [placement_workflow_id(plan.workflow_id, plan.opened_due), legal_workflow_id(plan.workflow_id, plan.opened_due)]
            for workflow_id in ids:
                try:
                    await client.get_workflow_handle(workflow_id).terminate(reason="chaos test finished")
                except RPCError:
                    pass  # already closed, or never started
        provider.close()
        engine.dispose()
