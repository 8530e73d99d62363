"""Record workflow histories for the replay test: ``python -m tests.replay.record_histories``.

Each scenario runs on a fresh time-skipping server with the current code and is saved as JSON
under ``tests/replay/histories/<version>/<scenario>--<workflow id>.json``. Histories are kept forever: the replay test proves
that every later change to the workflow still replays what running cases already did.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import time, timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from collections_domain import calendar
from collections_domain.binaries import find_binary
from collections_domain.simulation import _register_search_attributes
from tests.conftest import Harness
from tests.helpers import advance_to, open_case, payment, promise, server_now

TZ = "Asia/Shanghai"
OUT = Path(__file__).parent / "histories"


async def main(version: str) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    await _register_search_attributes(env.client)
    folder = OUT / version
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(env, Path(tmp))
        async with h.worker:
            today = calendar.local_date(await server_now(env), TZ)
            due = today - timedelta(days=1)

            def local(dpd: int, hour: int = 12):
                return calendar.local_instant(due + timedelta(days=dpd), time(hour), TZ)

            handles = {}
            _, handles["never_paid_legal"] = await open_case(h, due=due, amount_minor=2_000_000)
            _, handles["cured_dpd_5"] = await open_case(h, due=due, amount_minor=300_000)
            _, handles["promise_kept"] = await open_case(h, due=due, amount_minor=300_000)
            _, handles["promise_broken"] = await open_case(h, due=due, amount_minor=300_000)
            _, handles["rejected_signals"] = await open_case(h, due=due, amount_minor=300_000)
            _, handles["late_start_with_payment"] = await open_case(
                h, due=today - timedelta(days=12), amount_minor=400_000,
                first_payment=payment(100_000, await server_now(env), payment_id="sws-1"),
            )
            await handles["rejected_signals"].signal("payment_received", {"payment_id": "bad", "amount_minor": -1, "currency": "CNY", "paid_at": local(1).isoformat()})
            await handles["rejected_signals"].signal("promise_to_pay", {"promise_id": "far", "amount_minor": 1, "promised_date": (today + timedelta(days=90)).isoformat()})
            await advance_to(env, local(4))
            await handles["promise_kept"].signal("promise_to_pay", promise(100_000, due + timedelta(days=8), promise_id="k1"))
            await handles["promise_broken"].signal("promise_to_pay", promise(100_000, due + timedelta(days=5), promise_id="b1"))
            await advance_to(env, local(5))
            await handles["cured_dpd_5"].signal("payment_received", payment(300_000, local(5), payment_id="c5"))
            await advance_to(env, local(8))
            await handles["promise_kept"].signal("payment_received", payment(100_000, local(8), payment_id="k1-pay"))
            await advance_to(env, local(31))
            for name, handle in handles.items():
                history = await handle.fetch_history()
                path = folder / f"{name}--{handle.id}.json"
                path.write_text(history.to_json())
                print(f"saved {path} ({len(history.events)} events)")
            for handle in handles.values():
                try:
                    await handle.terminate(reason="recorded")
                except Exception:
                    pass
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "v1"))
