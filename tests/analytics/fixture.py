"""A small portfolio written straight into the product's tables, whose KPIs are computed by hand
in ``kpis_test.py``: six loans in the loan book (four in CNY in Shanghai, two in GBP in London),
seven collection cases (one loan has two), two arms of experiment ``exp1`` and cases outside any,
with their instalments, payments (one reported late, one reversed, one overpaid), compliance
decisions, contacts (one failed and replaced by a manual review, one still pending), agent-task
outcomes, promises, an agency placement, a legal referral and a write-off.

Everything happens between 2026-01-01 and 2026-04-30; the report is taken at ``NOW``, so the
month-ends are 2026-01-31, 02-28, 03-31 and 04-30 in each loan's zone. Every loan is in a
portfolio without accrual, so the ledger adds exactly the amounts below.

The loans, their month-end DPD (local calendar) and cases:

====  ====  ===============================  =====  =====  =====  =====  =============================
loan  cur.  instalments (due: minor units)   01-31  02-28  03-31  04-30  cases
====  ====  ===============================  =====  =====  =====  =====  =============================
L1    CNY   01-10: 100000                    21     0      0      0      C1 exp1:a, cured 02-20
L2    CNY   01-05: 50000, 02-05: 50000        26     54     85*    0      C2 exp1:b, cured 04-02
L3    GBP   01-20: 30000                     11     39     0      0      C3 exp1:a, placed, cured 03-15
L4    CNY   01-01: 1200000, 06-01: 100000    30     58     89     closed C4 exp1:a, legal, written off 04-15
L5    GBP   02-10: 40000, 03-10 (cancelled)  0      18     49     79     C5 exp1:b, open
L6    CNY   03-01: 20000, 04-01: 20000       0      0      0      29     C6 none (cured 03-05), C7 none, open
====  ====  ===============================  =====  =====  =====  =====  =============================

* L2's payment of 03-30 reached the product on 04-02: unknown at the March month-end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from collections_domain.rules.policy import CollectionPolicy, PolicyRegistry
from collections_domain.rules.strategy import (
    DEFAULT_BUCKETS,
    Experiment,
    ExperimentArm,
    ReportingRules,
)
from collections_domain.store.models import (
    Borrower,
    CollectionCase,
    ContactAttempt,
    ContactDecisionRecord,
    ContactOutcomeRecord,
    HandOffEventRecord,
    LedgerEntryRecord,
    LegalReferral,
    Loan,
    LoanInstalmentRecord,
    LoanPaymentRecord,
    Payment,
    Placement,
    PromiseRecord,
    WriteOff,
)

#: The instant the report is taken.
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
#: The policy version of the cases opened before the strategy (C6, C7).
OLD_VERSION = "2026.12-ledger"
AGENCY = "Northbridge"
SHANGHAI, LONDON = "Asia/Shanghai", "Europe/London"

#: What one action costs in the test (minor units), instead of the packaged policy's prices.
UNIT_COSTS = {
    "CNY": {"sms_reminder": 5, "email_overdue_notice": 1, "agent_call": 300, "demand_letter": 800,
            "agency_placement": 2000, "legal_referral": 50000, "manual_review": 200},
    "GBP": {"sms_reminder": 4, "email_overdue_notice": 1, "agent_call": 250, "demand_letter": 90,
            "agency_placement": 1500, "legal_referral": 30000, "manual_review": 150},
}
#: The strategy columns another change added to collection_cases: a database without them gets them.
STRATEGY_COLUMNS = {"propensity_bps": "INTEGER", "score_band": "VARCHAR(20)", "model_version": "VARCHAR(40)",
                    "treatment": "VARCHAR(32)", "experiment_id": "VARCHAR(40)", "strategy_arm": "VARCHAR(20)"}


def kpi_policy() -> CollectionPolicy:
    """The packaged policy with the test's unit costs, the default buckets and experiment
    ``exp1`` whose champion is arm ``a``."""
    policy = PolicyRegistry.from_settings(None).current
    experiment = Experiment(id="exp1", arms=(ExperimentArm(name="a", treatment="standard", share_bps=5000),
                                             ExperimentArm(name="b", treatment="early_call", share_bps=5000)))
    return policy.model_copy(update={"unit_costs": UNIT_COSTS, "experiments": (experiment,),
                                     "reporting": ReportingRules(dpd_buckets=DEFAULT_BUCKETS)})


def at(day: str, hour: int = 1, minute: int = 0) -> datetime:
    """``YYYY-MM-DD`` at ``hour``:``minute`` UTC (01:00 UTC is 09:00 in Shanghai, 09:00 UTC in London)."""
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


@dataclass(frozen=True)
class CaseSpec:
    name: str
    loan_id: str
    episode: str
    currency: str
    jurisdiction: str
    timezone: str
    portfolio: str
    opening_minor: int
    oldest_due: date
    opened_at: datetime
    outcome: str | None = None
    closed_at: datetime | None = None
    experiment_id: str | None = None
    arm: str | None = None
    treatment: str | None = None
    score_band: str | None = None
    policy_version: str | None = None  # None: the test policy's

    @property
    def workflow_id(self) -> str:
        return f"collection-{self.loan_id}"

    def key(self, step: str, action: str, anchor: date | None = None) -> str:
        """The contact's idempotency key (``case.core.contact_key``)."""
        return f"{self.workflow_id}:{self.episode[:8]}:{(anchor or self.oldest_due).isoformat()}:{step}:{action}"


