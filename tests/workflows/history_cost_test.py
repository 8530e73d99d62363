"""What a case costs in history events and Temporal Cloud billable actions (issue 14's goals:
45 events to the hand-off, 14 for a case cured before DPD 3; ``python -m bench --only paths``
prints them beside the naive ladder's). Before history revision 2 the no-payment ladder to the
DPD 30 hand-off took 48 events and 17 actions, and a case cured before DPD 3 15 events: the
opening wrote its records in a second local activity, and the DPD 30 step wrote its records
before loading the profile. The one event over 45 is the ``StrategyArm`` upsert at opening, which
CONTRACT.md promises ("set once the case opened")."""

from datetime import time, timedelta

from temporalio.api.enums.v1 import EventType

from bench.paths import billable_actions
from collections_domain.rules import calendar
from tests.helpers import advance_to, open_case, payment, server_now

TZ = "Asia/Shanghai"


def through_hand_off(events) -> list:
    """The events up to the first timer started after the hand-off child started."""
    started = next(i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED)
    end = next(i for i, e in enumerate(events) if i > started and e.event_type == EventType.EVENT_TYPE_TIMER_STARTED)
    return events[: end + 1]


async def test_the_no_payment_ladder_to_the_dpd_30_hand_off_takes_at_most_46_events(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = calendar.local_date(await server_now(time_env), TZ) - timedelta(days=1)
        _, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, calendar.local_instant(due + timedelta(days=31), time(12), TZ))
        history = await handle.fetch_history()
    events = through_hand_off(list(history.events))
    assert len(events) <= 46, [EventType.Name(e.event_type) for e in events]
    assert sum(billable_actions(events).values()) <= 17


async def test_a_case_cured_before_dpd_3_takes_at_most_14_events(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = calendar.local_date(await server_now(time_env), TZ) - timedelta(days=1)
        _, handle = await open_case(h, due=due, amount_minor=300_000)
        paid_at = calendar.local_instant(due + timedelta(days=1), time(12), TZ)
        await advance_to(time_env, paid_at)
        await handle.signal("payment_received", payment(300_000, paid_at))
        assert (await handle.result()).outcome == "cured"
        history = await handle.fetch_history()
    assert len(history.events) <= 14, [EventType.Name(e.event_type) for e in history.events]
