"""``X-Forwarded-For`` names the client only from the proxies in ``API_FORWARDED_ALLOW_IPS``:
found by a newcomer trial, 25 wrong keys each with a made-up ``X-Forwarded-For`` from 127.0.0.1
were all answered 401, never 429 (uvicorn believes the header from 127.0.0.1 by default)."""

from __future__ import annotations

import httpx

from api.app import create_app, uvicorn_options
from tests.api.conftest import api_settings, free_port
from tests.helpers import ServedInLoop


async def wrong_keys_with_made_up_addresses(settings, tries: int) -> list[int]:
    async with ServedInLoop(create_app(settings), free_port(), **uvicorn_options(settings)) as served:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as http:
            return [(await http.get("/v1/cases", headers={"Authorization": f"Bearer lck_{n:016x}_{'0' * 64}",
                                                           "X-Forwarded-For": f"10.9.8.{n}"})).status_code
                    for n in range(tries)]


async def test_a_made_up_forwarded_address_does_not_slip_the_throttle(tmp_path):
    settings = api_settings(tmp_path, api_auth_failures_per_minute=5)
    codes = await wrong_keys_with_made_up_addresses(settings, 8)
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3


async def test_behind_a_named_proxy_the_forwarded_address_is_the_client(tmp_path):
    settings = api_settings(tmp_path, api_auth_failures_per_minute=5, api_forwarded_allow_ips="127.0.0.1")
    assert await wrong_keys_with_made_up_addresses(settings, 8) == [401] * 8