def _episode(n: int) -> str:
    return f"c{n}00000{n}-0000-4000-8000-00000000000{n}"


CASES = [
    CaseSpec("C1", "L1", _episode(1), "CNY", "CN", SHANGHAI, "no-accrual", 100000, date(2026, 1, 10), at("2026-01-11"),
             "cured", at("2026-02-20"), "exp1", "a", "standard", "low"),
    CaseSpec("C2", "L2", _episode(2), "CNY", "CN", SHANGHAI, "no-accrual", 50000, date(2026, 1, 5), at("2026-01-06"),
             "cured", at("2026-04-02"), "exp1", "b", "early_call", "medium"),
    CaseSpec("C3", "L3", _episode(3), "GBP", "UK", LONDON, "home-credit", 30000, date(2026, 1, 20), at("2026-01-21", 9),
             "cured", at("2026-03-15", 9), "exp1", "a", "standard", "medium"),
    CaseSpec("C4", "L4", _episode(4), "CNY", "CN", SHANGHAI, "no-accrual", 1200000, date(2026, 1, 1), at("2026-01-02"),
             "written_off", at("2026-04-15"), "exp1", "a", "standard", "low"),
    CaseSpec("C5", "L5", _episode(5), "GBP", "UK", LONDON, "no-accrual", 40000, date(2026, 2, 10), at("2026-02-11", 9),
             None, None, "exp1", "b", "early_call", "medium"),
    # Opened before the strategy: no strategy columns at all (NULL).
    CaseSpec("C6", "L6", _episode(6), "CNY", "CN", SHANGHAI, "no-accrual", 20000, date(2026, 3, 1), at("2026-03-02"),
             "cured", at("2026-03-05"), policy_version=OLD_VERSION),
    # In no experiment: arm "none" as the strategy records it.
    CaseSpec("C7", "L6", _episode(7), "CNY", "CN", SHANGHAI, "no-accrual", 20000, date(2026, 4, 1), at("2026-04-02"),
             None, None, None, "none", "standard", "high", policy_version=OLD_VERSION),
]
BY_NAME = {case.name: case for case in CASES}

#: (loan, currency, zone, jurisdiction, portfolio, [(instalment, due, principal, cancelled at)]).
LOANS = [
    ("L1", "CNY", SHANGHAI, "CN", "no-accrual", [("I1", date(2026, 1, 10), 100000, None)]),
    ("L2", "CNY", SHANGHAI, "CN", "no-accrual", [("I1", date(2026, 1, 5), 50000, None),
                                                 ("I2", date(2026, 2, 5), 50000, None)]),
    ("L3", "GBP", LONDON, "UK", "home-credit", [("I1", date(2026, 1, 20), 30000, None)]),
    ("L4", "CNY", SHANGHAI, "CN", "no-accrual", [("I1", date(2026, 1, 1), 1200000, None),
                                                 ("I2", date(2026, 6, 1), 100000, None)]),
    ("L5", "GBP", LONDON, "UK", "no-accrual", [("I1", date(2026, 2, 10), 40000, None),
                                               ("I2", date(2026, 3, 10), 40000, at("2026-03-20", 9))]),
    ("L6", "CNY", SHANGHAI, "CN", "no-accrual", [("I1", date(2026, 3, 1), 20000, None),
                                                 ("I2", date(2026, 4, 1), 20000, None)]),
]

