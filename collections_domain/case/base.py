"""Helpers every case transition shares: record keys, parsing and rejecting signals, the progress
record, and how the case shows money and instants to people (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from collections_domain.case.contract import SIGNAL_ID_FIELD, PendingSignal, RejectedSignal, describe_errors
from collections_domain.case.ledger import LedgerView
from collections_domain.case.state import CaseCore, Step
from collections_domain.ops import metrics
from collections_domain.rules import calendar
from collections_domain.store.records import CaseProgress, SignalRejected


def next_key(case: CaseCore) -> str:
    """A record key unique within the case: ``<episode id>:<seq>`` (a retried write lands once)."""
    case.record_seq += 1
    return f"{case.episode_id}:{case.record_seq}"


def reject(case: CaseCore, step: Step, signal: PendingSignal, reason: str) -> None:
    """Record that ``signal`` changed nothing and why (``"field: rule"``): in the status, in the
    ``rejected_signals`` table, in a counter and a log line. Never silently dropped."""
    raw = signal.payload if isinstance(signal.payload, dict) else {}
    signal_id = str(raw.get(SIGNAL_ID_FIELD.get(signal.kind, "id"), ""))[:64]
    case.rejected_signals.append(RejectedSignal(kind=signal.kind, id=signal_id, reason=reason, received_at=signal.received_at))
    step.record(SignalRejected(key=next_key(case), at=signal.received_at, signal_kind=signal.kind, signal_id=signal_id,
                               reason=reason))
    step.count(metrics.SIGNALS_REJECTED, signal=signal.kind, field=metrics.rejected_field(reason))
    step.log("signal.rejected", kind=signal.kind, signal_id=signal_id, reason=reason)


def parse(case: CaseCore, step: Step, signal: PendingSignal, model: type[Any], *, seen: str | None = None,
          verb: str = "applied") -> Any:
    """``signal``'s payload as ``model``, or ``None`` after recording why it was rejected: a field
    breaks its rule, or (``seen``: the kind of id) its id was already ``verb`` once."""
    try:
        parsed = model.model_validate(signal.payload)
    except ValidationError as err:
        reject(case, step, signal, "; ".join(describe_errors(err)))
        return None
    if seen is not None:
        id_field = SIGNAL_ID_FIELD[signal.kind]
        if getattr(parsed, id_field) in case.seen_ids(seen):
            noun = signal.kind.replace("_", " ").split(" ")[0] if signal.kind != "breathing_space" else "breathing space"
            reject(case, step, signal, f"{id_field}: duplicate, this {noun} was already {verb}")
            return None
    return parsed


def closed_problem(case: CaseCore, field: str) -> str | None:
    """``"<field>: the case is closed (<outcome>)"`` once the case ended, else ``None``."""
    return f"{field}: the case is closed ({case.outcome})" if case.outcome is not None else None


def record_progress(case: CaseCore, step: Step, view: LedgerView) -> None:
    """Write the case's stage, DPD and outstanding amounts (``collection_cases``)."""
    outstanding = view.outstanding
    step.record(
        CaseProgress(
            key=next_key(case),
            at=step.now,
            stage=case.stage,
            outstanding_minor=outstanding.total,
            outcome=case.outcome,
            days_past_due=view.days_past_due,
            max_days_past_due=view.max_days_past_due,
            anchor_due_date=view.oldest_unpaid_due_date or case.anchor_due_date,
            principal_minor=outstanding.principal,
            interest_minor=outstanding.interest,
            fees_minor=outstanding.fees,
            penalty_minor=outstanding.penalty,
            credit_minor=view.credit_minor,
            written_off_minor=case.written_off_minor,
            waived_minor=case.waived_minor,
        )
    )


def money(case: CaseCore, amount_minor: int) -> str:
    """``CNY 1,234.56``: minor units in the currency's own precision (for people only)."""
    exponent = case.currency_exponent
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent) if exponent else (abs(amount_minor), 0)
    text = f"{whole:,}" + (f".{frac:0{exponent}d}" if exponent else "")
    return f"{case.currency} {sign}{text}"


def local(case: CaseCore, instant: datetime | None) -> str:
    """``2026-12-01 09:00 Asia/Shanghai``: an instant on the borrower's clock (for people only)."""
    if instant is None:
        return "-"
    tz = case.timezone
    return f"{calendar.local_date(instant, tz)} {calendar.local_wall_time(instant, tz):%H:%M} {tz}"
