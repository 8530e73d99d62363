"""Case, signal and status types: the JSON shapes of CONTRACT.md as pydantic models.

Field names are the contract's; new fields are only ever added. Amounts are integers in minor
units (fen, cents) of ``currency``; dates are ``YYYY-MM-DD`` local calendar dates; instants are
timezone-aware UTC. No personal data is carried here: ids, amounts and dates only.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from collections_domain.case.ledger import Amounts, LedgerView
from collections_domain.rules.compliance import ContactDecision
from collections_domain.rules.policy import SUPPORTED_JURISDICTIONS, CollectionPolicy
from collections_domain.rules.strategy import CaseStrategy
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
JURISDICTIONS = SUPPORTED_JURISDICTIONS

#: Loan, borrower, payment and promise ids: 1-64 letters, digits, ``-``, ``_``, ``.``.
ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"

CURRENCY_PATTERN = r"^[A-Z]{3}$"

#: ISO 3166-2 subdivision codes: country, hyphen, 1-3 capitals or digits (``CN-SH``, ``US-NY``, ``GB-LND``).
REGION_PATTERN = r"^[A-Z]{2}-[A-Z0-9]{1,3}$"

#: Readable rules for the patterns above, used in error messages instead of the regex.
_PATTERN_RULES = {
    ID_PATTERN: "must be 1-64 characters, each a letter, a digit, '-', '_' or '.'",
    CURRENCY_PATTERN: "must be a 3-letter ISO 4217 code in capitals, such as CNY",
    REGION_PATTERN: "must be an ISO 3166-2 subdivision code such as CN-SH, US-NY or GB-LND",
}

Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
#: The largest amount anything takes: 2^53 - 1 minor units, so that every JSON client reads it
#: exactly and every database column (64-bit) holds it. One bound for the API, the CLI and the
#: workflow (``MinorUnits`` carries it everywhere).
MAX_MINOR = 9_007_199_254_740_991
#: An amount in minor units: a JSON integer (not a string, float or boolean), at most ``MAX_MINOR``.
MinorUnits = Annotated[int, Strict(), Field(le=MAX_MINOR)]
#: An amount in minor units from 0 to ``MAX_MINOR``.
Minor = Annotated[int, Strict(), Field(ge=0, le=MAX_MINOR)]
#: An amount in minor units from 1 to ``MAX_MINOR``.
PositiveMinor = Annotated[int, Strict(), Field(ge=1, le=MAX_MINOR)]

#: How a case ends. ``cured``: paid in full; ``settled``: a repayment plan was completed (a
#: waiver's forgiven part included) or the legal track settled; ``written_off``: the policy's
#: write-off rule; the ``closed_*`` outcomes come from stops (signals ``bankruptcy``, ``deceased``;
#: a dispute upheld to zero; ``closed_adjusted``: a schedule adjustment left nothing owing).
Outcome = Literal["cured", "settled", "written_off", "closed_bankruptcy", "closed_deceased", "closed_dispute_upheld",
                  "closed_adjusted"]
SignalKind = Literal[
    "payment_received",
    "promise_to_pay",
    "dispute_opened",
    "dispute_resolved",
    "cease_contact",
    "hardship",
    "bankruptcy",
    "deceased",
    "plan_instalment_missed",
    "breathing_space",
    "instalment_due",
    "payment_reversed",
    "schedule_adjusted",
    "legal_status_changed",
]
#: The id field each signal carries (the id a rejection is recorded under).
SIGNAL_ID_FIELD = {
    "payment_received": "payment_id",
    "promise_to_pay": "promise_id",
    "dispute_opened": "dispute_id",
    "dispute_resolved": "dispute_id",
    "cease_contact": "request_id",
    "hardship": "hardship_id",
    "bankruptcy": "notice_id",
    "deceased": "notice_id",
    "plan_instalment_missed": "plan_id",
    "breathing_space": "breathing_space_id",
    "instalment_due": "instalment_id",
    "payment_reversed": "reversal_id",
    "schedule_adjusted": "adjustment_id",
    "legal_status_changed": "event_id",
}
ContactOutcomeKind = Literal["reached", "no_answer", "wrong_number", "refused", "promise_made", "dispute_raised"]
PlanKind = Literal["instalments", "deferral", "waiver"]


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
        message = message.removeprefix("Value error, ")
        # A rule of the whole object names its fields itself ("cancel, add: ...").
        problems.append(message if loc == "(input)" and ": " in message else f"{loc}: {message}")
    return problems


class LoanInstalment(BaseModel):
    """One instalment of the loan: ``principal_minor``, ``interest_minor`` and ``fees_minor`` due
    on local date ``due_date`` (minor units; their sum > 0), and ``penalty_minor`` of penalty
    interest already accrued on it before the case took it (the loan book's figure; usually 0).
    ``instalment_id`` is the servicing system's id, unique within the loan: an instalment is
    applied once per id. Used in the case input, in signal ``instalment_due`` and in schedule
    adjustments."""

    model_config = ConfigDict(extra="ignore")
    instalment_id: Identifier
    due_date: date
    principal_minor: Minor = 0
    interest_minor: Minor = 0
    fees_minor: Minor = 0
    penalty_minor: Minor = 0

    @property
    def total_minor(self) -> int:
        """Everything due on the instalment, in minor units."""
        return self.principal_minor + self.interest_minor + self.fees_minor + self.penalty_minor

    def problem(self, field: str = "") -> str | None:
        """The rule the instalment breaks beyond its fields' own (``"field: rule"``), or ``None``."""
        where = f"{field}." if field else ""
        if self.total_minor <= 0:
            return f"{where}principal_minor + interest_minor + fees_minor + penalty_minor: the sum must be > 0"
        if self.total_minor > MAX_MINOR:
            return f"{where}principal_minor + interest_minor + fees_minor + penalty_minor: the sum must be at most 2^53-1"
        return None


class OpeningPayment(BaseModel):
    """A payment the loan received before its case opened, which the case must know to allocate
    what follows (``CaseInput.payments``): ``amount_minor`` of the case's currency, as of
    ``paid_at`` (its value instant). The loan book sends those since the loan was last current,
    and the credit it had then (``credit-<date>``)."""

    model_config = ConfigDict(extra="ignore")
    payment_id: Identifier
    amount_minor: PositiveMinor
    paid_at: AwareDatetime


#: How a case was opened, for the record (``CaseInput.opening_reason``): ``manual`` (a person, the
#: CLI or the API), ``scan`` (the delinquency scan found the loan overdue), ``reversal`` (a payment
#: of an ended case was reversed), ``webhook`` (a payment sent with signal-with-start).
OpeningSource = Literal["manual", "scan", "reversal", "webhook", "simulation"]


class OpeningReason(BaseModel):
    """Why a case opened: its ``source`` and the ``rule`` that fired, ids and numbers only
    (``"instalment 3 due 2026-11-20 unpaid 1 day past the 0-day grace; overdue 250000 >= 100"``)."""

    model_config = ConfigDict(extra="ignore")
    source: OpeningSource = "manual"
    rule: str = Field("", max_length=300)
    scan_id: str | None = Field(None, max_length=100)


class CaseInput(BaseModel):
    """The workflow's one input (CONTRACT.md "Workflow").

    Decoding never raises: a payload that breaks a field's rule still decodes, with the problems
    kept in ``input_problems`` so that the workflow can fail at once, naming the field and the
    rule, instead of retrying a task that cannot decode. Build it with ``CaseInput.checked(...)``
    in Python to get a ``ValueError`` right away.

    Fields: ``loan_id``/``borrower_id`` (ids), ``currency`` (ISO 4217), ``principal_due_minor``,
    ``interest_due_minor``, ``fees_due_minor`` (minor units, each >= 0, sum > 0),
    ``oldest_due_date`` (local date), ``timezone`` (IANA), ``jurisdiction`` (``CN``/``US``/``UK``),
    ``policy_version`` (``None``: the current default), ``region`` (ISO 3166-2, optional), ``resume`` (set only by continue-as-new).

    Added with the loan ledger (all optional, so the contract's input still opens a loan with one
    overdue instalment): ``instalments`` (the loan's instalments due and unpaid, each
    ``LoanInstalment``; when given, the three amounts above must be 0 or their sums, and
    ``oldest_due_date`` the earliest due date), ``payments`` (``OpeningPayment``: payments made
    on those instalments before the case opened, allocated by the case's waterfall), ``portfolio`` (the loan book's portfolio id; the
    policy may switch accrual off per portfolio), ``opening_reason`` (``OpeningReason``),
    ``reopened_from`` (the run id of the ended case this one re-opens, after a reversal) and
    ``core`` (the case core's state, set only by continue-as-new).
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
    #: Added with the HTTP API (issue 5): the borrower's ISO 3166-2 region, for the ``Region``
    #: search attribute only (operators filter by it); ``None`` when unknown.
    region: str | None = Field(None, pattern=REGION_PATTERN)
    resume: CaseState | None = None
    instalments: list[LoanInstalment] = Field(default_factory=list, max_length=1000)
    payments: list[OpeningPayment] = Field(default_factory=list, max_length=1000)
    portfolio: str | None = Field(None, pattern=ID_PATTERN)
    opening_reason: OpeningReason | None = None
    reopened_from: str | None = Field(None, max_length=100)
    #: The case core's state (``case.state.CaseCore``), carried through continue-as-new only.
    core: Any = None

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
        if not problems and self.instalments:
            problems += self._instalment_problems()
        elif not problems and sum(amounts) <= 0:
            problems.append(
                "principal_due_minor + interest_due_minor + fees_due_minor: the sum must be > 0"
            )
        if not problems and sum(amounts) > MAX_MINOR:
            problems.append("principal_due_minor + interest_due_minor + fees_due_minor: the sum must be at most 2^53-1")
        if self.jurisdiction not in JURISDICTIONS and not any(
            p.startswith("jurisdiction") for p in problems
        ):
            problems.append(
                f"jurisdiction: must be one of {', '.join(JURISDICTIONS)}, got {self.jurisdiction!r}"
            )
        return problems

    def _instalment_problems(self) -> list[str]:
        problems = []
        ids = [line.instalment_id for line in self.instalments]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            problems.append(f"instalments: each instalment_id once, repeated: {repeated}")
        for index, line in enumerate(self.instalments):
            problem = line.problem(f"instalments.{index}")
            if problem:
                problems.append(problem)
        total = sum(line.total_minor for line in self.instalments)
        if total > MAX_MINOR:
            problems.append("instalments: the amounts must add up to at most 2^53-1")
        paid = [p.payment_id for p in self.payments]
        if len(set(paid)) != len(paid):
            problems.append("payments: each payment_id once")
        if sum(p.amount_minor for p in self.payments) > MAX_MINOR:
            problems.append("payments: the amounts must add up to at most 2^53-1")
        sums = {
            "principal_due_minor": (self.principal_due_minor, sum(i.principal_minor for i in self.instalments)),
            "interest_due_minor": (self.interest_due_minor, sum(i.interest_minor for i in self.instalments)),
            "fees_due_minor": (self.fees_due_minor, sum(i.fees_minor for i in self.instalments)),
        }
        for name, (given, summed) in sums.items():
            if given not in (0, summed):
                problems.append(f"{name}: with instalments, must be 0 or their sum {summed}, got {given}")
        earliest = min(line.due_date for line in self.instalments)
        if self.oldest_due_date != earliest:
            problems.append(
                f"oldest_due_date: with instalments, must be the earliest due date {earliest.isoformat()}, "
                f"got {self.oldest_due_date.isoformat()}"
            )
        return problems

    def loan_instalments(self) -> list[LoanInstalment]:
        """The instalments this input opens with: ``instalments``, or for the contract's original
        shape one instalment ``due-<oldest_due_date>`` of the three amounts."""
        if self.instalments:
            return list(self.instalments)
        return [
            LoanInstalment(
                instalment_id=f"due-{self.oldest_due_date.isoformat()}",
                due_date=self.oldest_due_date,
                principal_minor=self.principal_due_minor,
                interest_minor=self.interest_due_minor,
                fees_minor=self.fees_due_minor,
            )
        ]

    @classmethod
    def checked(cls, **fields: Any) -> CaseInput:
        """Build and check an input; raises ``ValueError`` listing every broken rule."""
        case = cls.model_validate(fields)
        if case.input_problems:
            raise ValueError("; ".join(case.input_problems))
        return case

    @property
    def overdue_minor(self) -> int:
        """What the input says is owed at the start, in minor units: principal + interest + fees,
        or the sum of ``instalments`` when given."""
        if self.instalments:
            return sum(line.total_minor for line in self.instalments)
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


class InstalmentDue(LoanInstalment):
    """Signal ``instalment_due``: an instalment of the loan fell due while its case is open (the
    loan book forwards it on its due date; it may also be announced before). Applied once per
    ``instalment_id``; ``currency``, when given, must be the case's."""

    currency: str | None = None


PaymentReversalReason = Literal["bounced", "chargeback", "error", "other"]


class PaymentReversed(BaseModel):
    """Signal ``payment_reversed``: payment ``payment_id`` bounced or was charged back, as of
    ``reversed_at`` (default: when the case receives it). Its allocation is undone (the payment is
    treated as never made) and what it had paid is owed again. Applied once per ``reversal_id``;
    on a case that has ended, it re-opens collection for the loan (``client.reverse_payment``)."""

    model_config = ConfigDict(extra="ignore")
    reversal_id: Identifier
    payment_id: Identifier
    reason: PaymentReversalReason = "other"
    reversed_at: AwareDatetime | None = None


AdjustmentReason = Literal["restructure", "cancellation", "correction", "other"]


class ScheduleAdjusted(BaseModel):
    """Signal ``schedule_adjusted``: the servicing system changed the loan's schedule. ``cancel``
    names instalments that no longer exist (what was paid to them becomes credit); ``add`` gives
    new or replacing instalments (a restructure cancels some and adds others). ``reason_code``
    says why and ``reference`` may name the servicing system's record (an id, no free text).
    Applied once per ``adjustment_id``, as of ``effective_at`` (default: when received)."""

    model_config = ConfigDict(extra="ignore")
    adjustment_id: Identifier
    reason_code: AdjustmentReason
    reference: Identifier | None = None
    cancel: list[Identifier] = Field(default_factory=list, max_length=1000)
    add: list[LoanInstalment] = Field(default_factory=list, max_length=1000)
    effective_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> ScheduleAdjusted:
        if not self.cancel and not self.add:
            raise ValueError("cancel, add: an adjustment cancels or adds at least one instalment")
        return self


class LegalStatusChanged(BaseModel):
    """Signal ``legal_status_changed``, from the case's ``LegalReferralWorkflow``: the legal track
    reached ``status`` on ``occurred_on``. A ``judgment`` may carry ``awarded_minor`` (what the
    court awarded for the debt; the ledger is written down or up to it) and
    ``court_costs_minor`` (a new line the borrower owes); ``settled`` ends the case ``settled``."""

    model_config = ConfigDict(extra="ignore")
    event_id: Identifier
    status: Literal["lawyers_letter_sent", "suit_filed", "judgment", "settled"]
    occurred_on: date | None = None
    awarded_minor: Minor | None = None
    court_costs_minor: Minor | None = None


class PromiseToPay(BaseModel):
    """Signal ``promise_to_pay``: the borrower commits to pay ``amount_minor`` by ``promised_date``.

    ``promised_date`` is a date on the borrower's local calendar. Applied once per ``promise_id``.
    """

    model_config = ConfigDict(extra="ignore")
    promise_id: Identifier
    amount_minor: MinorUnits
    promised_date: date


class DisputeOpened(BaseModel):
    """Signal ``dispute_opened``: the borrower disputes the debt; no collection contact while open.

    ``reason_code``: ``amount`` (the amount is wrong), ``not_my_debt``, ``already_paid`` or ``other``.
    """

    model_config = ConfigDict(extra="ignore")
    dispute_id: Identifier
    reason_code: Literal["amount", "not_my_debt", "already_paid", "other"] = "other"


class DisputeResolved(BaseModel):
    """Signal ``dispute_resolved``: ``upheld`` (the borrower was right: the outstanding amount is
    corrected to ``corrected_outstanding_minor``, required, 0 <= it <= the outstanding amount) or
    ``rejected`` (the ladder resumes where it paused)."""

    model_config = ConfigDict(extra="ignore")
    dispute_id: Identifier
    resolution: Literal["upheld", "rejected"]
    corrected_outstanding_minor: MinorUnits | None = None


class CeaseContact(BaseModel):
    """Signal ``cease_contact``: the borrower asked in writing that contact stop. Permanent: only
    the actions in the policy's ``pauses.after_cease_contact`` are still taken."""

    model_config = ConfigDict(extra="ignore")
    request_id: Identifier


class Hardship(BaseModel):
    """Signal ``hardship``: pause the ladder for the policy's ``pauses.hardship_days``."""

    model_config = ConfigDict(extra="ignore")
    hardship_id: Identifier


class BreathingSpace(BaseModel):
    """Signal ``breathing_space`` (UK: the Debt Respite Scheme): pause the ladder for the policy's
    ``compliance.UK.breathing_space_days``; rejected where the jurisdiction has no such scheme."""

    model_config = ConfigDict(extra="ignore")
    breathing_space_id: Identifier


class DeferredStep(BaseModel):
    """A due step the compliance gate deferred: ``step`` waits until ``until`` (UTC) for
    ``rule_id`` (the permitted hours, or a notice period)."""

    step: str
    until: datetime
    rule_id: str


class CaseStop(BaseModel):
    """Signals ``bankruptcy`` and ``deceased``: end the case (``closed_bankruptcy`` /
    ``closed_deceased``), recalling any placement and withdrawing any legal referral."""

    model_config = ConfigDict(extra="ignore")
    notice_id: Identifier


class PlanInstalmentMissed(BaseModel):
    """Signal ``plan_instalment_missed``, sent by a plan's child workflow: instalment ``seq`` was
    not paid by its date plus grace, so the plan is broken."""

    model_config = ConfigDict(extra="ignore")
    plan_id: Identifier
    seq: int = Field(ge=1)


class PlanProposal(BaseModel):
    """Update ``propose_plan``: a negotiated repayment plan (limits: the policy's ``plans.*``).

    - ``instalments``: ``instalment_dates`` (2..``max_instalments`` strictly increasing local
      dates, from today to today + ``max_term_days``); the outstanding amount is split equally
      with the remainder minor units on the last, or ``first_instalment_minor`` first and the
      rest split equally. The first instalment must be at least ``min_first_payment_bps``.
    - ``deferral``: ``new_due_date``, after today and at most ``max_deferral_days`` out; the whole
      outstanding amount is due then.
    - ``waiver``: forgive ``waive_minor`` of the interest and fees outstanding (never principal),
      at most ``max_waiver_bps`` of them; above ``auto_approve_waiver_bps`` an ``approver_id`` is
      required. The rest is due by ``pay_by`` (default today + ``waiver_pay_within_days``).
    """

    model_config = ConfigDict(extra="forbid")
    plan_id: Identifier
    kind: PlanKind
    instalment_dates: list[date] | None = None
    first_instalment_minor: MinorUnits | None = None
    new_due_date: date | None = None
    waive_minor: MinorUnits | None = None
    pay_by: date | None = None
    approver_id: Identifier | None = None
    proposed_by: Identifier | None = None


class Instalment(BaseModel):
    """One instalment of a plan: ``amount_minor`` due by the end of local date ``due_date``
    (plus the policy's grace). ``status``: ``open``, ``paid`` or ``missed``."""

    seq: int
    due_date: date
    amount_minor: int
    status: Literal["open", "paid", "missed"] = "open"


class PlanAccepted(BaseModel):
    """The result of an accepted ``propose_plan``: the schedule the plan's child workflow watches.

    ``total_minor`` is what the borrower pays; ``waived_minor`` is forgiven when it is paid.
    """

    plan_id: str
    kind: PlanKind
    instalments: list[Instalment]
    total_minor: int
    waived_minor: int = 0
    currency: str
    plan_workflow_id: str
    approver_id: str | None = None


class ActivePlan(PlanAccepted):
    """The plan a case is on (``status.plan``); ``paid_toward_minor`` counts payments applied since
    it was accepted."""

    accepted_at: datetime
    paid_toward_minor: int = 0
    started: bool = False


class EndedPlan(BaseModel):
    """A plan that ended: ``completed`` (case settled), ``broken`` (an instalment missed) or
    ``closed`` (the case ended otherwise)."""

    plan_id: str
    kind: PlanKind
    status: Literal["completed", "broken", "closed"]
    ended_at: datetime
    reason: str


class ContactOutcomeReport(BaseModel):
    """Update ``record_contact_outcome``: what an agent task (``task_key``, the task's
    idempotency key) achieved. ``promise_made`` needs ``promise``; ``dispute_raised`` needs
    ``dispute_id``. Free-text notes never go to the workflow: the CLI/API stores them in the
    database (``contact_notes``)."""

    model_config = ConfigDict(extra="forbid")
    task_key: str = Field(min_length=1, max_length=200)
    outcome: ContactOutcomeKind
    agent_id: Identifier
    promise: PromiseToPay | None = None
    dispute_id: Identifier | None = None


class AgentTask(BaseModel):
    """An agent task (call or visit) waiting for its outcome, to be reported by ``report_by`` (UTC)."""

    task_key: str
    action: str
    created_at: datetime
    report_by: datetime


class ContactOutcome(BaseModel):
    """A recorded outcome of an agent task (``missed``: not reported by its deadline)."""

    task_key: str
    action: str
    outcome: str
    recorded_at: datetime
    agent_id: str | None = None
    promise_id: str | None = None
    dispute_id: str | None = None


class Pause(BaseModel):
    """A pause or stop of the ladder: ``dispute``, ``hardship`` (``until``), ``cease_contact``,
    ``bankruptcy``, ``deceased``. ``ended_at``/``resolution`` once it ended."""

    kind: str
    id: str
    started_at: datetime
    until: datetime | None = None
    ended_at: datetime | None = None
    resolution: str | None = None


class HandOff(BaseModel):
    """A placement with an agency or a legal referral, run by its own child workflow."""

    kind: Literal["placement", "legal_referral"]
    workflow_id: str
    started_at: datetime
    status: Literal["active", "recalled", "withdrawn"] = "active"
    ended_at: datetime | None = None
    reason: str | None = None
    #: The legal track's last state (``lawyers_letter_sent``, ``suit_filed``, ``judgment``, ``settled``).
    legal_status: str | None = None


class OpenPromise(BaseModel):
    """The promise the case is waiting on (``status.open_promise``)."""

    promise_id: str
    amount_minor: int
    promised_date: date
    paid_toward_minor: int = 0
    made_at: datetime | None = None
    deadline: datetime | None = None
    #: How many payments the case had received when the promise was made: only later ones count
    #: toward it (signals handled in one workflow task share one ``made_at`` instant).
    payments_before: int | None = None


class ActionResult(BaseModel):
    """What one action of a step did: ``sent``, ``recorded``, ``failed`` or ``fallback``."""

    action: str
    status: str
    idempotency_key: str
    detail: str | None = None


class StepRecord(BaseModel):
    """A ladder step taken (``status.steps_done``); ``at`` is the UTC instant it ran;
    ``anchor_due_date`` the due date its DPD counted from (the oldest instalment then owing)."""

    step: str
    days_past_due: int
    at: datetime
    actions: list[str]
    results: list[ActionResult] = []
    anchor_due_date: date | None = None


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
    # Added with plans, pauses, contact outcomes and hand-offs (issue 3).
    plan: ActivePlan | None = None
    plans_ended: list[EndedPlan] = []
    pauses: list[Pause] = []
    pauses_ended: list[Pause] = []
    cease_contact: bool = False
    ladder_shift_days: int = 0
    open_tasks: list[AgentTask] = []
    contact_outcomes: list[ContactOutcome] = []
    hand_offs: list[HandOff] = []
    waived_minor: int = 0
    closed_at: datetime | None = None
    written_off_minor: int | None = None
    #: Every compliance gate decision, in order (``collections_domain.rules.compliance``).
    contact_decisions: list[ContactDecision] = []
    deferred_step: DeferredStep | None = None
    # Added with the loan ledger (issue 11).
    #: The loan's instalments, payments (with their allocations) and charges, as of ``as_of``.
    ledger: LedgerView | None = None
    #: ``outstanding_minor`` by component (principal, interest, fees, penalty).
    outstanding_components: Amounts | None = None
    max_days_past_due: int = 0
    episode_id: str | None = None
    portfolio: str | None = None
    opening_reason: OpeningReason | None = None
    reopened_from: str | None = None
    #: Database writes the case could not make (a record refused as invalid), by rule.
    bookkeeping_errors: list[str] = []
    #: What the case was assigned at opening: score band, model, treatment path, experiment arm
    #: (``None`` for cases opened before the strategy, or under a policy without one).
    strategy: CaseStrategy | None = None


class PendingSignal(BaseModel):
    """A signal received but not yet applied (kept across continue-as-new). ``kind`` is its name:
    one of ``SignalKind``, or another name, which the case records as rejected."""

    kind: str
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
    # Added with plans, pauses and hand-offs; defaults decode states saved before them.
    interest_fees_outstanding_minor: int | None = None
    opened_at: datetime | None = None
    last_payment_at: datetime | None = None
    plan: ActivePlan | None = None
    plans_ended: list[EndedPlan] = []
    seen_plan_ids: list[str] = []
    pauses: list[Pause] = []
    pauses_ended: list[Pause] = []
    paused_since: datetime | None = None
    seen_pause_ids: list[str] = []
    cease_contact: bool = False
    ladder_shift_days: int = 0
    open_tasks: list[AgentTask] = []
    contact_outcomes: list[ContactOutcome] = []
    hand_offs: list[HandOff] = []
    waived_minor: int = 0
    closed_at: datetime | None = None
    written_off_minor: int | None = None
    #: Every compliance gate decision, in order (``collections_domain.rules.compliance``).
    contact_decisions: list[ContactDecision] = []
    deferred_step: DeferredStep | None = None


CaseInput.model_rebuild()
