from datetime import time, timedelta

from collections_domain import calendar
from tests.helpers import advance_to_local, open_case, server_now, status


async def test_smoke(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, "Asia/Shanghai")
        case, handle = await open_case(h, due=today - timedelta(days=1))
        await advance_to_local(time_env, case.oldest_due_date + timedelta(days=31), time(12), "Asia/Shanghai")
        st = await status(handle)
        print(st.model_dump_json(indent=1))
        hist = await handle.fetch_history()
        for e in hist.events[-1:]:
            print(e.event_type, str(e)[:300].replace("\n"," "))
