"""Case, signal and status types: the JSON shapes of CONTRACT.md as pydantic models.

Field names are the contract's; new fields are only ever added. Amounts are integers in minor
units (fen, cents) of ``currency``; dates are ``YYYY-MM-DD`` local calendar dates; instants are
timezone-aware UTC. No personal data is carried here: ids, amounts and dates only.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from collections_domain.policy import CollectionPolicy
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    model_validator,
)

WORKFLOW_TYPE = "LoanCollectionWorkflow"
WORKFLOW_ID_PREFIX = "collection-"
DEFAULT_TASK_QUEUE = "collections"
JURISDICTIONS = ("CN", "US", "UK")

#: Loan, borrower, payment and promise ids: 1-64 letters, digits, ``-``, ``_``, ``.``.
ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"

CURRENCY_PATTERN = r"^[A-Z]{3}$"

#: Readable rules for the patterns above, used in error messages instead of the regex.
_PATTERN_RULES = {
    ID_PATTERN: "must be 1-64 characters, each a letter, a digit, '-', '_' or '.'",
    CURRENCY_PATTERN: "must be a 3-letter ISO 4217 code in capitals, such as CNY",
}

Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
MinorUnits = Annotated[int, Strict()]

Outcome = Literal["cured"]
SignalKind = Literal["payment_received", "promise_to_pay"]


def workflow_id_for(loan_id: str) -> str:
    """The workflow id of ``loan_id``'s collections case: ``collection-<loan_id>``."""
    return f"{WORKFLOW_ID_PREFIX}{loan_id}"


def describe_errors(err: ValidationError) -> list[str]:
    """Turn a pydantic error into ``"field: rule"`` strings that name the field and the rule."""
    problems = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(input)"
        pattern = (item.get("ctx") or {}).get("pattern")
        message = _PATTERN_RULES.get(pattern, item["msg"]) if item["type"] == "string_pattern_mismatch" else item["msg"]
        if item["type"] in ("date_from_datetime_parsing", "date_parsing", "date_type"):
            message = f"must be a date YYYY-MM-DD ({item['msg']})"
        problems.append(f"{loc}: {message}")
    return problems


class CaseInput(BaseModel):
    """The workflow's one input (CONTRACT.md "Workflow").

    Decoding never raises: a payload that breaks a field's rule still decodes, with the problems
    kept in ``input_problems`` so that the workflow can fail at once, naming the field and the
    rule, instead of retrying a task that cannot decode. Build it with ``CaseInput.checked(...)``
    in Python to get a ``ValueError`` right away.

    Fields: ``loan_id``/``borrower_id`` (ids), ``currency`` (ISO 4217), ``principal_due_minor``,
    ``interest_due_minor``, ``fees_due_minor`` (minor units, each >= 0, sum > 0),
    ``oldest_due_date`` (local date), ``timezone`` (IANA), ``jurisdiction`` (``CN``/``US``/``UK``),
    ``policy_version`` (``None``: the current default), ``resume`` (set only by continue-as-new).
    """

    model_config = ConfigDict(extra="ignore")

    loan_id: Identifier
    borrower_id: Identifier
    currency: str = Field("CNY", pattern=CURRENCY_PATTERN)
    principal_due_minor: MinorUnits = Field(0, ge=0)
    interest_due_minor: MinorUnits = Field(0, ge=0)
    fees_due_minor: MinorUnits = Field(0, ge=0)
    oldest_due_date: date
    timezone: str = "Asia/Shanghai"
    jurisdiction: str = "CN"
    policy_version: str | None = None
    resume: CaseState | None = None

    _input_problems: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_problems(cls, data: Any, handler: Any) -> CaseInput:
        try:
            return handler(data)
        except ValidationError as err:
            problems = describe_errors(err)
            raw = data if isinstance(data, dict) else {}
            known = {k: v for k, v in raw.items() if k in cls.model_fields and k != "resume"}
            instance = cls.model_construct(**known)
            instance._input_problems = problems
            return instance

    @property
    def input_problems(self) -> list[str]:
        """Rules this input broke when it was decoded (``"field: rule"``), empty when none."""
        problems = list(self._input_problems)
        amounts = (self.principal_due_minor, self.interest_due_minor, self.fees_due_minor)
        if not problems and sum(amounts) <= 0:
            problems.append(
                "principal_due_minor + interest_due_minor + fees_due_minor: the sum must be > 0"
            )
        if self.jurisdiction not in JURISDICTIONS and not any(
            p.startswith("jurisdiction") for p in problems
        ):
            problems.append(
                f"jurisdiction: must be one of {', '.join(JURISDICTIONS)}, got {self.jurisdiction!r}"
            )
        return problems

    @classmethod
    def checked(cls, **fields: Any) -> CaseInput:
        """Build and check an input; raises ``ValueError`` listing every broken rule."""
        case = cls.model_validate(fields)
        if case.input_problems:
            raise ValueError("; ".join(case.input_problems))
        return case

    @property
    def overdue_minor(self) -> int:
        """Principal + interest + fees overdue at the start, in minor units."""
        return self.principal_due_minor + self.interest_due_minor + self.fees_due_minor

    @property
    def workflow_id(self) -> str:
        """``collection-<loan_id>``."""
        return workflow_id_for(self.loan_id)


