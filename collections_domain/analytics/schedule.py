"""The KPI report's Temporal Schedule: ``kpi-report-daily`` starts ``KpiReportWorkflow`` every day
at a local time of the lender's choosing (default 06:00 in ``REPORT_TIME_ZONE``), which writes the
report into the workers' data folder (``DATA_DIR/reports``). Installing it again updates it."""

from __future__ import annotations

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

from collections_domain.analytics.produce import KpiReportRequest
from collections_domain.ops.schedules import upsert_schedule
from collections_domain.rules import calendar

REPORT_WORKFLOW_TYPE = "KpiReportWorkflow"
REPORT_SCHEDULE_ID = "kpi-report-daily"


def report_schedule(at: time, time_zone: str, task_queue: str, request: KpiReportRequest) -> Schedule:
    """The schedule that produces the report daily at local ``at`` in ``time_zone`` (a report
    still running when the next is due is not started twice).

    Raises:
        UnknownTimeZoneError: ``time_zone`` is not an IANA zone.
    """
    calendar.zone(time_zone)
    return Schedule(
        action=ScheduleActionStartWorkflow(REPORT_WORKFLOW_TYPE, request, id=REPORT_SCHEDULE_ID, task_queue=task_queue),
        spec=ScheduleSpec(calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(at.hour)], minute=[ScheduleRange(at.minute)])],
                          time_zone_name=time_zone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_report_schedule(client: Client, at: time, time_zone: str, task_queue: str,
                                 request: KpiReportRequest | None = None) -> str:
    """Create (or update) ``kpi-report-daily``; returns its id."""
    return await upsert_schedule(client, REPORT_SCHEDULE_ID,
                                 report_schedule(at, time_zone, task_queue, request or KpiReportRequest()))
