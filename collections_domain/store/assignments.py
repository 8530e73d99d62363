"""The strategy a case gets at opening: scored from the database, assigned by the policy's
rules (``rules.strategy.assign``), and recorded once per episode in ``strategy_assignments``.

Called by the ``open_case`` activity. The score is computed from the loan book (the loan's
schedule and payments as of the opening; ``scoring.score_loan``): the behaviour the model was
trained on. A case of a loan the book does not hold (opened by hand with one overdue amount) has
no behaviour to score: it gets no band, runs ``standard``, and enters only experiments that list
no bands. Only the band, the model version, the treatment and the arm leave this module for the
history; the score stays in the database.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from collections_domain.case.contract import CaseInput
from collections_domain.rules import calendar
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.rules.strategy import CaseStrategy, assign
from collections_domain.store.db import session
from collections_domain.store.models import StrategyAssignment


def _score(engine: Engine, policy: CollectionPolicy, case: CaseInput, now: datetime) -> tuple[int | None, str | None]:
    """The case's propensity (basis points) and the model that gave it; ``(None, None)`` when
    the policy scores nothing or the loan is not in the book."""
    version = policy.scoring.model
    if version is None:
        return None, None
    from collections_domain.scoring import model as scoring

    score = scoring.score_loan(engine, case.loan_id, episode_opening(policy, case, now),
                               model=scoring.load_shipped_model(version))
    if score is None:
        return None, None
    return score.probability_bps, score.model_version


def episode_opening(policy: CollectionPolicy, case: CaseInput, now: datetime) -> datetime:
    """When the case's episode opened by the policy's rule: the start of the local day after the
    oldest overdue instalment's due date plus ``identification.grace_days`` (the day the daily scan
    opens it; ``now`` if that is later). The model was trained on the loan as it stood then, so a
    case opened late (a book loaded with loans already 40 days behind) is scored as of then, not
    with the days it has been left alone."""
    day = case.oldest_due_date + timedelta(days=policy.identification.grace_days + 1)
    return min(calendar.local_instant(day, time(0), case.timezone), now)


def assign_case_strategy(engine: Engine, policy: CollectionPolicy, case: CaseInput, *, workflow_id: str,
                         episode_id: str, now: datetime) -> CaseStrategy:
    """The strategy of the case ``episode_id`` (the workflow's first run id) opening at ``now``
    (UTC) under ``policy``; the first call for an episode records it, any later one (a retried
    opening) returns what was recorded, so the history and the database agree.

    Raises:
        ModelFileError: the policy names a model this package does not ship (checked at worker start).
        sqlalchemy.exc.SQLAlchemyError: the database failed (the activity is retried).
    """
    known = _recorded(engine, episode_id)
    if known is not None:
        return known
    probability_bps, model_version = _score(engine, policy, case, now)
    strategy = assign(policy.scoring, policy.experiments, loan_id=case.loan_id, probability_bps=probability_bps,
                      model_version=model_version, opened_on=calendar.local_date(now, case.timezone))
    row = StrategyAssignment(episode_id=episode_id, workflow_id=workflow_id, loan_id=case.loan_id,
                             propensity_bps=probability_bps, model_version=model_version, score_band=strategy.score_band,
                             treatment=strategy.treatment, experiment_id=strategy.experiment_id, arm=strategy.arm,
                             policy_version=policy.version, assigned_at=now)
    try:
        with session(engine) as db:
            db.add(row)
            db.commit()
    except IntegrityError:  # two attempts of one opening raced: the first one's stands
        known = _recorded(engine, episode_id)
        if known is None:
            raise
        return known
    return strategy


def _recorded(engine: Engine, episode_id: str) -> CaseStrategy | None:
    """The strategy recorded for ``episode_id``, if any."""
    with session(engine) as db:
        row = db.exec(select(StrategyAssignment).where(StrategyAssignment.episode_id == episode_id)).first()
    if row is None:
        return None
    return CaseStrategy(score_band=row.score_band, model_version=row.model_version, treatment=row.treatment,
                        experiment_id=row.experiment_id, arm=row.arm)


def check_models(policies) -> None:
    """Load the model of every policy that scores (``PolicyRegistry``), so a worker whose policy
    names a model this package lacks fails at start, not at its first case.

    Raises:
        PolicyError: a policy's ``scoring.model`` is not shipped.
    """
    from collections_domain.rules.policy import PolicyError
    from collections_domain.scoring.model import load_shipped_model

    for version in policies.versions:
        policy = policies.get(version)
        if policy.scoring.model is None:
            continue
        try:
            load_shipped_model(policy.scoring.model)
        except ValueError as err:  # ModelFileError
            raise PolicyError(f"policy {version}: scoring.model: {policy.scoring.model!r} cannot be loaded ({err})") from err
