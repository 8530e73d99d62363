"""Pauses and stops of a case (pure): disputes, cease-contact requests, hardship, breathing space,
bankruptcy and death.

A dispute, a hardship pause (``pauses.hardship_days``) or a UK breathing space
(``compliance.UK.breathing_space_days``) holds the ladder; when the last one ends, the ladder's
later steps move by the local days it was held. Hardship and breathing space also freeze accrual
(Debt Respite Scheme Regulations 2020, reg. 7). A cease-contact request is permanent: only the
policy's ``pauses.after_cease_contact`` actions are still taken, and an agency placement is
recalled. Bankruptcy and death end the case. Every pause ends when its case ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import ValidationError

from collections_domain.case import endings, plan
from collections_domain.case.base import closed_problem, local, next_key, parse, record_progress, reject
from collections_domain.case.contract import (
    BreathingSpace,
    CaseStop,
    CeaseContact,
    DisputeOpened,
    DisputeResolved,
    Hardship,
    Pause,
    PendingSignal,
    describe_errors,
)
from collections_domain.case.ledger import AccrualFreeze, LedgerRelief
from collections_domain.case.state import CaseCore, Step
from collections_domain.rules import ladder
from collections_domain.store.records import LedgerEntryRecorded, PauseRecorded

LADDER_PAUSES = ("dispute", "hardship", "breathing_space")
#: Pauses during which nothing accrues.
FREEZING_PAUSES = ("hardship", "breathing_space")


def ladder_paused(case: CaseCore) -> bool:
    """Whether a dispute, hardship or breathing space holds the ladder."""
    return any(p.kind in LADDER_PAUSES for p in case.pauses)


def start_pause(case: CaseCore, step: Step, kind: str, pause_id: str, until: datetime | None) -> None:
    """Start a pause of ``kind`` (recorded in ``case_pauses``)."""
    if kind in LADDER_PAUSES and not ladder_paused(case):
        case.paused_since = step.now
    case.mark_seen(f"pause:{kind}", pause_id)
    case.pauses.append(Pause(kind=kind, id=pause_id, started_at=step.now, until=until))
    if kind in FREEZING_PAUSES:
        case.ledger.freezes.append(AccrualFreeze(reason=f"{kind}:{pause_id}", start=step.now))
    step.record(PauseRecorded(key=next_key(case), at=step.now, pause_kind=kind, pause_id=pause_id,
                              started_at=step.now, until=until))


def end_pause(case: CaseCore, step: Step, pause: Pause, resolution: str) -> None:
    """End ``pause``; when no ladder pause remains, move the ladder's later steps by the local
    days it was held (``rules.ladder.paused_days``)."""
    case.pauses.remove(pause)
    pause.ended_at = step.now
    pause.resolution = resolution
    case.pauses_ended.append(pause)
    for freeze in case.ledger.freezes:
        if freeze.reason == f"{pause.kind}:{pause.id}" and freeze.end is None:
            freeze.end = step.now
    if pause.kind in LADDER_PAUSES and not ladder_paused(case) and case.paused_since is not None:
        case.ladder_shift_days += ladder.paused_days(case.paused_since, step.now, case.timezone)
        case.paused_since = None
    step.record(PauseRecorded(key=next_key(case), at=step.now, pause_kind=pause.kind, pause_id=pause.id,
                              started_at=pause.started_at, until=pause.until, ended_at=step.now, resolution=resolution))


def end_all(case: CaseCore, step: Step, resolution: str) -> None:
    """End every pause still active (the case ended)."""
    for pause in list(case.pauses):
        end_pause(case, step, pause, resolution)


def apply_dispute_opened(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``dispute_opened``: no collection contact while the dispute is open."""
    dispute = parse(case, step, signal, DisputeOpened, seen="pause:dispute", verb="opened")
    if dispute is None:
        return
    problem = closed_problem(case, "dispute_id")
    if problem:
        reject(case, step, signal, problem)
        return
    start_pause(case, step, "dispute", dispute.dispute_id, None)
    step.log("dispute.opened", dispute_id=dispute.dispute_id)


