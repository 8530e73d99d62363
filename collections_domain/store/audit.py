"""The compliance audit report: every contact decision with its rule, and what was sent.

Read from the database only (``contact_decisions`` joined with ``contact_attempts`` by the
contact's idempotency key, and ``collection_cases`` for the borrower's zone), so it works for
closed cases and without Temporal. One row per decision; a portfolio summary counts decisions
by jurisdiction, decision and rule. Times are UTC, with the borrower's local wall time beside.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO

from sqlalchemy.engine import Engine
from sqlmodel import select

from collections_domain.rules import calendar
from collections_domain.store.db import session
from collections_domain.store.models import CollectionCase, ContactAttempt, ContactDecisionRecord

COLUMNS = (
    "decided_at_utc", "decided_at_local", "loan_id", "jurisdiction", "step", "days_past_due", "action",
    "decision", "rule_id", "ran", "contact_status", "deferred_until_utc", "send_by_utc", "requirements", "reason",
)


@dataclass(frozen=True)
class AuditRow:
    """One gate decision as the auditor reads it (see ``COLUMNS``); ``ran`` is the action that
    ran (the rerouted one when rerouted), ``contact_status`` its ``contact_attempts`` status."""

    decided_at_utc: str
    decided_at_local: str
    loan_id: str
    jurisdiction: str
    step: str
    days_past_due: int
    action: str
    decision: str
    rule_id: str
    ran: str
    contact_status: str
    deferred_until_utc: str
    send_by_utc: str
    requirements: str
    reason: str


def _utc(instant: datetime | None) -> datetime | None:
    if instant is None:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _text(instant: datetime | None) -> str:
    instant = _utc(instant)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ") if instant else ""


def audit_rows(engine: Engine, loan_id: str | None = None) -> list[AuditRow]:
    """The audit rows of one loan (``loan_id``) or of the whole portfolio, oldest first."""
    with session(engine) as db:
        query = select(ContactDecisionRecord).order_by(ContactDecisionRecord.decided_at, ContactDecisionRecord.id)
        if loan_id is not None:
            query = query.where(ContactDecisionRecord.loan_id == loan_id)
        decisions = list(db.exec(query))
        keys = sorted({d.run_key for d in decisions if d.run_key})
        attempts = {
            a.idempotency_key: a for a in db.exec(select(ContactAttempt).where(ContactAttempt.idempotency_key.in_(keys)))  # type: ignore[attr-defined]
        } if keys else {}
        zones = {c.workflow_id: c.timezone for c in db.exec(select(CollectionCase))}
    rows = []
    for d in decisions:
        tz = zones.get(d.workflow_id)
        decided = _utc(d.decided_at)
        local = f"{calendar.local_date(decided, tz)} {calendar.local_wall_time(decided, tz):%H:%M} {tz}" if tz else ""
        attempt = attempts.get(d.run_key or "")
        status = attempt.status if attempt else ("not run" if d.run_action is None else "pending")
        rows.append(
            AuditRow(
                decided_at_utc=_text(decided),
                decided_at_local=local,
                loan_id=d.loan_id,
                jurisdiction=d.jurisdiction,
                step=d.step,
                days_past_due=d.days_past_due,
                action=d.action,
                decision=d.decision,
                rule_id=d.rule_id,
                ran=d.run_action or "",
                contact_status=status,
                deferred_until_utc=_text(d.deferred_until),
                send_by_utc=_text(d.send_by),
                requirements=d.requirements,
                reason=d.reason,
            )
        )
    return rows


def write_csv(rows: list[AuditRow], stream: IO[str]) -> None:
    """Write ``rows`` as CSV with a header row (``COLUMNS``)."""
    writer = csv.DictWriter(stream, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))


def summary(rows: list[AuditRow]) -> list[tuple[str, str, str, int]]:
    """Decisions counted by (jurisdiction, decision, rule_id), most frequent first."""
    counts = Counter((r.jurisdiction, r.decision, r.rule_id) for r in rows)
    return [(j, d, rule, n) for (j, d, rule), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
