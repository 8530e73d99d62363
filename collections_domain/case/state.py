"""The case core's state and what its transitions ask the workflow to do (pure data).

``CaseCore`` is everything one case knows: the loan (ids, currency, calendar, jurisdiction, the
policy version it runs), its ledger (``case.ledger``), where it stands on the ladder, its
promises, pauses, plan, agent tasks, hand-offs and compliance decisions, and how it ended. It is
carried whole through continue-as-new. The transitions (``case.core`` and the modules it names)
change it and append ``Effect`` values to a ``Step``'s list: records to write to the database,
log lines, counters, signals to other workflows. The workflow (the shell) performs the effects;
nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel

from collections_domain.case.contract import (
    ActivePlan,
    AgentTask,
    ContactOutcome,
    DeferredStep,
    EndedPlan,
    HandOff,
    OpenPromise,
    OpeningReason,
    Outcome,
    Pause,
    PendingSignal,
    RejectedSignal,
    SkippedStep,
    StepRecord,
)
from collections_domain.case.ledger import Ledger, LedgerRules, LedgerView, derive
from collections_domain.rules.compliance import ContactDecision
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.rules.strategy import CaseStrategy
from collections_domain.store.records import CaseEvent


class CaseCore(BaseModel):
    """One case's state (see the module docstring). Amounts in minor units of ``currency``;
    instants UTC; dates on the borrower's calendar (``timezone``)."""

    core_version: Literal[2] = 2
    loan_id: str
    borrower_id: str
    workflow_id: str
    #: The first run id of this case: stable through continue-as-new, new for a re-opened case.
    episode_id: str
    currency: str
    currency_exponent: int = 2
    timezone: str
    jurisdiction: str
    region: str | None = None
    portfolio: str | None = None
    policy_version: str
    policy_digest: str = ""
    opened_at: datetime
    opening_due_date: date
    opening_reason: OpeningReason | None = None
    reopened_from: str | None = None
    #: The treatment path and experiment arm assigned at opening (``rules.strategy``); the ladder
    #: is the treatment's. ``None``: opened before the strategy (the policy's own ladder).
    strategy: CaseStrategy | None = None
    #: The shape of history the case's workflow writes (``core.HISTORY_REVISION``): 1 for cases
    #: opened before issue 14 (they keep it through continue-as-new), 2 for newer ones.
    history_revision: int = 1
    ledger: Ledger = Ledger()
    # -- the ladder ---------------------------------------------------------------------------
    stage: str = "identified"
    #: The due date the ladder's DPD counts from (the oldest instalment owing when it last moved).
    anchor_due_date: date
    last_rung_days: int = 0
    steps_done: list[StepRecord] = []
    steps_skipped: list[SkippedStep] = []
    deferred_step: DeferredStep | None = None
    ladder_shift_days: int = 0
    paused_since: datetime | None = None
    # -- messages, applied once per id --------------------------------------------------------
    seen: dict[str, list[str]] = {}
    rejected_signals: list[RejectedSignal] = []
    inbox: list[PendingSignal] = []
    # -- promises, pauses, plans, agents, hand-offs, compliance ------------------------------
    open_promise: OpenPromise | None = None
    promises_kept: int = 0
    promises_broken: int = 0
    pauses: list[Pause] = []
    pauses_ended: list[Pause] = []
    cease_contact: bool = False
    plan: ActivePlan | None = None
    plans_ended: list[EndedPlan] = []
    open_tasks: list[AgentTask] = []
    contact_outcomes: list[ContactOutcome] = []
    hand_offs: list[HandOff] = []
    contact_decisions: list[ContactDecision] = []
    # -- how it ended -------------------------------------------------------------------------
    outcome: Outcome | None = None
    closed_at: datetime | None = None
    cured_at: datetime | None = None
    cured_days_past_due: int | None = None
    written_off_minor: int | None = None
    waived_minor: int = 0
    last_payment_at: datetime | None = None
    record_seq: int = 0
    bookkeeping_errors: list[str] = []

    def seen_ids(self, kind: str) -> list[str]:
        """Ids of ``kind`` already applied (``payment``, ``promise``, ``plan``, ``pause:<kind>``...)."""
        return self.seen.setdefault(kind, [])

    def mark_seen(self, kind: str, item_id: str) -> None:
        """Remember that ``item_id`` of ``kind`` was applied."""
        self.seen.setdefault(kind, []).append(item_id)

    def ledger_rules(self, policy: CollectionPolicy) -> LedgerRules:
        """How this case's ledger adds up under ``policy`` (its jurisdiction, currency, portfolio)."""
        return LedgerRules.for_case(policy, jurisdiction=self.jurisdiction, currency=self.currency,
                                    timezone=self.timezone, portfolio=self.portfolio)

    def view(self, policy: CollectionPolicy, now: datetime) -> LedgerView:
        """The ledger at ``now``, its highest DPD counted from the case's opening."""
        return derive(self.ledger, self.ledger_rules(policy), now, since=self.opened_at)


@dataclass
class Record:
    """Write ``event`` to the database (``store.records``; the shell batches them)."""

    event: CaseEvent


@dataclass
class Log:
    """A structured log line from workflow code (ids and amounts only)."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    level: Literal["info", "warning"] = "info"


@dataclass
class Count:
    """Add 1 to a product counter (``ops.metrics``) with low-cardinality labels."""

    metric: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class SignalWorkflow:
    """Signal ``signal`` with ``argument`` to workflow ``workflow_id`` (a child of the case)."""

    workflow_id: str
    signal: str
    argument: Any
    #: True for signals that end the child (the case then waits for it to close).
    ends_child: bool = False


@dataclass
class ChildEnding:
    """Child ``workflow_id`` is ending on its own (a completed plan): the case waits for it."""

    workflow_id: str


Effect = Record | Log | Count | SignalWorkflow | ChildEnding


@dataclass
class Step:
    """The context of one transition: the case's ``policy``, the instant ``now`` (the
    workflow's clock) and the ``effects`` the transition asks for, in order."""

    policy: CollectionPolicy
    now: datetime
    effects: list[Effect] = field(default_factory=list)

    def record(self, event: CaseEvent) -> None:
        """Ask for a database write."""
        self.effects.append(Record(event))

    def log(self, name: str, level: Literal["info", "warning"] = "info", **fields: Any) -> None:
        """Ask for a log line."""
        self.effects.append(Log(name, fields, level))

    def count(self, metric: str, **labels: Any) -> None:
        """Ask for a counter increment."""
        self.effects.append(Count(metric, {key: str(value) for key, value in labels.items()}))

    def signal(self, workflow_id: str, signal: str, argument: Any, *, ends_child: bool = False) -> None:
        """Ask for a signal to a child workflow."""
        self.effects.append(SignalWorkflow(workflow_id, signal, argument, ends_child))

    def child_ending(self, workflow_id: str) -> None:
        """Ask the case to wait for child ``workflow_id``, which is ending on its own."""
        self.effects.append(ChildEnding(workflow_id))

    @property
    def records(self) -> list[CaseEvent]:
        """The database writes asked for so far."""
        return [effect.event for effect in self.effects if isinstance(effect, Record)]
