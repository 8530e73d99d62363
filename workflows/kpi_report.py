"""KpiReportWorkflow: the collection KPIs, produced on a Temporal Schedule (``kpi-report-daily``,
``collections_domain.analytics.schedule``). One activity computes the figures from the database
and writes the HTML report and its JSON (``produce_kpi_report``); the workflow returns where."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.collection_activities import CollectionActivities
    from collections_domain.analytics.produce import KpiReportProduced, KpiReportRequest
    from collections_domain.analytics.schedule import REPORT_WORKFLOW_TYPE


@workflow.defn(name=REPORT_WORKFLOW_TYPE)
class KpiReportWorkflow:
    """Produce the KPI report (``KpiReportRequest``); returns ``KpiReportProduced``."""

    @workflow.run
    async def run(self, request: KpiReportRequest) -> KpiReportProduced:
        """Run the report's activity, retried while the database is down."""
        return await workflow.execute_activity_method(
            CollectionActivities.produce_kpi_report, request,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10), maximum_interval=timedelta(minutes=10)),
            summary=f"collection KPIs: {request.name}" + (f", cases opened in the last {request.days} days" if request.days else ""),
        )
