"""Shared fixtures: one time-skipping test server per session, a fresh database and worker per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.engine import Engine
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.collection_activities import CollectionActivities
from activities.delivery import DeliveryBackend, RecordDelivery
from collections_domain.ops.binaries import find_binary
from collections_domain.store.db import make_engine
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.case.search_attributes import CLI_TYPES, INDEXED_TYPES  # noqa: F401 (tests import it from here)
from collections_domain.ops.settings import Settings
from collections_domain.ops.wiring import build_worker
from tests.databases import created_databases, drop_created_databases, fresh_database_url
from tests.keys import TEST_CONVERTER, TEST_PAYLOAD_KEYS




@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server, with the project's search attributes registered.

    One per test module: the server's clock is shared by everything on it, and in full runs a
    file's leftovers (after ``negotiation_test``) stalled time skipping for the first tests of
    the next file (``unlock_time_skipping_with_sleep`` timing out in ``signals_test``). A fresh
    server per file costs about a second.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=TEST_CONVERTER,
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={name: INDEXED_TYPES[kind] for name, kind in CLI_TYPES.items()},
        )
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases_at_exit() -> Iterator[None]:
    """PostgreSQL runs (``TEST_DATABASE_URL``): drop any test database still there at the end."""
    yield
    drop_created_databases()


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """PostgreSQL runs: drop the databases a test created once it is over (SQLite: nothing)."""
    before = created_databases()
    yield
    drop_created_databases(only=created_databases() - before)


class Harness:
    """A worker on its own task queue, with its own database (``tests/databases.py``), against one
    environment."""

    def __init__(
        self,
        env: WorkflowEnvironment,
        tmp_path: Path,
        delivery: DeliveryBackend | None = None,
        engines: dict[str, Engine] | None = None,
        policy_path: Path | None = None,
    ):
        self.env = env
        self.client: Client = env.client
        self.task_queue = f"test-{uuid.uuid4().hex[:8]}"
        self.settings = Settings(
            temporal_task_queue=self.task_queue,
            database_url=fresh_database_url(tmp_path),
            data_dir=tmp_path,
            payload_keys=TEST_PAYLOAD_KEYS,
        )
        url = self.settings.resolved_database_url
        # Harnesses of one test share its database, and (``engines``) one engine on it: a property
        # test makes a harness per example, and an engine each would hold a pool of PostgreSQL
        # connections each until the test ends.
        if engines is not None and url in engines:
            self.engine = engines[url]
        else:
            self.engine = make_engine(url)
            if engines is not None:
                engines[url] = self.engine
        self.activities = CollectionActivities(
            engine=self.engine,
            delivery=delivery or RecordDelivery(),
            policies=PolicyRegistry.from_settings(str(policy_path) if policy_path else None),
        )
        self.worker = build_worker(self.client, self.settings, self.activities)
        self.handles: list = []
        #: Child workflow ids (plans, placements, legal referrals) a test may have started.
        self.child_ids: list[str] = []

    async def terminate_open_cases(self) -> None:
        """End this test's still-running cases and their children, so their timers cannot hold
        the shared clock."""
        # Children first: a child ending after its (abandoned) parent closed stops the
        # time-skipping server from skipping time for the rest of the session.
        ids = self.child_ids + [handle.id for handle in self.handles]
        for workflow_id in ids:
            try:
                await self.client.get_workflow_handle(workflow_id).terminate(reason="test finished")
            except Exception:
                pass  # already closed, or never started


@pytest_asyncio.fixture(loop_scope="session")
async def harness_factory(tmp_path: Path):
    """Make a ``Harness`` for an environment (optionally with another delivery back-end, or
    another policy file as the current policy).

    After the test, every case it opened that is still running is terminated: the time-skipping
    server's clock is shared, and a timer firing for a case whose worker is gone would stop it.
    """
    made: list[Harness] = []
    engines: dict[str, Engine] = {}

    def make(env: WorkflowEnvironment, delivery: DeliveryBackend | None = None, policy_path: Path | None = None) -> Harness:
        harness = Harness(env, tmp_path, delivery, engines, policy_path)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.terminate_open_cases()
    for engine in engines.values():
        engine.dispose()
