"""The strategy on the time-skipping server: a case the scan opens is scored from the loan book,
put in its band's treatment or its experiment's arm (recorded in the database, the status and the
``StrategyArm`` search attribute), and runs that treatment's ladder; a case of a loan the book
does not hold is not scored and runs the standard ladder outside the experiment."""

from __future__ import annotations

from datetime import time, timedelta

from sqlmodel import select

from collections_domain.case import search_attributes as sa
from collections_domain.case.contract import CaseStatus
from collections_domain.portfolio import loan_book
from collections_domain.portfolio.scan import ScanRequest, scan_page
from collections_domain.rules import calendar
from collections_domain.rules.policy import DEFAULT_POLICY_PATH
from collections_domain.store.db import session
from collections_domain.store.models import CollectionCase, StrategyAssignment
from tests.helpers import advance_to, contact_rows, open_case, seed_borrower, server_now

TZ = "Asia/Shanghai"
LOANS = 8
#: The default policy with one band for every score and its experiment over that band: each
#: scored case is in the champion (standard) or the challenger (early_call) arm.
POLICY_TEXT = (
    DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    .replace('version = "2027.01-strategy"', 'version = "test-strategy"')
    .replace('''bands = [
  { name = "low", below_bps = 1500, treatment = "early_call" },
  { name = "medium", below_bps = 4000, treatment = "standard" },
  { name = "high", treatment = "self_cure" },
]''', '''bands = [
  { name = "all", treatment = "self_cure" },
]''')
    .replace('bands = ["medium"]', 'bands = ["all"]')
)
ARM_ACTIONS = {"champion": ["email_overdue_notice", "sms_reminder"], "challenger": ["agent_call", "sms_reminder"]}


def strategy_harness(harness_factory, env, tmp_path):
    path = tmp_path / "strategy.toml"
    path.write_text(POLICY_TEXT, encoding="utf-8")
    return harness_factory(env, policy_path=path)


def book_csv(today, suffix: str) -> str:
    """LOANS loans with two paid instalments and a third 5 days overdue."""
    rows = ["record,loan_id,borrower_id,currency,timezone,jurisdiction,region,portfolio,instalment_id,due_date,"
            "principal_minor,interest_minor,fees_minor,payment_id,amount_minor,paid_at,reversal_id,reason"]
    for n in range(LOANS):
        loan = f"S{n}-{suffix}"
        rows.append(f"loan,{loan},B-{loan},CNY,{TZ},CN,CN-SH,no-accrual,,,,,,,,,,")
        for i, back in enumerate((65, 35, 5), start=1):
            rows.append(f"instalment,{loan},,,,,,,{i},{today - timedelta(days=back)},100000,0,0,,,,,")
        for i, back in enumerate((65 - n, 35), start=1):  # paid on time, or n days early on the first
            rows.append(f"payment,{loan},,CNY,,,,,,,,,,p{i},100000,{today - timedelta(days=back)}T10:00:00+08:00,,")
    return "\n".join(rows) + "\n"


async def test_scanned_cases_get_their_arm_for_life_and_run_its_ladder(time_env, harness_factory, tmp_path):
    h = strategy_harness(harness_factory, time_env, tmp_path)
    policy = h.activities.policies.current
    experiment = policy.experiments[0]
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, TZ)
        suffix = str(abs(hash(now)) % 10**6)
        loan_book.import_csv(h.engine, policy, text=book_csv(today, suffix), now=now)
        for n in range(LOANS):
            seed_borrower(h.engine, f"B-S{n}-{suffix}", tz=TZ)
        page = await scan_page(h.engine, h.client, policy, ScanRequest(time_zone=TZ, as_of=now), task_queue=h.task_queue)
        assert len(page.opened) == LOANS, page
        handles = [h.client.get_workflow_handle(f"collection-{loan}", result_type=CaseStatus) for loan in page.opened]
        h.handles += handles
        await advance_to(time_env, calendar.local_instant(today + timedelta(days=1), time(12), TZ))
        arms = set()
        for loan_id, handle in zip(page.opened, handles):
            st = await handle.query("status", result_type=CaseStatus)
            arm = experiment.arm_for(loan_id)
            arms.add(arm.name)
            assert st.strategy is not None
            assert (st.strategy.score_band, st.strategy.model_version) == ("all", policy.scoring.model)
            assert (st.strategy.experiment_id, st.strategy.arm, st.strategy.treatment) == (experiment.id, arm.name, arm.treatment)
            described = await handle.describe()
            assert described.typed_search_attributes.get(sa.STRATEGY_ARM) == f"{experiment.id}:{arm.name}"
            assert [s.step for s in st.steps_done] == ["initial"], st.steps_done
            assert sorted(r.action for r in contact_rows(h.engine, loan_id)) == ARM_ACTIONS[arm.name]
            with session(h.engine) as db:
                row = db.exec(select(CollectionCase).where(CollectionCase.loan_id == loan_id)).one()
                assigned = db.exec(select(StrategyAssignment).where(StrategyAssignment.loan_id == loan_id)).one()
            assert (row.strategy_arm, row.treatment, row.score_band, row.experiment_id) == (
                arm.name, arm.treatment, "all", experiment.id)
            assert row.propensity_bps == assigned.propensity_bps and 0 <= assigned.propensity_bps <= 10_000
            assert assigned.episode_id == st.episode_id and assigned.policy_version == "test-strategy"
        assert arms == {"champion", "challenger"}, "8 loans fell in one arm: pick other ids"


async def test_a_loan_the_book_does_not_hold_is_not_scored_and_runs_standard(time_env, harness_factory, tmp_path):
    h = strategy_harness(harness_factory, time_env, tmp_path)
    async with h.worker:
        due = calendar.local_date(await server_now(time_env), TZ) - timedelta(days=4)
        case, handle = await open_case(h, due=due)
        await advance_to(time_env, calendar.local_instant(due + timedelta(days=5), time(12), TZ))
        st = await handle.query("status", result_type=CaseStatus)
    assert st.strategy is not None and st.strategy.score_band is None and st.strategy.model_version is None
    assert (st.strategy.treatment, st.strategy.arm, st.strategy.strategy_arm) == ("standard", "none", "none")
    assert (await handle.describe()).typed_search_attributes.get(sa.STRATEGY_ARM) == "none"
    assert sorted(r.action for r in contact_rows(h.engine, case.loan_id)) == ARM_ACTIONS["champion"]
