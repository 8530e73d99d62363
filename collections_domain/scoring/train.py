"""Train the propensity-to-pay model, validate it, and write the JSON model and calibration plot.

    python -m collections_domain.scoring.train [--out PATH] [--plot PATH] [--seed N]

The data is the package's own: the Home Credit loans of the portfolio
(``portfolio/data/home_credit_loans.csv``, read by ``portfolio.home_credit.read_loans`` so that
amounts and rounding are the product's), one row per delinquency episode as the scan opens it
(``features.episodes``), with the features at opening (``features.features_from_schedule``) and
the label "everything overdue at opening paid by the end of DPD ``HANDOFF_DPD - 1``" (before the
DPD 30 step, which runs at 09:00, before the file's payments of that day at 12:00). The same
pipeline is run on a sample of the Taiwan credit-card data (``data/taiwan_credit_sample.csv``) as
a second validation; that model is not shipped.

The pipeline: 25 % of the loans held out (all episodes of a loan on one side, stratified by the
loan's episode and cure counts, ordered by a salted SHA-256 of the loan id, so no random number
generator is involved), a third of the remaining loans kept for calibration; ``StandardScaler``
and ``LogisticRegression`` fitted on the rest, ``IsotonicRegression`` on the calibration loans;
metrics on the held-out loans only, computed from the JSON model as it is written (rounded to 12
significant digits), with the same arithmetic as at run time.

Needs scikit-learn and numpy (and matplotlib for ``--plot``); the run time does not.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from collections_domain.portfolio import home_credit
from collections_domain.scoring import features as feats
from collections_domain.scoring.model import (
    CURRENT_VERSION,
    FORMAT,
    MODELS_DIR,
    PropensityModel,
    model_from_document,
)

#: Seed of the splits (the salt of their hash order).
SEED = 13
HOLDOUT_SHARE = 0.25
#: Of the training loans (those not held out), the share kept to fit the calibration.
CALIBRATION_SHARE = 1 / 3
#: The label's horizon: cured if the overdue amount at opening is paid by the end of local day
#: ``oldest_due_date + HANDOFF_DPD - 1``, before the hand-off step at DPD 30.
HANDOFF_DPD = 30
#: When this version of the model was defined (kept in the JSON; not today's date, so that a
#: rebuild gives the same file).
MODEL_DATE = "2026-12-01"
#: Day 0 of the Home Credit file on the calendar. Any date serves: features and labels use only
#: differences of days.
ANCHOR = date(2020, 1, 1)
DATA_DIR = Path(__file__).parent / "data"
TAIWAN_SAMPLE = DATA_DIR / "taiwan_credit_sample.csv"
TAIWAN_SAMPLE_ROWS = 6000
DEFAULT_OUT = MODELS_DIR / f"{CURRENT_VERSION}.json"
DEFAULT_PLOT = Path(__file__).resolve().parents[2] / "docs" / "scoring" / "calibration.png"
#: Taiwan columns (the UCI file's coded header) and their names; SEX, EDUCATION, MARRIAGE and
#: AGE (X2-X5) are never read, nor shipped in the sample.
TAIWAN_COLUMNS = {
    "X1": "LIMIT_BAL",
    **{f"X{6 + i}": f"PAY_{0 if i == 0 else i + 1}" for i in range(6)},
    **{f"X{12 + i}": f"BILL_AMT{i + 1}" for i in range(6)},
    **{f"X{18 + i}": f"PAY_AMT{i + 1}" for i in range(6)},
}


@dataclass(frozen=True)
class Dataset:
    """Rows to learn from: ``X`` (rows x ``feature_names``), ``y`` (1 = paid), ``groups`` (the
    unit kept on one side of a split: the loan or account id) and ``keys`` (what each row is)."""

    name: str
    feature_names: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    keys: tuple[Any, ...]


# -- the data ----------------------------------------------------------------------------------


def schedule_of(loan: home_credit.HomeCreditLoan, anchor: date = ANCHOR) -> tuple[list[feats.Instalment],
                                                                                  list[feats.Payment]]:
    """A file loan's instalments and payments as ``(local date, amount_minor)`` pairs, day 0 on
    ``anchor`` (as the loan book would hold them with that anchor)."""
    return ([(anchor + timedelta(days=i.due_day), i.amount_minor) for i in loan.instalments],
            [(anchor + timedelta(days=p.day), p.amount_minor) for p in loan.payments])


def opening_rule(policy=None, currencies: Sequence[str] = ("CNY", "USD", "GBP")) -> feats.OpeningRule:
    """The scan's opening rule of ``policy`` (default: the current default policy) for the
    currencies of the Home Credit markets.

    Raises:
        ValueError: the policy sets different minimums for those currencies (one model, one rule).
    """
    if policy is None:
        from collections_domain.rules.policy import PolicyRegistry

        policy = PolicyRegistry.from_settings(None).current
    minimums = {policy.currencies[c].identification_minimum_minor for c in currencies}
    if len(minimums) != 1:
        raise ValueError(f"identification_minimum_minor differs between {list(currencies)}: {sorted(minimums)}")
    return feats.OpeningRule(grace_days=policy.identification.grace_days, minimum_overdue_minor=minimums.pop())


def home_credit_dataset(loans: Sequence[home_credit.HomeCreditLoan] | None = None,
                        rule: feats.OpeningRule | None = None) -> Dataset:
    """One row per episode of the Home Credit loans (default: the packaged file) whose label is
    known: episodes whose horizon ends after the file's last day are left out (censored), and so
    are any that open after their horizon (none in the packaged file: all open at DPD 1)."""
    loans = home_credit.read_loans() if loans is None else loans
    rule = rule or opening_rule()
    last_day = ANCHOR + timedelta(days=max(max([i.due_day for i in loan.instalments] + [p.day for p in loan.payments])
                                           for loan in loans))
    rows, labels, groups, keys = [], [], [], []
    for loan in loans:
        instalments, payments = schedule_of(loan)
        for episode in feats.episodes(instalments, payments, rule):
            horizon = episode.oldest_due_date + timedelta(days=HANDOFF_DPD - 1)
            if horizon > last_day or horizon < episode.opened_on:  # censored, or opened past the hand-off
                continue
            cured = feats.overdue_paid_by(instalments, payments, episode, horizon)
            values = feats.features_from_schedule(instalments, payments, episode.opened_on, rule=rule)
            rows.append([values[name] for name in feats.FEATURE_NAMES])
            labels.append(int(cured))
            groups.append(loan.loan_id)
            keys.append((loan.loan_id, episode.opened_on))
    return Dataset("home-credit", feats.FEATURE_NAMES, np.array(rows, dtype=float), np.array(labels),
                   np.array(groups), tuple(keys))


def taiwan_features(row: Mapping[str, str]) -> dict[str, float]:
    """The behavioural features of one Taiwan account (a row of the coded CSV): the repayment
    statuses as they are (months of delay; -2..0 no delay), amounts (NT$) as signed ``log1p``."""
    out = {}
    for code, name in TAIWAN_COLUMNS.items():
        value = float(row[code])
        if name.startswith("PAY_") and not name.startswith("PAY_AMT"):
            out[name] = value
        else:
            out[f"log_{name}"] = math.copysign(math.log1p(abs(value)), value)
    return out


def taiwan_dataset(path: Path | str = TAIWAN_SAMPLE) -> Dataset:
    """The Taiwan accounts of ``path`` (default: the packaged sample); ``y`` = 1 - default."""
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    values = [taiwan_features(row) for row in rows]
    names = tuple(values[0])
    return Dataset("taiwan", names, np.array([[v[n] for n in names] for v in values], dtype=float),
                   np.array([1 - int(row["Y"]) for row in rows]), np.array([row["ID"] for row in rows]),
                   tuple(int(row["ID"]) for row in rows))


def write_taiwan_sample(source: Path | str, dest: Path | str = TAIWAN_SAMPLE, rows: int = TAIWAN_SAMPLE_ROWS) -> int:
    """Write the packaged Taiwan sample from the UCI file ``source``: the ``rows`` accounts with
    the smallest SHA-256 of ``taiwan:<ID>``, sorted by ID, with ID, the behavioural columns and Y
    only (values unchanged). Returns how many rows."""
    with Path(source).open(newline="", encoding="utf-8-sig") as handle:
        table = list(csv.DictReader(handle))
    chosen = sorted(sorted(table, key=lambda r: hashlib.sha256(f"taiwan:{r['ID']}".encode()).hexdigest())[:rows],
                    key=lambda r: int(r["ID"]))
    columns = ["ID", *TAIWAN_COLUMNS, "Y"]
    with Path(dest).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([r[c] for c in columns] for r in chosen)
    return len(chosen)


# -- the split ---------------------------------------------------------------------------------


def split_groups(groups: np.ndarray, y: np.ndarray, share: float, salt: str) -> np.ndarray:
    """Which rows fall in the ``share`` of groups set aside: a boolean mask over the rows.

    All rows of a group fall on one side. Groups are stratified by (rows, positives), each
    capped at 2, and within a stratum ordered by SHA-256 of ``salt:group``; the first
    ``round(share * n)`` of each stratum are set aside.
    """
    rows: dict[str, int] = {}
    positives: dict[str, int] = {}
    for group, label in zip(groups.tolist(), y.tolist()):
        rows[group] = rows.get(group, 0) + 1
        positives[group] = positives.get(group, 0) + int(label)
    strata: dict[tuple[int, int], list[str]] = {}
    for group, count in rows.items():
        strata.setdefault((min(count, 2), min(positives[group], 2)), []).append(group)
    chosen: set[str] = set()
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda g: hashlib.sha256(f"{salt}:{g}".encode()).hexdigest())
        chosen.update(members[:round(share * len(members))])
    return np.array([g in chosen for g in groups.tolist()])


@dataclass(frozen=True)
class Split:
    """Row masks: ``fit`` (the regression), ``calibration`` (the isotonic step), ``held_out``."""

    fit: np.ndarray
    calibration: np.ndarray
    held_out: np.ndarray


def split(dataset: Dataset, seed: int = SEED) -> Split:
    """The held-out, calibration and fit rows of ``dataset`` (see ``split_groups``)."""
    held_out = split_groups(dataset.groups, dataset.y, HOLDOUT_SHARE, f"{seed}:held-out")
    train = ~held_out
    calibration = np.zeros_like(held_out)
    calibration[train] = split_groups(dataset.groups[train], dataset.y[train], CALIBRATION_SHARE, f"{seed}:calibration")
    return Split(fit=train & ~calibration, calibration=calibration, held_out=held_out)


# -- fitting and measuring ---------------------------------------------------------------------


def _g12(value: float) -> float:
    return float(f"{value:.12g}")


#: The calibrated probability stays within these bounds (``IsotonicRegression``'s ``y_min`` and
#: ``y_max``): a block of a few dozen calibration rows none of which paid (or all of which did)
#: does not show that the chance is 0 (or 1).
PROBABILITY_BOUNDS = (0.01, 0.99)


@dataclass(frozen=True)
class Fitted:
    """A fitted pipeline: the model file's parameters (``params``: ``scaler``, ``coefficients``,
    ``intercept``, ``isotonic``, rounded to 12 significant digits) and the scikit-learn objects
    they came from."""

    params: dict[str, Any]
    scaler: Any
    regression: Any
    isotonic: Any

    def sklearn_probability(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's own probabilities for the rows ``X`` (to check the run time against)."""
        return self.isotonic.predict(self.regression.predict_proba(self.scaler.transform(X))[:, 1])