#: (case, payment, amount, applied, paid at, received at, reversed at).
PAYMENTS = [
    ("C1", "P1", 100500, 100000, at("2026-02-20"), at("2026-02-20"), None),  # 500 overpaid: credit, not recovery
    ("C2", "P2", 100000, 100000, at("2026-03-30"), at("2026-04-02"), None),  # reported 3 days late
    ("C3", "P3a", 10000, 10000, at("2026-02-10", 9), at("2026-02-10", 9), None),
    ("C3", "P3b", 20000, 20000, at("2026-03-15", 9), at("2026-03-15", 9), None),
    ("C4", "P4a", 200000, 200000, at("2026-02-15"), at("2026-02-15"), None),
    ("C4", "P4b", 50000, 50000, at("2026-02-20"), at("2026-02-20"), at("2026-02-25")),  # bounced
    ("C6", "P6", 20000, 20000, at("2026-03-05"), at("2026-03-05"), None),
]

#: (case, step, decided at, [(action, attempt status or None: nothing ran)]).
STEPS = [
    ("C1", "initial", at("2026-01-13"), [("sms_reminder", "sent"), ("email_overdue_notice", "sent")]),
    ("C1", "deep", at("2026-01-17"), [("agent_call", "recorded"), ("demand_letter", "sent")]),
    ("C2", "initial", at("2026-01-08"), [("sms_reminder", "sent"), ("email_overdue_notice", "failed")]),
    ("C2", "deep", at("2026-01-12"), [("agent_call", "recorded"), ("demand_letter", "sent")]),
    ("C3", "initial", at("2026-01-23", 9), [("sms_reminder", "sent"), ("email_overdue_notice", "sent")]),
    ("C3", "deep", at("2026-01-27", 9), [("agent_call", "recorded"), ("demand_letter", "sent")]),
    ("C3", "agency", at("2026-02-19", 9), [("agency_placement", "recorded")]),
    ("C4", "initial", at("2026-01-04"), [("sms_reminder", "sent"), ("email_overdue_notice", "sent")]),
    ("C4", "deep", at("2026-01-08"), [("agent_call", "recorded"), ("demand_letter", "sent")]),
    ("C4", "legal", at("2026-01-31"), [("legal_referral", "recorded")]),
    ("C5", "initial", at("2026-02-13", 9), [("sms_reminder", "sent"), ("email_overdue_notice", "sent")]),
    ("C5", "deep", at("2026-02-17", 9), [("agent_call", "recorded"), ("demand_letter", "pending")]),
    ("C6", "initial", at("2026-03-04"), [("sms_reminder", "recorded"), ("email_overdue_notice", "recorded")]),
]

#: Agent-call outcomes: (case, outcome, recorded at).
OUTCOMES = [
    ("C1", "reached", at("2026-01-17", 5)),
    ("C2", "no_answer", at("2026-01-12", 5)),
    ("C3", "refused", at("2026-01-27", 12)),
    ("C4", "wrong_number", at("2026-01-08", 5)),
    ("C5", "missed", at("2026-02-19", 9)),
]

#: (case, promise, status, made at, resolved at).
PROMISES = [
    ("C1", "PR1", "kept", at("2026-01-15"), at("2026-02-20")),
    ("C2", "PR2a", "broken", at("2026-01-20"), at("2026-01-30")),
    ("C2", "PR2b", "broken", at("2026-02-01"), at("2026-02-10")),
    ("C5", "PR5", "broken", at("2026-02-12", 9), at("2026-02-23", 9)),
    ("C6", "PR6", "kept", at("2026-03-03"), at("2026-03-05")),
    ("C7", "PR7", "open", at("2026-04-05"), None),
]


def _ensure_strategy_columns(engine: Engine) -> None:
    present = {c["name"] for c in inspect(engine).get_columns("collection_cases")}
    with engine.begin() as connection:
        for name, kind in STRATEGY_COLUMNS.items():
            if name not in present:
                connection.execute(text(f"ALTER TABLE collection_cases ADD COLUMN {name} {kind}"))


