"""LoanCollectionWorkflow: one durable collections case per delinquent loan (CONTRACT.md).

This module only declares the workflow's interface: its signals, updates, query and run. Each
forwards to the case's engine: ``CaseShell`` (``workflows.case_shell``), which sequences the
case core, or for a case started before the loan ledger the engine it started on
(``workflows.legacy.loan_collection_v3``). Both come through ``imports_passed_through``, loaded
once per worker. The workflow is defined with ``sandboxed=False`` (issue 14): the sandbox ran this
module again for every case, about 10 ms of CPU a case opened and most of a cached case's memory,
while the code it runs was passed through its checks anyway; ``tests/case/determinism_test.py``
reads every module a case runs and fails on clock, randomness, threads or I/O.

Which engine: a run whose input has ``instalments`` (every client of this project sends them) or
a continued core state runs the shell; one continued from a legacy state runs the legacy engine;
otherwise (the contract's original input shape) the first task asks ``workflow.patched`` with
``case-core-ledger``: new runs write that marker and run the shell, histories without it are the
legacy engine's.
"""

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from collections_domain.case.children import ChildClosed
    from collections_domain.case.contract import WORKFLOW_TYPE, CaseInput, CaseStatus, ContactOutcome, PendingSignal, PlanAccepted
    from workflows.case_shell import SIGNALS, CaseShell, runs_legacy
    from workflows.legacy.loan_collection_v3 import LEGACY_SIGNALS, LegacyLoanCollection

#: The longest signal name kept on the record when the name is not one of the case's.
UNKNOWN_NAME_CHARS = 64


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class LoanCollectionWorkflow:
    """One collections case, from the first missed due date until it ends.

    Input ``CaseInput``; signals (one dynamic handler) ``payment_received``, ``payment_reversed``, ``instalment_due``,
    ``schedule_adjusted``, ``promise_to_pay``, ``dispute_opened``, ``dispute_resolved``,
    ``cease_contact``, ``hardship``, ``breathing_space``, ``bankruptcy``, ``deceased``, and from
    its children ``plan_instalment_missed``, ``legal_status_changed``, ``child_closed``; updates
    ``propose_plan`` (``PlanProposal`` -> ``PlanAccepted``) and ``record_contact_outcome``
    (``ContactOutcomeReport``); query ``status`` (``CaseStatus``), which is also the result.
    Raises a non-retryable ``ApplicationError`` (type ``InvalidCaseInput``) for an input that
    breaks CONTRACT.md's rules, after holding any money that came with it, before anything is sent.
    """

    @workflow.init
    def __init__(self, case: CaseInput) -> None:
        legacy = not case.input_problems and runs_legacy(case)
        self._legacy = LegacyLoanCollection(case) if legacy else None
        self._shell = None if legacy else CaseShell(case)

    def _receive(self, kind: str, payload: Any) -> None:
        if kind not in SIGNALS:
            kind = kind[:UNKNOWN_NAME_CHARS]  # recorded as rejected under (the start of) its name
        if self._shell is not None:
            self._shell.receive(kind, payload)
            return
        legacy = self._legacy
        assert legacy is not None
        if kind in LEGACY_SIGNALS:
            getattr(legacy, kind)(payload)
        elif legacy._state is not None:  # a signal added with the ledger: on the record, not applied
            legacy._reject(PendingSignal(kind=kind, payload=payload, received_at=workflow.now()),  # type: ignore[arg-type]
                           f"signal: {kind} needs the loan ledger; this case started before it (it ends on its own)")
            legacy._woken = True
        else:
            workflow.logger.warning("signal.not_applied", extra={"kind": kind})

    @workflow.signal(dynamic=True)
    def signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Every signal of the case, by name (CONTRACT.md; ``case_shell.SIGNALS``): the payload
        is handed to the engine in arrival order, which applies it once per id or records why not.
        A signal of an unknown name is recorded as rejected, not dropped."""
        payload = workflow.payload_converter().from_payload(args[0].payload) if args else None
        if name == "child_closed":
            closed = ChildClosed.model_validate(payload)
            (self._shell or self._legacy).child_closed(closed)  # type: ignore[union-attr]
        else:
            self._receive(name, payload)

    @workflow.update(name="propose_plan")
    async def propose_plan(self, proposal: Any) -> PlanAccepted:
        """Accept a repayment plan (``PlanProposal``) and return its schedule; the validator
        refuses, naming the field and the rule, what breaks the policy's ``plans.*`` limits or
        comes while the case is closed, on another plan, waiting on a promise or under dispute."""
        return await (self._shell or self._legacy).propose_plan(proposal)  # type: ignore[union-attr]

    @propose_plan.validator
    def _validate_plan(self, proposal: Any) -> None:
        if self._shell is not None:
            self._shell.validate_plan(proposal)
        else:
            self._legacy._validate_plan(proposal)  # type: ignore[union-attr]

    @workflow.update(name="record_contact_outcome")
    async def record_contact_outcome(self, report: Any) -> ContactOutcome:
        """Record what an open agent task achieved (``ContactOutcomeReport``); free-text notes go to
        the database through the CLI/API, never into the history."""
        return await (self._shell or self._legacy).record_contact_outcome(report)  # type: ignore[union-attr]

    @record_contact_outcome.validator
    def _validate_outcome(self, report: Any) -> None:
        if self._shell is not None:
            self._shell.validate_outcome(report)
        else:
            self._legacy._validate_outcome(report)  # type: ignore[union-attr]

    @workflow.query(name="status")
    def status(self) -> CaseStatus:
        """The case as CONTRACT.md's ``status`` shape (amounts in minor units)."""
        return (self._shell or self._legacy).status()  # type: ignore[union-attr]

    @workflow.run
    async def run(self, case: CaseInput) -> CaseStatus:
        """Run the case until it ends; returns the final ``status``."""
        return await (self._shell or self._legacy).run(case)  # type: ignore[union-attr]
