"""DelinquencyScanWorkflow: the daily overdue identification of one time zone's loans.

Started by a Temporal Schedule per time zone (``collections_domain.portfolio.schedules``) at the
settings' ``SCAN_LOCAL_TIME`` on the borrowers' clock, or at once by ``starter.py scan``. It pages
through the loan book with the ``scan_loans`` activity (``portfolio.scan``): overdue loans get a
case, running cases get what the book learned. Each page is idempotent and the workflow keeps its
cursor, so a scan interrupted anywhere resumes where it was and opens nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.collection_activities import CollectionActivities
    from collections_domain.portfolio.scan import SCAN_WORKFLOW_TYPE, ScanRequest, ScanSummary


@workflow.defn(name=SCAN_WORKFLOW_TYPE)
class DelinquencyScanWorkflow:
    """Scan one time zone's loans (``ScanRequest``) page by page; returns a ``ScanSummary``."""

    @workflow.run
    async def run(self, request: ScanRequest) -> ScanSummary:
        """Page through the book until the cursor runs out; continue as new on long books."""
        as_of = request.as_of or workflow.now()
        summary = ScanSummary(time_zone=request.time_zone, as_of=as_of.isoformat())
        page_request = request.model_copy(update={"as_of": as_of, "scan_id": workflow.info().workflow_id})
        while True:
            page = await workflow.execute_activity_method(
                CollectionActivities.scan_loans, page_request,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5),
                                         non_retryable_error_types=["ScanNotConfigured"]),
                summary=f"scan {request.time_zone or 'all zones'} after {page_request.after or 'the first loan'}",
            )
            summary.pages += 1
            summary.opened += page.opened
            summary.forwarded += [f"{loan}: {', '.join(sent)}" for loan, sent in page.forwarded.items()]
            summary.current += len(page.current)
            summary.below_minimum += len(page.below_minimum)
            summary.errors += page.errors
            if page.next_after is None:
                break
            page_request = page_request.model_copy(update={"after": page.next_after})
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(page_request)
        workflow.logger.info("scan.done", extra={"opened": len(summary.opened), "pages": summary.pages})
        return summary
