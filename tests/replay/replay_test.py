"""Every saved history replays on the current workflow code (no non-determinism).

Histories are recorded by ``python -m tests.replay.record_histories <version>`` and kept under
``tests/replay/histories/<version>/``; a change that breaks one of them would break running cases.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from collections_domain.ops.wiring import WORKFLOWS
from collections_domain.rules.policy import PolicyRegistry, set_worker_policies
from tests.keys import TEST_CONVERTER

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*/*.json"))


def test_histories_are_present():
    # v1: recorded before plans, pauses, hand-off children and write-off; v2: after; v3: with the
    # compliance gate (deferrals, reroutes, attorney, breathing space, the UK default notice); v1
    # to v3 replay on the legacy engine (workflows/legacy). v4: the case core and the loan ledger
    # (instalments, re-anchoring, reversals, accrual, value-dated promises, the patch marker of the
    # contract's original input, the legal track's money, a re-opened case, the scan). v5: the
    # same scenarios with encrypted payloads (the test key "test-1", tests/keys.py), the contact
    # retry policy without an attempt bound, and the batch's window-closed flag. v6: the strategy
    # (cases scored at opening and run on their treatment's ladder or experiment arm: the
    # StrategyArm upsert, self_cure's reminder step, early_call's DPD 3 call) and the scheduled
    # KPI report (KpiReportWorkflow). v7: history revision 2 (issue 14: the opening activity
    # writes the opening records, records wait for the step's first activity) and a worker with
    # providers' rate limits (a step's SMS and letters on their channels' task queues, the routing
    # kept with the contact profile).
    assert len([p for p in HISTORIES if p.parent.name == "v1"]) == 6
    assert len([p for p in HISTORIES if p.parent.name == "v2"]) >= 17
    assert len([p for p in HISTORIES if p.parent.name == "v3"]) >= 22
    assert len([p for p in HISTORIES if p.parent.name == "v4"]) >= 30
    assert len([p for p in HISTORIES if p.parent.name == "v5"]) >= 30
    assert len([p for p in HISTORIES if p.parent.name == "v6"]) >= 37
    assert len([p for p in HISTORIES if p.parent.name == "v7"]) >= 38


def test_encrypted_histories_need_the_key():
    """A v5 history's payloads are ciphertext: without the key the replayer cannot read them."""
    path = next(p for p in HISTORIES if p.parent.name == "v5")
    assert '"encoding": "YmluYXJ5L2VuY3J5cHRlZA=="' in path.read_text()  # base64 of binary/encrypted


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem.split('--')[0]}")
async def test_history_replays(path: Path):
    workflow_id = path.stem.split("--", 1)[1]
    history = WorkflowHistory.from_json(workflow_id, path.read_text())
    assert len(history.events) > 10
    # Cases read their policy from the worker by version and digest, as a worker's workflows do.
    set_worker_policies(PolicyRegistry.from_settings(None))
    replayer = Replayer(workflows=WORKFLOWS, data_converter=TEST_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