def apply_dispute_resolved(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``dispute_resolved``: ``rejected`` resumes the ladder; ``upheld`` corrects what is
    owed to ``corrected_outstanding_minor`` (a write-down, newest instalment first)."""
    try:
        resolved = DisputeResolved.model_validate(signal.payload)
    except ValidationError as err:
        reject(case, step, signal, "; ".join(describe_errors(err)))
        return
    open_dispute = next((p for p in case.pauses if p.kind == "dispute" and p.id == resolved.dispute_id), None)
    if open_dispute is None:
        open_ids = [p.id for p in case.pauses if p.kind == "dispute"]
        reject(case, step, signal, f"dispute_id: no open dispute {resolved.dispute_id!r}; open: {open_ids or 'none'}")
        return
    view = case.view(step.policy, step.now)
    outstanding = view.outstanding.total
    corrected = resolved.corrected_outstanding_minor
    if resolved.resolution == "upheld":
        if corrected is None:
            reject(case, step, signal, "corrected_outstanding_minor: required when the dispute is upheld")
            return
        if not 0 <= corrected <= outstanding:
            reject(case, step, signal, f"corrected_outstanding_minor: must be from 0 to the outstanding amount "
                                       f"{outstanding}, got {corrected}")
            return
    elif corrected is not None:
        reject(case, step, signal, "corrected_outstanding_minor: only for a dispute that is upheld")
        return
    end_pause(case, step, open_dispute, resolved.resolution)
    step.log("dispute.resolved", dispute_id=resolved.dispute_id, resolution=resolved.resolution)
    if resolved.resolution == "upheld" and corrected is not None and corrected != outstanding:
        relief = LedgerRelief(relief_id=f"dispute-{resolved.dispute_id}", kind="write_down", amount_minor=outstanding - corrected,
                              value_at=step.now, reason=f"dispute {resolved.dispute_id} upheld",
                              components=("penalty", "fees", "interest", "principal"), order="newest_first")
        case.ledger.reliefs.append(relief)
        step.record(LedgerEntryRecorded(key=next_key(case), at=step.now, entry="write_down", ref_id=relief.relief_id,
                                        amount_minor=relief.amount_minor, detail=relief.reason))
        if case.plan is not None:
            plan.end_plan(case, step, "closed", f"amount corrected by dispute {resolved.dispute_id}")
        after = case.view(step.policy, step.now)
        if after.outstanding.total == 0:
            endings.end_case(case, step, "closed_dispute_upheld", after)
        else:
            record_progress(case, step, after)


def apply_cease_contact(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``cease_contact``: from now on only ``pauses.after_cease_contact`` actions; an agency
    placement is recalled (an agency is a debt collector too)."""
    request = parse(case, step, signal, CeaseContact, seen="pause:cease_contact", verb="recorded")
    if request is None:
        return
    problem = closed_problem(case, "request_id")
    if not problem and case.cease_contact:
        first = next(p.id for p in case.pauses if p.kind == "cease_contact")
        problem = f"request_id: contact already ceased by request {first}"
    if problem:
        reject(case, step, signal, problem)
        return
    case.cease_contact = True
    start_pause(case, step, "cease_contact", request.request_id, None)
    endings.close_children(case, step, "cease_contact", plans_too=False, legal_too=False)
    step.log("contact.ceased", request_id=request.request_id)


def apply_hardship(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``hardship``: hold the ladder and freeze accrual for ``pauses.hardship_days``."""
    hardship = parse(case, step, signal, Hardship, seen="pause:hardship", verb="recorded")
    if hardship is None:
        return
    problem = closed_problem(case, "hardship_id")
    active = next((p for p in case.pauses if p.kind == "hardship"), None)
    if not problem and active is not None:
        problem = f"hardship_id: hardship {active.id} is already active until {local(case, active.until)}"
    if problem:
        reject(case, step, signal, problem)
        return
    start_pause(case, step, "hardship", hardship.hardship_id, step.now + timedelta(days=step.policy.pauses.hardship_days))
    step.log("hardship.started", hardship_id=hardship.hardship_id)


def apply_breathing_space(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``breathing_space`` (UK Debt Respite Scheme): hold the ladder and freeze accrual
    for ``compliance.<CODE>.breathing_space_days``; refused where there is no such scheme."""
    space = parse(case, step, signal, BreathingSpace, seen="pause:breathing_space", verb="recorded")
    if space is None:
        return
    problem = closed_problem(case, "breathing_space_id")
    rules = step.policy.compliance.get(case.jurisdiction)
    days = rules.breathing_space_days if rules is not None else None
    if not problem and days is None:
        problem = (f"breathing_space_id: no breathing space scheme in jurisdiction {case.jurisdiction} "
                   f"(policy compliance.{case.jurisdiction}.breathing_space_days is not set)")
    active = next((p for p in case.pauses if p.kind == "breathing_space"), None)
    if not problem and active is not None:
        problem = f"breathing_space_id: breathing space {active.id} is already active until {local(case, active.until)}"
    if problem:
        reject(case, step, signal, problem)
        return
    assert days is not None
    start_pause(case, step, "breathing_space", space.breathing_space_id, step.now + timedelta(days=days))
    step.log("breathing_space.started", breathing_space_id=space.breathing_space_id)


def apply_stop(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signals ``bankruptcy`` and ``deceased``: end the case (``closed_bankruptcy``, ``closed_deceased``)."""
    stop = parse(case, step, signal, CaseStop, seen=f"pause:{signal.kind}", verb="recorded")
    if stop is None:
        return
    problem = closed_problem(case, "notice_id")
    if problem:
        reject(case, step, signal, problem)
        return
    start_pause(case, step, signal.kind, stop.notice_id, None)
    endings.end_case(case, step, "closed_bankruptcy" if signal.kind == "bankruptcy" else "closed_deceased",
                     case.view(step.policy, step.now))
    step.log("case.stopped", kind=signal.kind, notice_id=stop.notice_id)

