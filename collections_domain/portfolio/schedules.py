"""The delinquency scan's Temporal Schedules: one per time zone of the loan book, firing daily at
``SCAN_LOCAL_TIME`` on that zone's clock (DST included: Temporal evaluates the calendar in the
zone), each starting ``DelinquencyScanWorkflow`` for its zone. Installing them again updates them."""

from __future__ import annotations

import re
from datetime import time

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from collections_domain.ops.schedules import upsert_schedule
from collections_domain.portfolio.scan import SCAN_WORKFLOW_TYPE, ScanRequest
from collections_domain.rules import calendar


def schedule_id(time_zone: str) -> str:
    """``delinquency-scan-Asia-Shanghai``: the schedule (and workflow id prefix) of a zone."""
    return "delinquency-scan-" + re.sub(r"[^A-Za-z0-9_-]+", "-", time_zone)


def scan_schedule(time_zone: str, at: time, task_queue: str) -> Schedule:
    """The schedule that scans ``time_zone`` daily at local ``at`` (a scan still running when
    the next is due is not started twice)."""
    calendar.zone(time_zone)  # UnknownTimeZoneError for a bad name
    return Schedule(
        action=ScheduleActionStartWorkflow(SCAN_WORKFLOW_TYPE, ScanRequest(time_zone=time_zone, task_queue=task_queue),
                                           id=schedule_id(time_zone), task_queue=task_queue),
        spec=ScheduleSpec(calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(at.hour)],
                                                          minute=[ScheduleRange(at.minute)])],
                          time_zone_name=time_zone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_scan_schedules(client: Client, time_zones: list[str], at: time, task_queue: str) -> list[str]:
    """Create (or update) one scan schedule per zone; returns their ids."""
    return [await upsert_schedule(client, schedule_id(zone), scan_schedule(zone, at, task_queue))
            for zone in sorted(set(time_zones))]
