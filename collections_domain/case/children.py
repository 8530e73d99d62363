"""Inputs, signals and results of the case's child workflows: repayment plans, agency
placements and legal referrals. Ids and amounts (minor units) only."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from collections_domain.case.contract import ID_PATTERN, Instalment, Minor

PLAN_WORKFLOW_TYPE = "RepaymentPlanWorkflow"
PLACEMENT_WORKFLOW_TYPE = "AgencyPlacementWorkflow"
LEGAL_WORKFLOW_TYPE = "LegalReferralWorkflow"

#: The legal track's states, in the order they may happen.
LEGAL_STATES = ("filed", "lawyers_letter_sent", "suit_filed", "judgment", "settled")


def plan_workflow_id(parent_workflow_id: str, plan_id: str) -> str:
    """``collection-<loan_id>-plan-<plan_id>``."""
    return f"{parent_workflow_id}-plan-{plan_id}"


def placement_workflow_id(parent_workflow_id: str, oldest_due_date: date) -> str:
    """``collection-<loan_id>-placement-<oldest_due_date>`` (one placement per case)."""
    return f"{parent_workflow_id}-placement-{oldest_due_date.isoformat()}"


def legal_workflow_id(parent_workflow_id: str, oldest_due_date: date) -> str:
    """``collection-<loan_id>-legal-<oldest_due_date>`` (one referral per case)."""
    return f"{parent_workflow_id}-legal-{oldest_due_date.isoformat()}"


class PlanRun(BaseModel):
    """The plan's schedule and, across continue-as-new, how far it got.

    ``deadlines[i]`` is the UTC instant instalment ``i + 1`` is missed (end of its local date plus
    grace, computed by the parent from the policy). Amounts in minor units of ``currency``.
    """

    plan_id: str
    parent_workflow_id: str
    loan_id: str
    currency: str
    timezone: str
    instalments: list[Instalment]
    deadlines: list[datetime]
    instalments_per_run: int = 24
    paid_toward_minor: int = 0
    next_seq: int = 1
    seen_payment_ids: list[str] = []


class PlanPaymentForwarded(BaseModel):
    """Signal ``payment_applied`` from the parent: ``amount_minor`` applied to the loan."""

    payment_id: str
    amount_minor: int


class PlanResult(BaseModel):
    """How the plan's child ended: ``completed``, ``broken`` (``missed_seq``) or ``closed``."""

    plan_id: str
    status: str
    paid_toward_minor: int
    missed_seq: int | None = None
    reason: str | None = None




class LegalStatusUpdate(BaseModel):
    """Signal ``legal_status`` to a ``LegalReferralWorkflow``: the legal track moved on.

    ``status``: ``lawyers_letter_sent``, ``suit_filed``, ``judgment`` or ``settled``, never
    backwards (``LEGAL_STATES``); ``occurred_on`` is the local date it happened. A judgment or a
    settlement is passed on to the case (``LegalStatusChanged``): the award and the court costs
    enter its ledger, a settlement ends it ``settled``.
    """

    model_config = ConfigDict(extra="ignore")
    event_id: str = Field(pattern=ID_PATTERN)
    status: Literal["lawyers_letter_sent", "suit_filed", "judgment", "settled"]
    occurred_on: date | None = None
    #: A judgment's award for the debt and its court costs (minor units); the case's ledger takes them.
    awarded_minor: Minor | None = None
    court_costs_minor: Minor | None = None


class HandOffResult(BaseModel):
    """How a placement or legal referral child ended, and the states it went through."""

    child_workflow_id: str
    status: str
    reason: str | None = None
    states: list[str] = []
    rejected: list[str] = []


class ChildClosed(BaseModel):
    """Signal ``child_closed`` from a child to its case just before the child completes: the
    case waits for it before completing, so a child never outlives a closed case unreported."""

    workflow_id: str
    status: str
    reason: str | None = None