class PaymentReceived(BaseModel):
    """Signal ``payment_received``: money received for the loan, applied once per ``payment_id``.

    ``amount_minor`` is a positive integer in minor units of ``currency`` (the case's currency);
    ``paid_at`` is the instant the money arrived, with a UTC offset.
    """

    model_config = ConfigDict(extra="ignore")
    payment_id: Identifier
    amount_minor: MinorUnits
    currency: str
    paid_at: AwareDatetime


class PromiseToPay(BaseModel):
    """Signal ``promise_to_pay``: the borrower commits to pay ``amount_minor`` by ``promised_date``.

    ``promised_date`` is a date on the borrower's local calendar. Applied once per ``promise_id``.
    """

    model_config = ConfigDict(extra="ignore")
    promise_id: Identifier
    amount_minor: MinorUnits
    promised_date: date


class OpenPromise(BaseModel):
    """The promise the case is waiting on (``status.open_promise``)."""

    promise_id: str
    amount_minor: int
    promised_date: date
    paid_toward_minor: int = 0
    made_at: datetime | None = None
    deadline: datetime | None = None


class ActionResult(BaseModel):
    """What one action of a step did: ``sent``, ``recorded``, ``failed`` or ``fallback``."""

    action: str
    status: str
    idempotency_key: str
    detail: str | None = None


class StepRecord(BaseModel):
    """A ladder step taken (``status.steps_done``); ``at`` is the UTC instant it ran."""

    step: str
    days_past_due: int
    at: datetime
    actions: list[str]
    results: list[ActionResult] = []


class SkippedStep(BaseModel):
    """A step the case passed without taking, and why (``status.steps_skipped``)."""

    step: str
    days_past_due: int
    at: datetime
    reason: str


class NextStep(BaseModel):
    """The next step the ladder will take if nothing changes, at UTC instant ``at``."""

    step: str
    at: datetime


class RejectedSignal(BaseModel):
    """A signal that changed nothing, with the rule it broke (``status.rejected_signals``)."""

    kind: str
    id: str
    reason: str
    received_at: datetime | None = None


class CaseStatus(BaseModel):
    """Query ``status`` and the workflow's result (CONTRACT.md "Query status").

    Amounts in minor units of ``currency``; ``days_past_due`` is as of ``as_of`` (the workflow's
    clock at its last event), counted in the borrower's local calendar.
    """

    loan_id: str
    stage: str
    days_past_due: int
    currency: str
    outstanding_minor: int
    paid_minor: int
    overpaid_minor: int
    open_promise: OpenPromise | None
    promises_kept: int
    promises_broken: int
    steps_done: list[StepRecord]
    next_step: NextStep | None
    rejected_signals: list[RejectedSignal]
    outcome: Outcome | None
    # Additions to the contract's fields (new names only).
    as_of: datetime
    oldest_due_date: date
    timezone: str
    jurisdiction: str
    policy_version: str
    steps_skipped: list[SkippedStep] = []
    cured_at: datetime | None = None
    cured_days_past_due: int | None = None


class PendingSignal(BaseModel):
    """A signal received but not yet applied (kept across continue-as-new)."""

    kind: SignalKind
    payload: Any
    received_at: datetime


class CaseState(BaseModel):
    """Everything a case knows; carried whole through continue-as-new (``CaseInput.resume``)."""

    policy: CollectionPolicy
    currency_exponent: int = 2
    opening_overdue_minor: int
    outstanding_minor: int
    paid_minor: int = 0
    overpaid_minor: int = 0
    stage: str = "identified"
    last_rung_days: int = 0
    steps_done: list[StepRecord] = []
    steps_skipped: list[SkippedStep] = []
    open_promise: OpenPromise | None = None
    promises_kept: int = 0
    promises_broken: int = 0
    applied_payment_ids: list[str] = []
    seen_promise_ids: list[str] = []
    rejected_signals: list[RejectedSignal] = []
    inbox: list[PendingSignal] = []
    outcome: Outcome | None = None
    cured_at: datetime | None = None
    cured_days_past_due: int | None = None
    record_seq: int = 0
    opened_recorded: bool = False


CaseInput.model_rebuild()