def fit(dataset: Dataset, parts: Split) -> Fitted:
    """Fit ``StandardScaler`` and ``LogisticRegression`` on the fit rows, then
    ``IsotonicRegression(out_of_bounds="clip")`` on the calibration rows' probabilities."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(dataset.X[parts.fit])
    regression = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(dataset.X[parts.fit]), dataset.y[parts.fit])
    raw = regression.predict_proba(scaler.transform(dataset.X[parts.calibration]))[:, 1]
    low, high = PROBABILITY_BOUNDS
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=low, y_max=high).fit(raw, dataset.y[parts.calibration])
    params = {
        "scaler": {"mean": [_g12(v) for v in scaler.mean_], "scale": [_g12(v) for v in scaler.scale_]},
        "coefficients": [_g12(v) for v in regression.coef_[0]],
        "intercept": _g12(regression.intercept_[0]),
        "isotonic": {"x": [_g12(v) for v in isotonic.X_thresholds_], "y": [_g12(v) for v in isotonic.y_thresholds_]},
    }
    return Fitted(params, scaler, regression, isotonic)


def predict(model: PropensityModel, dataset: Dataset, rows: np.ndarray | None = None) -> np.ndarray:
    """The run-time probabilities of ``model`` for ``dataset``'s rows (all, or the mask ``rows``)."""
    X = dataset.X if rows is None else dataset.X[rows]
    return np.array([model.probability(dict(zip(dataset.feature_names, map(float, x)))) for x in X])


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """The area under the ROC curve (ties count half): the chance that a random positive row
    scores above a random negative one."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    i = 0
    while i < len(p):  # average ranks over ties
        j = i
        while j + 1 < len(p) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("roc_auc: needs both positive and negative rows")
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """The mean squared difference between the probability and the outcome (0 is perfect)."""
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y)) ** 2))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Rows sorted by probability cut into ``bins`` groups of (nearly) equal size: for each,
    ``n``, ``mean_predicted`` and ``observed`` (the share that paid)."""
    order = np.argsort(np.asarray(p), kind="mergesort")
    table = []
    for k, chunk in enumerate(np.array_split(order, bins), start=1):
        if len(chunk):
            table.append({"bin": k, "n": len(chunk), "mean_predicted": round(float(np.mean(p[chunk])), 4),
                          "observed": round(float(np.mean(y[chunk])), 4)})
    return table


def _counts(dataset: Dataset, rows: np.ndarray) -> dict[str, int]:
    return {"rows": int(rows.sum()), "positives": int(dataset.y[rows].sum()),
            "groups": len(set(dataset.groups[rows].tolist()))}


def evaluate(model: PropensityModel, dataset: Dataset, parts: Split) -> dict[str, Any]:
    """The held-out metrics of ``model``: ``auc``, ``brier``, ``base_rate_brier`` (the training
    rows' base rate as a constant score), ``calibration_table`` and the split's counts."""
    y = dataset.y[parts.held_out]
    p = predict(model, dataset, parts.held_out)
    base_rate = float(dataset.y[~parts.held_out].mean())
    return {
        "splits": {name: _counts(dataset, getattr(parts, name)) for name in ("fit", "calibration", "held_out")},
        "auc": round(roc_auc(y, p), 4),
        "brier": round(brier(y, p), 4),
        "base_rate": round(base_rate, 4),
        "base_rate_brier": round(brier(y, np.full(len(y), base_rate)), 4),
        "calibration_table": calibration_table(y, p),
        "_predicted": p,
        "_observed": y,
    }


def model_document(dataset: Dataset, parts: Split, version: str, rule: feats.OpeningRule | None) -> dict[str, Any]:
    """The core of a model file for ``dataset`` fitted on ``parts`` (``fit``): format, version,
    features, parameters and opening rule (``None``: the neutral rule, for data without
    episodes)."""
    return {"format": FORMAT, "version": version, "features": list(dataset.feature_names), **fit(dataset, parts).params,
            "opening_rule": {"grace_days": rule.grace_days if rule else 0,
                             "minimum_overdue_minor": rule.minimum_overdue_minor if rule else 1}}


def build(seed: int = SEED, *, taiwan: Path | str = TAIWAN_SAMPLE,
          loans: Sequence[home_credit.HomeCreditLoan] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train on the Home Credit episodes and validate on the Taiwan accounts.

    Returns:
        ``(document, metrics)``: the model file's content (JSON-ready, deterministic for the same
        data, policy and seed) and ``{"home_credit": ..., "taiwan": ...}``, each as ``evaluate``
        gives it (with ``_predicted``/``_observed`` arrays for the plot).
    """
    rule = opening_rule()
    hc = home_credit_dataset(loans, rule)
    hc_parts = split(hc, seed)
    document = model_document(hc, hc_parts, CURRENT_VERSION, rule)
    hc_metrics = evaluate(model_from_document(document), hc, hc_parts)
    tw = taiwan_dataset(taiwan)
    tw_parts = split(tw, seed)
    tw_model = model_from_document(model_document(tw, tw_parts, "taiwan-validation", None), feature_names=None)
    tw_metrics = evaluate(tw_model, tw, tw_parts)
    source = home_credit.PACKAGED_CSV
    document.update({
        "date": MODEL_DATE,
        "target": (f"cured: everything overdue when the case opens is paid by the end of local day "
                   f"oldest_due_date + {HANDOFF_DPD - 1} (before the DPD {HANDOFF_DPD} step)"),
        "data": {
            "source": "Home Credit Default Risk (Kaggle, 2018), installments_payments: the 2,445 loans ever in "
                      "arrears of a 20,000-row random sample (collections_domain/portfolio/data/SOURCE.md)",
            "file": "collections_domain/portfolio/data/home_credit_loans.csv",
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest() if loans is None else None,
            "episodes": len(hc.y), "loans": len(set(hc.groups.tolist())), "positives": int(hc.y.sum()),
        },
        "split": {"seed": seed, "held_out_share": HOLDOUT_SHARE, "calibration_share_of_training": round(CALIBRATION_SHARE, 4),
                  "by": "loan"},
        "metrics": _summary(hc_metrics),
        "second_set": {"name": "Taiwan credit-card default (UCI 350), behavioural columns, packaged sample",
                       **_summary(tw_metrics)},
    })
    return document, {"home_credit": hc_metrics, "taiwan": tw_metrics}


def _summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {"held_out": {"auc": metrics["auc"], "brier": metrics["brier"], "base_rate_brier": metrics["base_rate_brier"],
                         "rows": metrics["splits"]["held_out"]["rows"],
                         "positives": metrics["splits"]["held_out"]["positives"]},
            "fit_rows": metrics["splits"]["fit"]["rows"], "calibration_rows": metrics["splits"]["calibration"]["rows"]}


def dumps(document: Mapping[str, Any]) -> str:
    """The model file's text (stable key order, one line per list)."""
    text = json.dumps(document, indent=1, sort_keys=False, ensure_ascii=True)
    return text + "\n"


