"""The case engine before the case core moved out of the sandbox, as a workflow of its own for
the benchmark's "before" figure.

The engine's module is imported here the way the workflow module was before the loan ledger:
inside the workflow sandbox, so the sandbox executes all of it again for every case (the case
core now comes through ``imports_passed_through`` and is loaded once per worker).
"""

from temporalio import workflow

from workflows.legacy import loan_collection_v3 as engine  # not passed through, on purpose

with workflow.unsafe.imports_passed_through():
    from collections_domain.case.contract import CaseInput, CaseStatus


@workflow.defn(name="BenchCaseBeforeTheCore")
class CaseBeforeTheCore:
    """The engine before the case core (``workflows.legacy``), run whole in the sandbox."""

    @workflow.init
    def __init__(self, case: CaseInput) -> None:
        self._engine = engine.LegacyLoanCollection(case)

    @workflow.query(name="status")
    def status(self) -> CaseStatus:
        """The case's status."""
        return self._engine.status()

    @workflow.run
    async def run(self, case: CaseInput) -> CaseStatus:
        """Run the case."""
        return await self._engine.run(case)
