"""The propensity-to-pay score at run time: the probability that a collections case cures (pays
everything overdue at opening before the DPD 30 hand-off), from the shipped JSON model, in pure
Python (no scikit-learn, no numpy).

The model (``models/propensity-<version>.json``, written by ``python -m
collections_domain.scoring.train``) is a standardised logistic regression over
``features.FEATURE_NAMES`` followed by an isotonic calibration: ``probability`` is the sigmoid of
the linear score, mapped through the isotonic step function by linear interpolation between its
thresholds (clipped at both ends), as scikit-learn's ``IsotonicRegression.predict`` does.
See ``docs/scoring/README.md`` for what it was trained on and how well it does.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from collections_domain.rules import calendar
from collections_domain.scoring.features import (
    FEATURE_NAMES,
    Instalment,
    OpeningRule,
    Payment,
    features_from_schedule,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


MODELS_DIR = Path(__file__).parent / "models"
#: The version ``load_model()`` loads by default (``models/<CURRENT_VERSION>.json``).
CURRENT_VERSION = "propensity-2026.12"
FORMAT = 1


class ModelFileError(ValueError):
    """A model file is missing, is not JSON, or breaks the format; the message names the file
    and the field."""


@dataclass(frozen=True)
class Score:
    """A case's propensity to pay: ``probability_bps`` in basis points (0..10000; 10000 = sure
    to cure before DPD 30) and the ``model_version`` that gave it."""

    probability_bps: int
    model_version: str


@dataclass(frozen=True)
class PropensityModel:
    """A loaded model: see the module docstring. Build it with ``load_model``."""

    version: str
    feature_names: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    isotonic_x: tuple[float, ...]
    isotonic_y: tuple[float, ...]
    opening_rule: OpeningRule
    document: Mapping[str, Any]

    def linear_score(self, features: Mapping[str, float]) -> float:
        """The logistic regression's log-odds for ``features`` (``{name: value}``, every name of
        ``feature_names``; extra names are ignored).

        Raises:
            ValueError: a feature is missing or not a finite number.
        """
        total = self.intercept
        for name, mean, scale, weight in zip(self.feature_names, self.means, self.scales, self.coefficients):
            value = features.get(name)
            if value is None:
                raise ValueError(f"features: {name!r} is missing (the model needs {list(self.feature_names)})")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"features: {name!r} must be a finite number, got {value!r}")
            total += weight * (value - mean) / scale
        return total

    def probability(self, features: Mapping[str, float]) -> float:
        """The calibrated probability (0..1) that the case cures, for ``features`` as
        ``features.features_from_schedule`` gives them.

        Raises:
            ValueError: a feature is missing or not a finite number.
        """
        return self.calibrate(_sigmoid(self.linear_score(features)))

    def calibrate(self, raw: float) -> float:
        """The isotonic step function at ``raw`` (the uncalibrated probability), interpolated
        linearly between thresholds and clipped outside them."""
        xs, ys = self.isotonic_x, self.isotonic_y
        if raw <= xs[0]:
            return ys[0]
        if raw >= xs[-1]:
            return ys[-1]
        j = bisect_right(xs, raw) - 1
        return ys[j] + (ys[j + 1] - ys[j]) * (raw - xs[j]) / (xs[j + 1] - xs[j])

    def score(self, features: Mapping[str, float]) -> Score:
        """``probability`` as a ``Score`` (basis points, rounded half up)."""
        return Score(probability_bps=min(10_000, max(0, math.floor(self.probability(features) * 10_000 + 0.5))),
                     model_version=self.version)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def model_from_document(document: Mapping[str, Any], where: str = "model", *,
                        feature_names: Sequence[str] | None = FEATURE_NAMES) -> PropensityModel:
    """A ``PropensityModel`` from a parsed model file (``where`` names it in errors) whose
    features are among ``feature_names`` (``None``: any; for models of other data, in training).

    Raises:
        ModelFileError: a field is missing or inconsistent (lengths, unknown features,
            thresholds not increasing, scales not positive).
    """
    def fail(field: str, rule: str) -> ModelFileError:
        return ModelFileError(f"{where}: {field}: {rule}")

    def numbers(value: Any, field: str, length: int | None = None) -> tuple[float, ...]:
        if not isinstance(value, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                  and math.isfinite(v) for v in value):
            raise fail(field, "must be a list of finite numbers")
        if length is not None and len(value) != length:
            raise fail(field, f"must have {length} values (one per feature), got {len(value)}")
        return tuple(float(v) for v in value)

    try:
        if document.get("format") != FORMAT:
            raise fail("format", f"must be {FORMAT}, got {document.get('format')!r}")
        version = document["version"]
        if not isinstance(version, str) or not version:
            raise fail("version", "must be a non-empty string")
        names = document["features"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise fail("features", "must be a non-empty list of names")
        unknown = [n for n in names if feature_names is not None and n not in feature_names]
        if unknown:
            raise fail("features", f"unknown {unknown}; the features are {list(feature_names or [])}")
        n = len(names)
        means = numbers(document["scaler"]["mean"], "scaler.mean", n)
        scales = numbers(document["scaler"]["scale"], "scaler.scale", n)
        if any(s <= 0 for s in scales):
            raise fail("scaler.scale", "every scale must be > 0")
        coefficients = numbers(document["coefficients"], "coefficients", n)
        intercept = numbers([document["intercept"]], "intercept")[0]
        xs = numbers(document["isotonic"]["x"], "isotonic.x")
        ys = numbers(document["isotonic"]["y"], "isotonic.y", len(xs))
        if len(xs) < 2 or any(b <= a for a, b in pairwise(xs)):
            raise fail("isotonic.x", "must hold at least 2 strictly increasing thresholds")
        if any(b < a for a, b in pairwise(ys)) or ys[0] < 0 or ys[-1] > 1:
            raise fail("isotonic.y", "must be non-decreasing within [0, 1]")
        rule = document["opening_rule"]
        opening_rule = OpeningRule(grace_days=int(rule["grace_days"]),
                                   minimum_overdue_minor=int(rule["minimum_overdue_minor"]))
    except (KeyError, TypeError) as err:
        raise fail(str(err), "missing or of the wrong type") from err
    return PropensityModel(version=version, feature_names=tuple(names), means=means, scales=scales,
                           coefficients=coefficients, intercept=intercept, isotonic_x=xs, isotonic_y=ys,
                           opening_rule=opening_rule, document=document)


def load_model(path: Path | str | None = None) -> PropensityModel:
    """The model in JSON file ``path`` (default: the shipped ``models/<CURRENT_VERSION>.json``),
    read once per path and cached.

    Raises:
        ModelFileError: the file is missing, not JSON, or breaks the format.
    """
    return _load(str(Path(MODELS_DIR / f"{CURRENT_VERSION}.json" if path is None else path).resolve()))


def load_shipped_model(version: str) -> PropensityModel:
    """The model ``version`` this package ships (``models/<version>.json``; a policy's
    ``[scoring] model``), read once and cached.

    Raises:
        ModelFileError: no such model is shipped, or its file breaks the format.
    """
    path = MODELS_DIR / f"{version}.json"
    if not path.is_file():
        raise ModelFileError(f"no model {version!r} in {MODELS_DIR}")
    return load_model(path)


@lru_cache(maxsize=8)
def _load(path: str) -> PropensityModel:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ModelFileError(f"{path}: cannot be read ({err.strerror or err})") from err
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: not JSON ({err})") from err
    if not isinstance(document, dict):
        raise ModelFileError(f"{path}: must hold a JSON object")
    return model_from_document(document, path)


def score_schedule(instalments: Sequence[Instalment], payments: Sequence[Payment], as_of: date,
                   model: PropensityModel | None = None) -> Score:
    """The score of a loan at the start of local day ``as_of`` (when the scan opens its case).

    Args:
        instalments: ``(due_date, amount_minor)`` pairs (local dates, minor units >= 0).
        payments: ``(paid_on, amount_minor)`` pairs (local dates, minor units > 0); reversed
            payments left out.
        as_of: the local day; only instalments due and payments made before it are read.
        model: default ``load_model()``.

    Raises:
        ValueError: an instalment or payment is malformed.
        ModelFileError: the default model cannot be loaded.
    """
    model = model or load_model()
    return model.score(features_from_schedule(instalments, payments, as_of, rule=model.opening_rule))


class BookSchedule(NamedTuple):
    """A loan of the book as the score reads it: ``instalments`` and ``payments`` as
    ``(local date, amount_minor)`` pairs and the loan's ``timezone``."""

    instalments: list[Instalment]
    payments: list[Payment]
    timezone: str


