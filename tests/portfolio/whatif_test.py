"""What-if replays: the same real loans under several policies side by side (``simulate --policy
A --policy B ...``); each column equals that policy's simulation run alone, costed at the first
policy's prices."""

from __future__ import annotations

from pathlib import Path

import pytest

from collections_domain.portfolio.home_credit import read_loans
from collections_domain.portfolio.simulation import simulate, what_if
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, load_policy

BEFORE_STRATEGY = DEFAULT_POLICY_PATH.parent / "2026.12-ledger.toml"
EXAMPLE = Path(__file__).parents[2] / "examples" / "policies" / "letter-before-call.toml"
POLICIES = (DEFAULT_POLICY_PATH, BEFORE_STRATEGY, EXAMPLE)
LOANS = 50


@pytest.mark.timeout(600)
async def test_the_what_if_columns_equal_each_policy_simulated_alone():
    loans = read_loans()[:LOANS]
    _, comparison = await what_if(loans, POLICIES)
    assert [run.policy_version for run in comparison.runs] == [
        "2027.01-strategy", "2026.12-ledger", "whatif-letter-before-call"]
    prices = load_policy(DEFAULT_POLICY_PATH).unit_costs
    for path, run in zip(POLICIES, comparison.runs):
        alone = await simulate(loans, policy_path=path, price_list=prices)
        assert alone.whatif == run, path
    strategy, before, letter_first = comparison.runs
    assert strategy.loans == LOANS and strategy.cases > 0
    # The payments are the file's: the same cases open and cure under every ladder ...
    for other in (before, letter_first):
        assert (other.cases, other.cures, other.recovered_minor) == (strategy.cases, strategy.cures, strategy.recovered_minor)
    # ... while the ladders differ. Before the strategy every case ran the standard ladder: no
    # early calls for the low band, so fewer agent tasks; its file has no unit costs, so it is
    # costed at the first policy's prices (not at zero).
    assert before.agent_tasks < strategy.agent_tasks and 0 < sum(before.cost_minor.values()) < sum(strategy.cost_minor.values())
    assert letter_first.agent_tasks <= strategy.agent_tasks


async def test_two_policies_of_one_version_cannot_be_told_apart():
    with pytest.raises(ValueError, match="a version of its own"):
        await what_if(read_loans()[:1], [DEFAULT_POLICY_PATH, DEFAULT_POLICY_PATH])
    with pytest.raises(ValueError, match="at least two"):
        await what_if(read_loans()[:1], [DEFAULT_POLICY_PATH])
