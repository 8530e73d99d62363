"""Shared fixtures: one time-skipping test server per test file, a fresh database and worker per
test; and the per-file times printed at the end of a run (``pytest_terminal_summary``)."""

from __future__ import annotations

import time
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

# -- the suite's time, file by file ----------------------------------------------------------------
#: How many of the slowest files the summary lists (``--file-times=N``; 0: none).
FILE_TIMES_DEFAULT = 25


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--file-times", type=int, default=FILE_TIMES_DEFAULT, metavar="N",
                     help=f"list the N slowest test files at the end (default {FILE_TIMES_DEFAULT}; 0: none)")


class _FileTimes:
    """Per test file: the time its tests took (setup, call and teardown added up, so a module
    fixture's start counts), how many tests, and when its first test started and its last ended.
    Fed by every test report: under pytest-xdist the controller gets each worker's reports, with
    the worker that ran them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.tests: dict[str, int] = {}
        self.span: dict[str, tuple[float, float]] = {}
        self.workers: dict[str, set[str]] = {}
        self.started = time.time()

    def add(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::", 1)[0]
        self.seconds[path] = self.seconds.get(path, 0.0) + report.duration
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.tests[path] = self.tests.get(path, 0) + 1
        start, stop = getattr(report, "start", 0.0) or 0.0, getattr(report, "stop", 0.0) or 0.0
        if start and stop:
            first, last = self.span.get(path, (start, stop))
            self.span[path] = (min(first, start), max(last, stop))
        worker = getattr(getattr(report, "node", None), "gateway", None)
        self.workers.setdefault(path, set()).add(getattr(worker, "id", "main"))

    def lines(self, limit: int) -> list[str]:
        ranked = sorted(self.seconds.items(), key=lambda item: -item[1])
        wall = time.time() - self.started
        total = sum(self.seconds.values())
        out = [f"{len(ranked)} files, {sum(self.tests.values())} tests: {total:.0f} s in tests, {wall:.0f} s wall"
               f" (x{total / wall:.1f} in parallel)" if wall > 0 else ""]
        for path, seconds in ranked[:limit]:
            first, last = self.span.get(path, (0.0, 0.0))
            where = ",".join(sorted(self.workers.get(path, ())))
            out.append(f"{seconds:8.1f} s  {self.tests.get(path, 0):4d} tests  "
                       f"{first - self.started:6.0f}-{last - self.started:<6.0f} {where:>5}  {path}")
        rest = ranked[limit:]
        if rest:
            out.append(f"{sum(s for _, s in rest):8.1f} s  in the {len(rest)} other files (each under {rest[0][1]:.1f} s)")
        return out


_FILE_TIMES = _FileTimes()


# -- parallel runs (pytest-xdist) -----------------------------------------------------------------
# ``-n auto --dist loadfile`` (pyproject's addopts) runs the suite on one worker process per core.
# Work goes out by file (a file's tests share its module fixtures: a time-skipping server each),
# the longest first, with two exceptions: the whole-file simulation's parts go one by one, and the
# end-to-end folder with every test on its session dev server is one unit. The scheduler below
# does this from the test ids alone (xdist's ``loadgroup`` marks do not reach the ids under
# pytest 9.2); another ``--dist`` keeps xdist's own scheduling; ``-n 0`` runs in one process.

#: The end-to-end folder shares one process: its last file sweeps what the others wrote
#: (``tests/personal_data.py``), and its tests share the session's dev server (``local_env``).
DEV_SERVER_GROUP = "dev-server"
DEV_SERVER_PATHS = ("tests/e2e/",)
#: Test files outside ``tests/e2e`` on the session dev server (``local_env``): in the same unit,
#: so that the sweep reads their histories too. A test using ``local_env`` elsewhere is refused
#: until its file is listed here (``pytest_collection_modifyitems``).
DEV_SERVER_FILES = ("tests/api/parallel_open_test.py",)
#: The whole-file simulation's parts (``tests/simulation_test.py``): the longest tests, one unit
#: each, first, so that none is the run's tail.
SIMULATION = "tests/simulation_test.py::test_simulation_of_the_whole_file_equals_the_csv"
#: Then these units, in this order (the longest measured on 2 cores); then the others, in
#: collection order.
FIRST_UNITS = (DEV_SERVER_GROUP, "tests/portfolio/whatif_test.py", "tests/cli/validation_test.py",
               "tests/ops/tls_test.py", "tests/portfolio/scan_test.py",
               "tests/workflows/compliance_property_test.py", "tests/deploy/migrations_test.py")


def work_unit(nodeid: str) -> str:
    """The unit of work (run by one worker, in order) a test id belongs to: its file, but
    ``DEV_SERVER_GROUP`` for the dev server's tests and the test id itself for a simulation part."""
    nodeid = nodeid.split("@", 1)[0] if "@" in nodeid.rpartition("]")[2] else nodeid  # an xdist_group suffix
    path = nodeid.split("::", 1)[0]
    if nodeid.startswith(SIMULATION):
        return nodeid
    if path.startswith(DEV_SERVER_PATHS) or path in DEV_SERVER_FILES:
        return DEV_SERVER_GROUP
    return path


def _unit_rank(unit: str) -> tuple[int, int]:
    if unit.startswith(SIMULATION):
        return (0, 0)
    return (1, FIRST_UNITS.index(unit)) if unit in FIRST_UNITS else (2, 0)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker: the items by unit (``work_unit``), the units first that
    ``_unit_rank`` puts first, the others in collection order (every worker sorts the same way; the
    scheduler hands the units out in this order). A run without xdist keeps the collection order."""
    misplaced = sorted({item.nodeid.split("::", 1)[0] for item in items
                        if "local_env" in getattr(item, "fixturenames", ())
                        and work_unit(item.nodeid) != DEV_SERVER_GROUP})
    if misplaced:
        raise pytest.UsageError(f"{misplaced} use the session dev server (local_env): list them in "
                                "tests/conftest.py DEV_SERVER_FILES")
    if not hasattr(config, "workerinput"):
        return
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(work_unit(item.nodeid), []).append(item)
    items[:] = [item for unit in sorted(units, key=_unit_rank) for item in units[unit]]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadfile``: xdist's file scheduling with ``work_unit`` as the unit, in the
    workers' collection order (``pytest_collection_modifyitems``), not reordered by size."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return UnitScheduling(config, log)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _FILE_TIMES.add(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """The slowest files: time in their tests, tests, seconds since the run's start of their
    first start and last end, and the xdist worker(s) that ran them."""
    limit = config.getoption("--file-times")
    if limit <= 0 or hasattr(config, "workerinput") or not _FILE_TIMES.seconds:
        return
    terminalreporter.section("time per test file (slowest first)")
    for line in _FILE_TIMES.lines(limit):
        terminalreporter.write_line(line)


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