def book_schedule(engine: Engine, loan_id: str) -> BookSchedule | None:
    """Loan ``loan_id`` of the loan book as the score reads it, or ``None`` when the book does
    not have it.

    Reads ``loans``, ``loan_instalments`` (cancelled ones left out; each instalment is its
    principal, interest and fees) and ``loan_payments`` (reversed ones and those in another
    currency than the loan's left out) as the book holds them now; payment instants become the
    borrower's local dates (``calendar.local_date`` in the loan's time zone).
    """
    from sqlmodel import Session, select

    from collections_domain.store.models import (
        Loan,
        LoanInstalmentRecord,
        LoanPaymentRecord,
    )

    with Session(engine) as db:
        loan = db.get(Loan, loan_id)
        if loan is None:
            return None
        instalments = [
            (row.due_date, row.principal_minor + row.interest_minor + row.fees_minor)
            for row in db.exec(select(LoanInstalmentRecord).where(LoanInstalmentRecord.loan_id == loan_id)
                               .order_by(LoanInstalmentRecord.due_date, LoanInstalmentRecord.id))
            if row.cancelled_at is None
        ]
        payments = [
            (calendar.local_date(_aware(row.paid_at), loan.timezone), row.amount_minor)
            for row in db.exec(select(LoanPaymentRecord).where(LoanPaymentRecord.loan_id == loan_id)
                               .order_by(LoanPaymentRecord.paid_at, LoanPaymentRecord.id))
            if row.reversed_at is None and row.currency == loan.currency
        ]
        return BookSchedule(instalments, payments, loan.timezone)


def score_loan(engine: Engine, loan_id: str, as_of: datetime, model: PropensityModel | None = None) -> Score | None:
    """The score of loan ``loan_id`` of the loan book at instant ``as_of``, or ``None`` when the
    book does not have the loan.

    The loan is read by ``book_schedule``; the score is the one at the start of the borrower's
    local day of ``as_of`` (``score_schedule``), so what happened earlier that day counts from
    the next day on (the scan opens cases at 00:30 local, before that day's payments).

    Raises:
        ValueError: ``as_of`` is naive, or the book holds a malformed amount.
        ModelFileError: the default model cannot be loaded.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    book = book_schedule(engine, loan_id)
    if book is None:
        return None
    return score_schedule(book.instalments, book.payments, calendar.local_date(as_of, book.timezone), model)


def _aware(instant: datetime) -> datetime:
    # SQLite hands back naive datetimes; the book stores UTC.
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant
