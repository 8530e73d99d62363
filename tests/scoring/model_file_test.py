"""The shipped model file: small, named after its version, free of protected attributes, read by
the run time exactly as scikit-learn computes it, and rebuilt byte for byte from the packaged
data."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from collections_domain.scoring import train
from collections_domain.scoring.features import FEATURE_NAMES
from collections_domain.scoring.model import (
    CURRENT_VERSION,
    MODELS_DIR,
    ModelFileError,
    load_model,
    model_from_document,
)

SHIPPED = MODELS_DIR / f"{CURRENT_VERSION}.json"
#: Words that would name a protected or personal attribute (sex, marital status, age, education,
#: family), as they appear in the Home Credit and UCI column names.
PROTECTED = {"sex", "gender", "marriage", "marital", "married", "family", "fam", "age", "birth", "education",
             "children", "child", "name"}


def words(name: str) -> set[str]:
    return set(re.split(r"[^a-z]+", name.lower())) - {""}


def test_the_model_file_is_small_and_named_after_its_version():
    document = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert SHIPPED.stat().st_size < 20_000
    assert SHIPPED.name == f"{document['version']}.json"
    assert sorted(p.name for p in MODELS_DIR.glob("*.json")) == [SHIPPED.name]
    assert load_model().version == document["version"] == CURRENT_VERSION
    assert load_model() is load_model(SHIPPED)  # read once


def test_no_feature_names_a_protected_attribute():
    model = load_model()
    taiwan = train.taiwan_dataset()
    for name in [*FEATURE_NAMES, *model.feature_names, *taiwan.feature_names]:
        assert not words(name) & PROTECTED, name
    with train.TAIWAN_SAMPLE.open(encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert {"X2", "X3", "X4", "X5"}.isdisjoint(header)  # SEX, EDUCATION, MARRIAGE, AGE are not shipped


def test_a_broken_model_file_is_refused_naming_the_field(tmp_path):
    document = json.loads(SHIPPED.read_text(encoding="utf-8"))
    for change, field in [
        ({"format": 2}, "format"),
        ({"features": [*document["features"][:-1], "age"]}, "features"),
        ({"coefficients": document["coefficients"][:-1]}, "coefficients"),
        ({"scaler": {"mean": document["scaler"]["mean"], "scale": [0.0] * len(document["features"])}}, "scaler.scale"),
        ({"isotonic": {"x": [0.5, 0.4], "y": [0.1, 0.2]}}, "isotonic.x"),
        ({"isotonic": {"x": [0.4, 0.5], "y": [0.2, 0.1]}}, "isotonic.y"),
    ]:
        with pytest.raises(ModelFileError, match=re.escape(field)):
            model_from_document({**document, **change})
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelFileError, match="not JSON"):
        load_model(tmp_path / "bad.json")
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_model(tmp_path / "missing.json")


def test_a_missing_or_non_finite_feature_is_refused():
    model = load_model()
    values = dict.fromkeys(model.feature_names, 0.0)
    assert 0.0 <= model.probability(values) <= 1.0
    with pytest.raises(ValueError, match="log_overdue_minor.*missing"):
        model.probability({k: v for k, v in values.items() if k != "log_overdue_minor"})
    with pytest.raises(ValueError, match="finite"):
        model.probability({**values, "paid_to_due": math.nan})


def test_rebuilding_gives_the_same_model_and_the_run_time_computes_what_scikit_learn_does():
    pytest.importorskip("sklearn", reason="rebuilding trains the model (scikit-learn)")
    document, metrics = train.build()
    assert train.dumps(document) == SHIPPED.read_text(encoding="utf-8")
    assert metrics["home_credit"]["auc"] == document["metrics"]["held_out"]["auc"]

    dataset = train.home_credit_dataset()
    parts = train.split(dataset)
    fitted = train.fit(dataset, parts)
    expected = fitted.sklearn_probability(dataset.X[parts.held_out])
    got = train.predict(load_model(), dataset, parts.held_out)
    # The file keeps 12 significant digits; near an isotonic threshold that moves a value by
    # at most the step's slope times 1e-12.
    assert np.max(np.abs(got - expected)) < 1e-9


def test_scoring_imports_neither_scikit_learn_nor_numpy():
    code = ("import sys; from datetime import date; from collections_domain.scoring.model import score_schedule; "
            "score_schedule([(date(2026, 1, 1), 1000)], [], date(2026, 1, 2)); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'numpy', 'scipy', 'matplotlib'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