# -- outputs -----------------------------------------------------------------------------------


SET_TITLES = {"home_credit": "Home Credit episodes (the model)", "taiwan": "Taiwan accounts (second set)"}


def plot(metrics: Mapping[str, Mapping[str, Any]], path: Path | str) -> None:
    """The calibration plot of each set (deciles of the held-out rows) over a histogram of the
    probabilities, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(metrics.items())
    figure, axes = plt.subplots(2, len(sets), figsize=(5.2 * len(sets), 7), gridspec_kw={"height_ratios": [3, 1]},
                                squeeze=False)
    for column, (name, m) in enumerate(sets):
        top, bottom = axes[0][column], axes[1][column]
        table = m["calibration_table"]
        top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
        top.plot([r["mean_predicted"] for r in table], [r["observed"] for r in table], marker="o",
                 label=f"held-out deciles (n={m['splits']['held_out']['rows']})")
        top.axhline(m["base_rate"], color="0.8", linewidth=1, label=f"base rate {m['base_rate']:.2f}")
        top.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability of paying", ylabel="observed share paid",
                title=f"{SET_TITLES.get(name, name)}: AUC {m['auc']:.3f}, Brier {m['brier']:.3f} (base rate {m['base_rate_brier']:.3f})")
        top.title.set_fontsize(9)
        top.legend(loc="upper left", fontsize=8)
        p, y = m["_predicted"], m["_observed"]
        bottom.hist([p[y == 1], p[y == 0]], bins=20, range=(0, 1), stacked=True, label=["paid", "did not pay"])
        bottom.set(xlim=(0, 1), xlabel="predicted probability", ylabel="rows")
        bottom.legend(fontsize=8)
    figure.suptitle(f"{CURRENT_VERSION}: calibration on held-out rows", fontsize=11)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(figure)


def report(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """``metrics`` (from ``build`` or ``run``) as the text ``main`` prints."""
    lines = []
    for name, m in metrics.items():
        if not isinstance(m, Mapping) or "auc" not in m:
            continue
        lines.append(f"== {name}")
        for part, c in m["splits"].items():
            lines.append(f"  {part:<12} rows {c['rows']:>6}  positives {c['positives']:>6}  groups {c['groups']:>6}")
        lines.append(f"  held-out ROC AUC {m['auc']:.4f}   Brier {m['brier']:.4f}   "
                     f"base-rate Brier {m['base_rate_brier']:.4f} (constant {m['base_rate']:.4f})")
        lines.append("  calibration (held-out, deciles of the probability):")
        lines.append("    bin      n  mean predicted  observed")
        for r in m["calibration_table"]:
            lines.append(f"    {r['bin']:>3} {r['n']:>6}  {r['mean_predicted']:>14.3f}  {r['observed']:>8.3f}")
    return "\n".join(lines)


def run(out: Path | str | None = DEFAULT_OUT, plot_path: Path | str | None = DEFAULT_PLOT, seed: int = SEED, *,
        taiwan: Path | str = TAIWAN_SAMPLE) -> dict[str, Any]:
    """Train, validate, write the model to ``out`` and the plot to ``plot_path`` (``None``: not
    written), and return the metrics: ``{"version", "model_path", "plot_path", "home_credit",
    "taiwan"}``, each set as ``evaluate`` gives it without the arrays (JSON-ready).

    Raises:
        ModelFileError: the document fails its own format (a bug).
        ValueError: the policy's opening rule differs between currencies.
    """
    document, metrics = build(seed, taiwan=taiwan)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(dumps(document), encoding="utf-8")
    if plot_path is not None:
        plot(metrics, plot_path)
    clean = {name: {k: v for k, v in m.items() if not k.startswith("_")} for name, m in metrics.items()}
    return {"version": document["version"], "model_path": str(out) if out else None,
            "plot_path": str(plot_path) if plot_path else None, **clean}


def external_check(path: Path | str, model: PropensityModel | None = None) -> dict[str, Any]:
    """The shipped model on every episode of another ``installments_payments.csv`` (for example
    Home Credit's 1,000-applicant extract): ``rows``, ``positives``, ``auc``, ``brier`` and
    ``base_rate_brier`` (that file's own base rate). Nothing of it was used in training; its loans
    have longer histories than the packaged file's."""
    from collections_domain.scoring.model import load_model

    model = model or load_model()
    dataset = home_credit_dataset(home_credit.read_loans(path), model.opening_rule)
    p = predict(model, dataset)
    y = dataset.y
    return {"rows": len(y), "positives": int(y.sum()), "auc": round(roc_auc(y, p), 4), "brier": round(brier(y, p), 4),
            "base_rate_brier": round(brier(y, np.full(len(y), y.mean())), 4)}


def main(argv: Sequence[str] | None = None, *, echo: Callable[[str], Any] = print) -> int:
    """The command line: train, print the metrics, write the model and the plot. Returns 0."""
    parser = argparse.ArgumentParser(prog="python -m collections_domain.scoring.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the model file (default {DEFAULT_OUT.name})")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="the calibration plot PNG")
    parser.add_argument("--no-plot", action="store_true", help="write no plot")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--taiwan", type=Path, default=TAIWAN_SAMPLE,
                        help="the Taiwan CSV (UCI coded header) to validate on (default: the packaged sample)")
    parser.add_argument("--write-taiwan-sample", type=Path, metavar="UCI_CSV",
                        help="first rewrite the packaged Taiwan sample from the full UCI file")
    parser.add_argument("--external", type=Path, metavar="INSTALMENTS_CSV",
                        help="also score every episode of another installments_payments.csv with the new model")
    args = parser.parse_args(argv)
    if args.write_taiwan_sample:
        echo(f"wrote {write_taiwan_sample(args.write_taiwan_sample)} rows to {TAIWAN_SAMPLE}")
    metrics = run(args.out, None if args.no_plot else args.plot, args.seed, taiwan=args.taiwan)
    echo(report(metrics))
    if args.external:
        from collections_domain.scoring.model import load_model

        outside = external_check(args.external, load_model(args.out))
        echo(f"== external {args.external}: rows {outside['rows']}  positives {outside['positives']}  "
             f"ROC AUC {outside['auc']:.4f}  Brier {outside['brier']:.4f}  "
             f"base-rate Brier {outside['base_rate_brier']:.4f} (its own base rate)")
    echo(f"model {metrics['version']} -> {metrics['model_path']}" + (f"; plot -> {metrics['plot_path']}"
                                                                       if metrics["plot_path"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
