"""Benchmark section "paths": what one case costs in history, path by path, against the naive ladder.

Each PATH is run by the product (``LoanCollectionWorkflow`` opened with ``client.start_case``,
driven by the signals and updates the tests send) and by the naive ladder (``bench/naive.py``),
one case at a time on one Java time-skipping server (its clock is shared), both through the same
client and payload codec. For each path and side: the history's length (``events.<path>``), its
Temporal Cloud billable actions (``actions.<path>``, counted by ``billable_actions``) and its size
(``bytes.<path>``, the protobuf size of its events); the product's children (placement, legal
referral, plan) are counted apart (``events.<path>.children``, ``actions.<path>.children``).

    no_payment_to_hand_off   no payment; counted up to the case's first timer after it started the
                             DPD 30 hand-off (the naive: after its hand-off activity)
    no_payment_to_write_off  no payment; the whole history until the case closes written off
    cured_before_dpd_3       paid in full at DPD 1, until the workflow completes
    promise_kept             promise to pay at DPD 4 for DPD 6, paid in full at DPD 5, until completed
    plan_kept                a 3-instalment plan proposed at DPD 8, each instalment paid, until completed

``python -m bench.paths [PATH ...]`` prints the figures and both histories, one line an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench import naive
from bench.figures import Figure
from bench.open import RING, TZ, bench_activities, bench_case
from collections_domain.case.contract import PaymentReceived, PromiseToPay
from collections_domain.client import propose_plan, start_case
from collections_domain.ops import codec
from collections_domain.ops.binaries import find_binary
from collections_domain.ops.wiring import build_worker
from collections_domain.portfolio.simulation import register_search_attributes, skip_to
from collections_domain.rules import calendar

SECTION = "paths"
PATHS = ("no_payment_to_hand_off", "no_payment_to_write_off", "cured_before_dpd_3", "promise_kept", "plan_kept")
#: The plan's instalment dates, in days past due (the proposal comes at DPD 8).
PLAN_DAYS = (10, 17, 24)
#: What each path's events figure counts.
PATH_NOTES = {
    "no_payment_to_hand_off": "up to the first timer after the DPD 30 hand-off started (naive: after its hand-off activity)",
    "no_payment_to_write_off": "the whole history, to the write-off at DPD 180",
    "cured_before_dpd_3": "paid in full at DPD 1, to completion",
    "promise_kept": "promise at DPD 4 for DPD 6, paid in full at DPD 5, to completion",
    "plan_kept": f"{len(PLAN_DAYS)}-instalment plan proposed at DPD 8 (due DPD {', '.join(map(str, PLAN_DAYS))}), each paid, to completion",
}
#: Issue 14's goals.
GOALS = {
    "events.no_payment_to_hand_off": "value <= 45",
    "actions.no_payment_to_hand_off": "value <= 12",
    "events.cured_before_dpd_3": "value <= 14",
}
BYTES_GOAL = "ratio <= 2"
#: The amount overdue (CNY minor units): under the legal threshold, so DPD 30 is an agency placement.
AMOUNT_MINOR = 300_000
#: The only search attribute whose upserts Temporal Cloud does not bill (``workflow.patched``).
CHANGE_VERSION = "TemporalChangeVersion"
LOCAL_ACTIVITY_MARKER = "core_local_activity"
HEARTBEATS_NOTE = "activity heartbeats are billable but not in the history: not counted"
#: The hand-off path stops at the first timer at least this long after the hand-off.
LONG_TIMER = timedelta(days=1)
#: How long to wait for a case to close or go idle on the time-skipping server.
WAIT_SECONDS = 120.0

E = EventType


def billable_actions(history: WorkflowHistory | Iterable[HistoryEvent], *,
                     signals_from_workflows: Mapping[str, int] | None = None) -> dict[str, int]:
    """Temporal Cloud billable actions in one history (https://docs.temporal.io/cloud/actions), by
    kind; the total is the sum of the values. Kinds (each 1 action):

    - ``workflow_started``: WORKFLOW_EXECUTION_STARTED (a client start, a continue-as-new's new
      run, a child's start: counted in the child's own history);
    - ``child_workflow_started``: START_CHILD_WORKFLOW_EXECUTION_INITIATED (the parent's intent to
      start a child; Cloud bills a child as two actions, this and the child's start);
    - ``timer``: TIMER_STARTED (``workflow.sleep`` and every ``wait_condition`` with a timeout);
    - ``search_attribute_upsert``: UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, unless it sets only
      ``TemporalChangeVersion`` (written by ``workflow.patched``; exempt); attributes given at start
      are not billed;
    - ``signal_received``: WORKFLOW_EXECUTION_SIGNALED from a client. A signal sent by a workflow
      is billed once, at the sender: not counted here when its ``external_workflow_execution`` is
      set, nor (servers that do not record the sender, like the Java test server) the first
      ``signals_from_workflows[name]`` signals of each name;
    - ``signal_sent``: SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED;
    - ``update``: WORKFLOW_EXECUTION_UPDATE_ACCEPTED or _REJECTED (a rejected update writes nothing
      to the history, so it is billed but not seen here);
    - ``activity``: ACTIVITY_TASK_SCHEDULED; ``activity_retry``: each retry, the ``attempt`` of
      ACTIVITY_TASK_STARTED minus 1;
    - ``local_activities``: one for all the ``core_local_activity`` markers one workflow task
      completed (grouped by the marker's ``workflow_task_completed_event_id``, else by the
      WORKFLOW_TASK_COMPLETED before it);
    - ``workflow_options_updated``: WORKFLOW_EXECUTION_OPTIONS_UPDATED.

    Not in a history, so not counted: activity heartbeats (throttled by the SDK, each one that
    reaches the server is billed), queries, rejected updates, a local activity's extra
    workflow-task heartbeats.
    """
    events = history.events if isinstance(history, WorkflowHistory) else history
    from_workflows = Counter(signals_from_workflows or {})
    kinds: Counter[str] = Counter()
    last_task_completed = 0
    local_activity_tasks: set[int] = set()
    for event in events:
        kind = event.event_type
        if kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_task_completed = event.event_id
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            kinds["workflow_started"] += 1
        elif kind == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            kinds["child_workflow_started"] += 1
        elif kind == E.EVENT_TYPE_TIMER_STARTED:
            kinds["timer"] += 1
        elif kind == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            names = set(event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
            if names - {CHANGE_VERSION}:
                kinds["search_attribute_upsert"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signal = event.workflow_execution_signaled_event_attributes
            if signal.external_workflow_execution.workflow_id:
                continue
            if from_workflows[signal.signal_name] > 0:
                from_workflows[signal.signal_name] -= 1
                continue
            kinds["signal_received"] += 1
        elif kind == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            kinds["signal_sent"] += 1
        elif kind in (E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED):
            kinds["update"] += 1
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            kinds["activity"] += 1
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            retries = event.activity_task_started_event_attributes.attempt - 1
            if retries > 0:
                kinds["activity_retry"] += retries
        elif kind == E.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                local_activity_tasks.add(marker.workflow_task_completed_event_id or last_task_completed)
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED:
            kinds["workflow_options_updated"] += 1
    if local_activity_tasks:
        kinds["local_activities"] = len(local_activity_tasks)
    return dict(kinds)


def signals_sent(histories: Iterable[Iterable[HistoryEvent]]) -> dict[str, Counter[str]]:
    """``{workflow id: Counter(signal name)}``: the signals these histories sent to each workflow
    (SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED), for ``billable_actions(signals_from_workflows=)``."""
    sent: dict[str, Counter[str]] = {}
    for events in histories:
        for event in events:
            if event.event_type == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
                attributes = event.signal_external_workflow_execution_initiated_event_attributes
                sent.setdefault(attributes.workflow_execution.workflow_id, Counter())[attributes.signal_name] += 1
    return sent


def history_bytes(events: Iterable[HistoryEvent]) -> int:
    """The history's size in bytes: the sum of its events' protobuf sizes."""
    return sum(event.ByteSize() for event in events)


def event_name(event: HistoryEvent) -> str:
    """``TIMER_STARTED`` for an event of type ``EVENT_TYPE_TIMER_STARTED``."""
    return E.Name(event.event_type).removeprefix("EVENT_TYPE_")


def _local_activity_type(event: HistoryEvent) -> str:
    try:
        data = event.marker_recorded_event_attributes.details["data"].payloads[0].data
        return json.loads(data).get("activity_type", "?")
    except (KeyError, IndexError, ValueError, AttributeError):
        return "?"


def describe(events: Sequence[HistoryEvent]) -> list[str]:
    """One line an event: id, type, and what it is about (activity type, local activity, signal,
    update, search attributes, child id); no payloads."""
    lines = []
    for event in events:
        what = ""
        kind = event.event_type
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            what = event.activity_task_scheduled_event_attributes.activity_type.name
        elif kind == E.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            what = marker.marker_name + (f" {_local_activity_type(event)}" if marker.marker_name == LOCAL_ACTIVITY_MARKER else "")
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            what = event.workflow_execution_signaled_event_attributes.signal_name
        elif kind == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            attributes = event.signal_external_workflow_execution_initiated_event_attributes
            what = f"{attributes.signal_name} -> {attributes.workflow_execution.workflow_id}"
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            what = event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        elif kind == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            what = ",".join(sorted(event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields))
        elif kind == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            what = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
        elif kind == E.EVENT_TYPE_TIMER_STARTED:
            what = str(event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta())
        lines.append(f"{event.event_id:>4} {event.event_time.ToDatetime():%m-%d %H:%M} {event_name(event)}"
                     + (f"  {what}" if what else "") + f"  ({event.ByteSize()} B)")
    return lines


@dataclass
class Run:
    """One side's run of one path: the workflow's id and counted events, each child's events."""

    workflow_id: str
    events: list[HistoryEvent]
    children: dict[str, list[HistoryEvent]] = field(default_factory=dict)
    note: str = ""

    @property
    def child_events(self) -> list[HistoryEvent]:
        """Every child's events, one list."""
        return [event for events in self.children.values() for event in events]

    def actions(self) -> dict[str, int]:
        """The workflow's billable actions by kind (a signal from a child is billed at the child)."""
        sent = signals_sent(self.children.values())
        return billable_actions(self.events, signals_from_workflows=sent.get(self.workflow_id))

    def child_actions(self) -> dict[str, int]:
        """The children's billable actions by kind, summed (a signal from the case is billed at the case)."""
        sent = signals_sent([self.events, *self.children.values()])
        total: Counter[str] = Counter()
        for child, events in self.children.items():
            total.update(billable_actions(events, signals_from_workflows=sent.get(child)))
        return dict(total)


def _at(due: date, dpd: int, wall: time = time(12)) -> datetime:
    """Local ``wall`` time on day ``dpd`` past ``due`` in the bench zone, as a UTC instant."""
    return calendar.local_instant(due + timedelta(days=dpd), wall, TZ)


async def _now(env: WorkflowEnvironment) -> datetime:
    return (await env.get_current_time()).astimezone(UTC)


def _cut_at_timer_after(events: Sequence[HistoryEvent], starts: Callable[[HistoryEvent], bool]) -> list[HistoryEvent] | None:
    """``events`` up to and including the first TIMER_STARTED of at least ``LONG_TIMER`` after the
    first event ``starts`` accepts: the workflow idle on its next long sleep (None while there is none)."""
    seen = False
    for index, event in enumerate(events):
        if (seen and event.event_type == E.EVENT_TYPE_TIMER_STARTED
                and event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() >= LONG_TIMER):
            return list(events[: index + 1])
        seen = seen or starts(event)
    return None


async def _until_idle(handle: WorkflowHandle, starts: Callable[[HistoryEvent], bool]) -> list[HistoryEvent]:
    """Poll ``handle``'s history until it sleeps on a timer after the event ``starts`` accepts;
    that part of the history."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        events = list((await handle.fetch_history()).events)
        cut = _cut_at_timer_after(events, starts)
        if cut is not None:
            return cut
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{handle.id}: no long timer after the hand-off within {WAIT_SECONDS:.0f} s "
                               f"(last event {event_name(events[-1])})")
        await asyncio.sleep(0.2)


def _child_ids(events: Iterable[HistoryEvent]) -> list[str]:
    return [e.start_child_workflow_execution_initiated_event_attributes.workflow_id for e in events
            if e.event_type == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED]


async def _finish(client: Client, ids: Iterable[str]) -> None:
    """Terminate whatever of ``ids`` still runs (its timers would hold the shared clock)."""
    for workflow_id in ids:
        with contextlib.suppress(RPCError):  # already closed
            await client.get_workflow_handle(workflow_id).terminate(reason="bench path done")


def _payment(amount_minor: int, paid_at: datetime) -> PaymentReceived:
    return PaymentReceived(payment_id=f"P-{uuid.uuid4().hex[:10]}", amount_minor=amount_minor, currency="CNY", paid_at=paid_at)


async def run_product(env: WorkflowEnvironment, path: str, task_queue: str) -> Run:
    """Run ``path`` on a new product case; its counted history and its children's."""
    client = env.client
    due = calendar.local_date(await _now(env), TZ) - timedelta(days=1)  # the case opens at DPD 1
    case = bench_case(0, due, AMOUNT_MINOR)
    handle = await start_case(client, case, task_queue=task_queue)
    owed = case.overdue_minor
    note = ""
    try:
        if path == "no_payment_to_hand_off":
            await skip_to(env, _at(due, 30))
            events = await _until_idle(handle, lambda e: e.event_type == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED)
        else:
            if path == "no_payment_to_write_off":
                await skip_to(env, _at(due, 181))
            elif path == "cured_before_dpd_3":
                await handle.signal("payment_received", _payment(owed, await _now(env)))
            elif path == "promise_kept":
                await skip_to(env, _at(due, 4))
                await handle.signal("promise_to_pay", PromiseToPay(promise_id="PTP-bench", amount_minor=owed,
                                                                   promised_date=due + timedelta(days=6)))
                await skip_to(env, _at(due, 5))
                await handle.signal("payment_received", _payment(owed, await _now(env)))
            elif path == "plan_kept":
                await skip_to(env, _at(due, 8))
                accepted = await propose_plan(client, case.loan_id, {
                    "plan_id": "PL-bench", "kind": "instalments",
                    "instalment_dates": [str(due + timedelta(days=d)) for d in PLAN_DAYS]})
                for instalment in accepted.instalments:
                    paid_at = calendar.local_instant(instalment.due_date, time(12), TZ)
                    await skip_to(env, paid_at)
                    await handle.signal("payment_received", _payment(instalment.amount_minor, paid_at))
            else:
                raise ValueError(f"unknown path {path!r}")
            final = await asyncio.wait_for(handle.result(), WAIT_SECONDS)
            note = f"outcome {final.outcome}"
            events = list((await handle.fetch_history()).events)
        children = {}
        for child_id in _child_ids(events):
            children[child_id] = list((await client.get_workflow_handle(child_id).fetch_history()).events)
        return Run(handle.id, events, children, note)
    finally:
        await _finish(client, [*_child_ids((await handle.fetch_history()).events), handle.id])


async def run_naive(env: WorkflowEnvironment, path: str, task_queue: str) -> Run:
    """Run ``path`` on a new naive ladder (``bench/naive.py``); its counted history."""
    client = env.client
    due = calendar.local_date(await _now(env), TZ) - timedelta(days=1)
    owed = AMOUNT_MINOR
    handle = await client.start_workflow(
        naive.NaiveLadderWorkflow.run, naive.NaiveCase(loan_id=f"naive-{uuid.uuid4().hex[:8]}", due_date=str(due),
                                                       amount_due_minor=owed),
        id=f"bench-naive-{uuid.uuid4().hex[:8]}", task_queue=task_queue)
    try:
        if path == "no_payment_to_hand_off":
            await skip_to(env, _at(due, 30))
            events = await _until_idle(handle, lambda e: e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                                       and e.activity_task_scheduled_event_attributes.activity_type.name == "bench_naive_hand_off")
            return Run(handle.id, events)
        if path == "no_payment_to_write_off":
            await skip_to(env, _at(due, 181))
        elif path == "cured_before_dpd_3":
            await handle.signal(naive.NaiveLadderWorkflow.payment_received, naive.NaivePayment(owed))
        elif path == "promise_kept":
            await skip_to(env, _at(due, 4))
            await handle.signal(naive.NaiveLadderWorkflow.promise_to_pay, naive.NaivePromise(owed, str(due + timedelta(days=6))))
            await skip_to(env, _at(due, 5))
            await handle.signal(naive.NaiveLadderWorkflow.payment_received, naive.NaivePayment(owed))
        elif path == "plan_kept":
            await skip_to(env, _at(due, 8))
            amounts = await handle.execute_update(naive.NaiveLadderWorkflow.propose_plan, naive.NaivePlan(len(PLAN_DAYS)))
            for day, amount in zip(PLAN_DAYS, amounts):
                await skip_to(env, _at(due, day))
                await handle.signal(naive.NaiveLadderWorkflow.payment_received, naive.NaivePayment(amount))
        else:
            raise ValueError(f"unknown path {path!r}")
        outcome = await asyncio.wait_for(handle.result(), WAIT_SECONDS)
        return Run(handle.id, list((await handle.fetch_history()).events), note=f"outcome {outcome}")
    finally:
        await _finish(client, [handle.id])


def _bytes_by_type(events: Iterable[HistoryEvent]) -> dict[str, int]:
    sizes: Counter[str] = Counter()
    for event in events:
        sizes[event_name(event)] += event.ByteSize()
    return dict(sizes.most_common())


def _largest(sizes: dict[str, int], count: int = 3) -> str:
    return ", ".join(f"{kind} {size:,}" for kind, size in list(sizes.items())[:count])


def _kinds(actions: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(actions.items())) or "none"


def path_figures(path: str, product: Run, naive_run: Run) -> list[Figure]:
    """The figures of one path: events, actions and bytes of the product against the naive
    ladder, and the product's children's events and actions (no baseline, no goal)."""
    product_actions, naive_actions = product.actions(), naive_run.actions()
    child_actions = product.child_actions()
    sides = {"product": product.events, "naive": naive_run.events}
    extra = {"event_types": {side: dict(sorted(Counter(event_name(e) for e in events).items()))
                             for side, events in sides.items()},
             "actions": {"product": product_actions, "naive": naive_actions}}
    bytes_extra = {"bytes_by_event_type": {side: _bytes_by_type(events) for side, events in sides.items()}}
    notes = "; ".join(n for n in (PATH_NOTES.get(path, ""), product.note and f"product {product.note}",
                                  naive_run.note and f"naive {naive_run.note}") if n)
    base = "naive ladder"
    return [
        Figure(SECTION, f"events.{path}", len(product.events), "events", len(naive_run.events), base,
               goal=GOALS.get(f"events.{path}"), detail=notes, extra=extra),
        Figure(SECTION, f"actions.{path}", sum(product_actions.values()), "actions", sum(naive_actions.values()), base,
               goal=GOALS.get(f"actions.{path}"),
               detail=f"product: {_kinds(product_actions)}; naive: {_kinds(naive_actions)}; {HEARTBEATS_NOTE}"),
        Figure(SECTION, f"bytes.{path}", history_bytes(product.events), "bytes", history_bytes(naive_run.events), base,
               goal=BYTES_GOAL, detail=f"protobuf size of the events, payloads through the same codec; product's largest: "
               f"{_largest(bytes_extra['bytes_by_event_type']['product'])}", extra=bytes_extra),
        Figure(SECTION, f"events.{path}.children", len(product.child_events), "events",
               detail=", ".join(f"{child}: {len(events)} events, {history_bytes(events):,} bytes"
                                for child, events in product.children.items()) or "no child"),
        Figure(SECTION, f"actions.{path}.children", sum(child_actions.values()), "actions",
               detail=f"{_kinds(child_actions)}; {HEARTBEATS_NOTE}"),
    ]


async def run_paths(paths: Sequence[str] = PATHS) -> dict[str, tuple[Run, Run]]:
    """``{path: (product run, naive run)}`` on one fresh time-skipping server, one case at a time."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"), data_converter=codec.data_converter(RING))
    runs: dict[str, tuple[Run, Run]] = {}
    try:
        await register_search_attributes(env.client)
        with tempfile.TemporaryDirectory() as folder:
            settings, activities = bench_activities(Path(folder), "bench-paths")
            naive_worker = Worker(env.client, task_queue="bench-naive", workflows=[naive.NaiveLadderWorkflow],
                                  activities=naive.ACTIVITIES, activity_executor=ThreadPoolExecutor(4))
            async with build_worker(env.client, settings, activities), naive_worker:
                for path in paths:
                    runs[path] = (await run_product(env, path, "bench-paths"), await run_naive(env, path, "bench-naive"))
    finally:
        await env.shutdown()
    return runs


async def measure(quick: bool) -> list[Figure]:
    """The section's figures (module docstring); every path in both modes (five cases a side)."""
    runs = await run_paths()
    return [figure for path, (product, naive_run) in runs.items() for figure in path_figures(path, product, naive_run)]


def main(argv: Sequence[str]) -> None:
    """Print the figures and both histories of the paths named in ``argv`` (default all)."""
    paths = list(argv) or list(PATHS)
    runs = asyncio.run(run_paths(paths))
    for path, (product, naive_run) in runs.items():
        for figure in path_figures(path, product, naive_run):
            print(f"{figure.name}: {figure.value} (naive {figure.baseline}) {figure.detail}")
        print(f"--- {path}: product ---", *describe(product.events), sep="\n")
        for child, events in product.children.items():
            print(f"--- {path}: child {child} ---", *describe(events), sep="\n")
        print(f"--- {path}: naive ---", *describe(naive_run.events), sep="\n")


if __name__ == "__main__":
    main(sys.argv[1:])
