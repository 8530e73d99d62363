"""``WORKER_PROCESSES``: ``worker.py`` runs that many worker processes under one (one Python
process uses one core), each polling the task queue, and stops them all gracefully on SIGTERM."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from tests.e2e.conftest import eventually
from tests.e2e.two_workers_test import worker_env

ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    """The child process ids of ``pid`` (Linux ``/proc``)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie or a vanished process does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def pollers(client, task_queue: str) -> set[str]:
    answer = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
    return {poller.identity for poller in answer.pollers}


async def start_two_processes(local_env, tmp_path) -> tuple[subprocess.Popen, list[int], Path]:
    """``WORKER_PROCESSES=2 python worker.py`` on a queue of its own, once both children poll it:
    the supervisor, its children's pids and its log file."""
    task_queue = f"processes-{uuid.uuid4().hex[:8]}"
    env = {**worker_env(local_env.client, task_queue, f"sqlite:///{tmp_path / 'c.db'}", tmp_path), "WORKER_PROCESSES": "2"}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        parent = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    async def two_pollers():
        return len(await pollers(local_env.client, task_queue)) == 2

    if not await eventually(two_pollers, timeout=60):
        parent.kill()
        raise AssertionError(log_path.read_text())
    return parent, children_of(parent.pid), log_path


@pytest.mark.timeout(120)
async def test_worker_processes_run_as_many_pollers_and_stop_on_sigterm(local_env, tmp_path):
    parent, children, log_path = await start_two_processes(local_env, tmp_path)
    try:
        assert len(children) == 2 and b"worker: 2 processes" in log_path.read_bytes()
        os.kill(parent.pid, signal.SIGTERM)
        for _ in range(300):
            if parent.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert parent.returncode == 0, log_path.read_text()
        assert not [child for child in children if alive(child)]
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.timeout(120)
async def test_the_worker_processes_stop_when_their_supervisor_is_killed(local_env, tmp_path):
    parent, children, log_path = await start_two_processes(local_env, tmp_path)
    try:
        parent.kill()
        parent.wait(timeout=10)

        async def orphans_gone():
            return not [child for child in children if alive(child)]

        assert await eventually(orphans_gone, timeout=40), log_path.read_text()
    finally:
        if parent.poll() is None:
            parent.kill()
        for child in children:
            if alive(child):
                os.kill(child, signal.SIGKILL)
