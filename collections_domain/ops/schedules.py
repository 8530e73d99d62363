"""Temporal Schedules the product installs (the delinquency scan per zone, the KPI report):
one way to create a schedule or, when it exists, replace its definition."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleAlreadyRunningError,
    ScheduleUpdate,
    ScheduleUpdateInput,
)


async def upsert_schedule(client: Client, schedule_id: str, wanted: Schedule) -> str:
    """Create schedule ``schedule_id`` as ``wanted``, or update the existing one to it (installing
    twice changes nothing); returns the id.

    Raises:
        temporalio.service.RPCError: the server refused the schedule.
    """
    try:
        await client.create_schedule(schedule_id, wanted)
    except ScheduleAlreadyRunningError:
        async def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(schedule_id).update(replace)
    return schedule_id
