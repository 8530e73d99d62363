"""No personal data in any workflow history or log line of the end-to-end runs (issue 12, item 3).

Runs last among the end-to-end tests (its name): every borrower those tests seeded registered its
name, phone, email and postal address (``tests.personal_data``); every history of their dev servers
(payloads decoded with the test key, failure messages, summaries) and every captured output and
log line at INFO and above is searched for each of them.
"""

from __future__ import annotations

import pytest
from temporalio.api.history.v1 import HistoryEvent

from tests.keys import TEST_CONVERTER
from tests.personal_data import SWEEP, Sweep, _payloads, collect_histories


async def test_no_personal_data_in_any_history_or_log_line(local_env):
    await collect_histories(local_env.client, "session dev server")
    if SWEEP.histories == 0 or not SWEEP.values:
        pytest.skip("nothing to sweep: run it with the end-to-end tests (pytest tests/e2e)")
    hits = SWEEP.hits()
    assert not hits, f"personal data in {len(hits)} places:\n" + "\n".join(hits[:50])
    print(f"swept {SWEEP.histories} histories and {len(SWEEP.texts)} texts for {len(SWEEP.values)} values")


async def test_the_sweep_finds_a_name_in_an_encrypted_payload_and_a_log_line():
    """The sweep can fail: a name inside an encrypted payload of a history event, and a phone
    number written another way in a log line, are both found."""
    sweep = Sweep()
    sweep.register("Wanjiru Kamau-Lindqvist", "+44 7700 900123")
    [payload] = await TEST_CONVERTER.encode(["Dear Wanjiru Kamau-Lindqvist, you owe"])
    event = HistoryEvent()
    event.workflow_execution_started_event_attributes.input.payloads.append(payload)
    assert b"Wanjiru" not in event.SerializeToString()
    found = []
    _payloads(event, found)
    [decoded] = await TEST_CONVERTER.payload_codec.decode(found)
    sweep.texts.append(("history", decoded.data.decode()))
    sweep.texts.append(("log", "contact.failed to=(+44) 7700-900-123"))
    assert sweep.hits() == ["history: 'Wanjiru Kamau-Lindqvist'", "log: '447700900123'"]