def write_portfolio(engine: Engine, policy: CollectionPolicy) -> dict[str, int]:
    """Write the portfolio (module docstring) into ``engine``'s tables; returns each case's row id."""
    _ensure_strategy_columns(engine)
    known_since = datetime(2025, 12, 1, tzinfo=UTC)
    with Session(engine) as db:
        for loan_id, currency, zone, jurisdiction, portfolio, instalments in LOANS:
            db.add(Borrower(id=f"B-{loan_id}", full_name=f"Borrower {loan_id}", timezone=zone))
            db.flush()
            db.add(Loan(id=loan_id, borrower_id=f"B-{loan_id}", currency=currency, timezone=zone,
                        jurisdiction=jurisdiction, portfolio=portfolio, updated_at=known_since))
            db.flush()
            for instalment_id, due, principal, cancelled_at in instalments:
                db.add(LoanInstalmentRecord(loan_id=loan_id, instalment_id=instalment_id, due_date=due,
                                            principal_minor=principal, cancelled_at=cancelled_at,
                                            updated_at=cancelled_at or known_since))
        db.flush()
        rows = {}
        for case in CASES:
            row = CollectionCase(
                workflow_id=case.workflow_id, loan_id=case.loan_id, borrower_id=f"B-{case.loan_id}",
                currency=case.currency, opening_overdue_minor=case.opening_minor, outstanding_minor=0,
                oldest_due_date=case.oldest_due, timezone=case.timezone, jurisdiction=case.jurisdiction,
                policy_version=case.policy_version or policy.version, stage="identified", outcome=case.outcome,
                opened_at=case.opened_at, closed_at=case.closed_at, episode_id=case.episode, portfolio=case.portfolio,
            )
            db.add(row)
            db.flush()
            rows[case.name] = row.id
        _write_case_facts(db)
        db.commit()
    with engine.begin() as connection:
        for case in CASES:
            connection.execute(text("UPDATE collection_cases SET experiment_id = :experiment, strategy_arm = :arm, "
                                    "treatment = :treatment, score_band = :band WHERE id = :id"),
                               {"experiment": case.experiment_id, "arm": case.arm, "treatment": case.treatment,
                                "band": case.score_band, "id": rows[case.name]})
    return rows


