"""The workflow input never fails to decode; its problems name the field and the rule."""

import pytest

from collections_domain.case.contract import CaseInput


def test_valid_input_has_no_problems():
    case = CaseInput.checked(loan_id="L-1", borrower_id="B-1", principal_due_minor=100, oldest_due_date="2026-12-01")
    assert case.overdue_minor == 100 and case.workflow_id == "collection-L-1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"loan_id": "bad id"}, "loan_id"),
        ({"loan_id": "x" * 65}, "loan_id"),
        ({"borrower_id": ""}, "borrower_id"),
        ({"principal_due_minor": -1}, "principal_due_minor"),
        ({"principal_due_minor": 0}, "the sum must be > 0"),
        ({"principal_due_minor": "abc"}, "principal_due_minor"),
        ({"principal_due_minor": 10.5}, "principal_due_minor"),
        ({"oldest_due_date": "2026-13-01"}, "oldest_due_date"),
        ({"currency": "cny"}, "currency"),
        ({"jurisdiction": "FR"}, "jurisdiction: must be one of CN, US, UK"),
    ],
)
def test_each_rule(fields, message):
    raw = {"loan_id": "L-1", "borrower_id": "B-1", "principal_due_minor": 100, "oldest_due_date": "2026-12-01", **fields}
    case = CaseInput.model_validate(raw)  # never raises
    assert any(message in problem for problem in case.input_problems), case.input_problems
    with pytest.raises(ValueError, match=message.split(":")[0].split(" ")[0]):
        CaseInput.checked(**raw)


def test_missing_fields_are_named():
    case = CaseInput.model_validate({})
    problems = " ".join(case.input_problems)
    for name in ("loan_id", "borrower_id", "oldest_due_date"):
        assert name in problems