def _write_case_facts(db: Session) -> None:
    seq = dict.fromkeys(BY_NAME, 0)

    def record_key(case: CaseSpec) -> str:
        seq[case.name] += 1
        return f"{case.episode}:{seq[case.name]}"

    for case in CASES:  # each case's opening instalment(s), recorded as it opens
        for loan_id, _, _, _, _, instalments in LOANS:
            for instalment_id, due, principal, _ in instalments:
                if loan_id == case.loan_id and due == case.oldest_due:
                    db.add(LedgerEntryRecord(record_key=record_key(case), workflow_id=case.workflow_id,
                                             episode_id=case.episode, loan_id=case.loan_id, entry="instalment",
                                             ref_id=instalment_id, amount_minor=principal, due_date=due,
                                             principal_minor=principal, recorded_at=case.opened_at))
    c2, c4, c5 = BY_NAME["C2"], BY_NAME["C4"], BY_NAME["C5"]
    later = [
        (c2, "instalment", "I2", 50000, date(2026, 2, 5), at("2026-02-04", 16, 30)),  # fell due during C2
        (c4, "instalment", "I2", 100000, date(2026, 6, 1), at("2026-04-01")),  # announced, due after C4 ended
        (c5, "instalment", "I2", 40000, date(2026, 3, 10), at("2026-03-10", 0, 30)),
        (c5, "instalment_cancelled", "I2", 40000, date(2026, 3, 10), at("2026-03-20", 9)),  # and cancelled
    ]
    for case, entry, ref, amount, due, recorded in later:
        db.add(LedgerEntryRecord(record_key=record_key(case), workflow_id=case.workflow_id, episode_id=case.episode,
                                 loan_id=case.loan_id, entry=entry, ref_id=ref, amount_minor=amount, due_date=due,
                                 principal_minor=amount, recorded_at=recorded))

    for name, payment_id, amount, applied, paid_at, received_at, reversed_at in PAYMENTS:
        case = BY_NAME[name]
        db.add(Payment(payment_id=payment_id, workflow_id=case.workflow_id, loan_id=case.loan_id, amount_minor=amount,
                       applied_minor=applied, overpaid_minor=amount - applied, currency=case.currency, paid_at=paid_at,
                       applied_at=received_at, value_at=paid_at, episode_id=case.episode, reversed_at=reversed_at,
                       reversal_id="R-" + payment_id if reversed_at else None))
        db.add(LoanPaymentRecord(loan_id=case.loan_id, payment_id=payment_id, amount_minor=amount, currency=case.currency,
                                 paid_at=paid_at, received_at=received_at, reversed_at=reversed_at,
                                 case_episode_id=case.episode, source="case"))

    for name, step, decided_at, actions in STEPS:
        case = BY_NAME[name]
        for action, status in actions:
            key = case.key(step, action)
            db.add(ContactDecisionRecord(record_key=record_key(case), workflow_id=case.workflow_id, loan_id=case.loan_id,
                                         jurisdiction=case.jurisdiction, step=step, action=action, decision="allowed",
                                         rule_id=f"{case.jurisdiction}.allowed", reason="permitted", days_past_due=0,
                                         run_action=action, run_key=key, decided_at=decided_at))
            created = decided_at + timedelta(minutes=1)
            if name == "C6" and action == "sms_reminder":
                # The worker's clock of a time-skipping replay: inside C7's time, but its key names C6.
                created = at("2026-04-03")
            _attempt(db, case, key, step, action, status, created)
            if status == "failed":  # the fallback the case queues instead
                _attempt(db, case, f"{key}:fallback", step, "manual_review", "recorded", created)

    for name, outcome, recorded_at in OUTCOMES:
        case = BY_NAME[name]
        db.add(ContactOutcomeRecord(record_key=record_key(case), workflow_id=case.workflow_id, loan_id=case.loan_id,
                                    task_key=case.key("deep", "agent_call"), action="agent_call", outcome=outcome,
                                    recorded_at=recorded_at))

    for name, promise_id, status, made_at, resolved_at in PROMISES:
        case = BY_NAME[name]
        db.add(PromiseRecord(promise_id=promise_id, workflow_id=case.workflow_id, loan_id=case.loan_id,
                             amount_minor=case.opening_minor, promised_date=(made_at + timedelta(days=7)).date(),
                             status=status, made_at=made_at, resolved_at=resolved_at))

    c3 = BY_NAME["C3"]
    # The placement row carries the worker's clock of a replay (long before the case); the case's
    # decision (2026-02-19) is when it was placed. Recalled when the case cured.
    db.add(Placement(idempotency_key=c3.key("agency", "agency_placement"), workflow_id=c3.workflow_id,
                     loan_id=c3.loan_id, agency=AGENCY, amount_minor=20000, currency="GBP", days_past_due=30,
                     placed_at=datetime(2025, 12, 1, 10, tzinfo=UTC)))
    child = f"{c3.workflow_id}-placement-{c3.oldest_due.isoformat()}"
    for status, recorded_at in (("placed", at("2026-02-19", 9, 2)), ("recalled", at("2026-03-15", 9, 30))):
        db.add(HandOffEventRecord(record_key=f"{child}:{status}", workflow_id=c3.workflow_id, child_workflow_id=child,
                                  loan_id=c3.loan_id, hand_off="placement", status=status, recorded_at=recorded_at))
    db.add(LegalReferral(idempotency_key=c4.key("legal", "legal_referral"), workflow_id=c4.workflow_id,
                         loan_id=c4.loan_id, amount_minor=1200000, currency="CNY", days_past_due=30, jurisdiction="CN",
                         filed_at=at("2026-01-31", 1, 1)))
    db.add(WriteOff(record_key=record_key(c4), workflow_id=c4.workflow_id, loan_id=c4.loan_id, amount_minor=1000000,
                    currency="CNY", days_past_due=104, policy_version=c4.policy_version or "test",
                    written_off_at=at("2026-04-15")))


def _attempt(db: Session, case: CaseSpec, key: str, step: str, action: str, status: str, created: datetime) -> None:
    from collections_domain.rules.policy import ACTIONS

    db.add(ContactAttempt(idempotency_key=key, workflow_id=case.workflow_id, loan_id=case.loan_id, step=step,
                          action=action, channel=ACTIONS[action].channel.value, backend="test", status=status,
                          attempts=1, days_past_due=0, amount_minor=case.opening_minor, currency=case.currency,
                          created_at=created, updated_at=created))
