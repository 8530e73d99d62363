"""How many worker processes a host runs and how many cases each keeps cached, from the machine.

One Python worker process uses one core (the GIL): a host runs one per core it may use
(``WORKER_PROCESSES=auto``). Each process keeps up to ``WORKER_CACHED_CASES`` cases in its
workflow cache; a case evicted from the cache is replayed from its history on its next task,
which is what made a 09:00 herd slow (issue 14: 48 % of its workflow tasks replayed). ``auto``
gives each process an equal share of half the memory available when it starts (the host's, or
what is left under a container's memory limit; the cores likewise honour a CPU quota), at
``CASE_MEMORY_BYTES`` a cached case (``python -m bench --only memory`` measures it), between
``MIN_CACHED_CASES`` and ``MAX_CACHED_CASES``. The README's "Sizing" section says how to size
them for N open cases and H cases due at one instant.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: A cached case's memory, with a margin over the bench's per-case slope (unsandboxed workflows).
CASE_MEMORY_BYTES = 150 * 1024
#: The share of the memory available at start that the workflow caches of all processes may use.
MEMORY_SHARE = 0.5
MIN_CACHED_CASES = 1_000
MAX_CACHED_CASES = 100_000
#: The most processes ``WORKER_PROCESSES`` may ask for.
MAX_PROCESSES = 64


#: Where a container's limits are (cgroup v2, then v1).
CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return None


def _cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """Cores a container's CPU quota allows (``cpu.max``, or v1 ``cfs_quota_us``), None without one."""
    text = _read(root / "cpu.max")
    if text:
        quota, _, period = text.partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period):
            return int(quota) / int(period)
        return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and quota.lstrip("-").isdigit() and int(quota) > 0 and period.isdigit() and int(period):
        return int(quota) / int(period)
    return None


def _cgroup_memory_free(root: Path = CGROUP) -> int | None:
    """Bytes left under a container's memory limit (``memory.max`` - ``memory.current``, or v1),
    None without a limit."""
    for limit_name, used_name in (("memory.max", "memory.current"),
                                  ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, used = _read(root / limit_name), _read(root / used_name)
        if limit and limit.isdigit() and int(limit) < 2 ** 60:  # v1 says "no limit" with a huge number
            return max(0, int(limit) - int(used or 0))
    return None


def usable_cores(root: Path = CGROUP) -> int:
    """The cores this process may use: its CPU affinity (``os.cpu_count()`` without one), and no
    more than a container's CPU quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_limit(root)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def available_memory_bytes(root: Path = CGROUP) -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux), and no more than what is left under a
    container's memory limit; None where neither can be read."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        available = None
    free = _cgroup_memory_free(root)
    if free is None:
        return available
    return free if available is None else min(available, free)


def worker_processes(setting: str) -> int:
    """``WORKER_PROCESSES``: ``auto`` (one per usable core) or a number in 1..``MAX_PROCESSES``.

    Raises:
        ValueError: any other value, naming the setting and the rule.
    """
    text = setting.strip().lower()
    if text == "auto":
        return min(usable_cores(), MAX_PROCESSES)
    if not text.isdigit() or not 1 <= int(text) <= MAX_PROCESSES:
        raise ValueError(f"WORKER_PROCESSES: must be auto or a whole number from 1 to {MAX_PROCESSES}, got {setting!r}")
    return int(text)


def cached_cases(setting: str, processes: int, memory_bytes: int | None = None) -> int:
    """``WORKER_CACHED_CASES`` for one of ``processes`` processes: ``auto`` (module docstring;
    ``memory_bytes`` defaults to ``available_memory_bytes()``, ``MIN_CACHED_CASES`` when unknown)
    or a number in ``MIN_CACHED_CASES // 10``..``MAX_CACHED_CASES * 10``.

    Raises:
        ValueError: any other value, naming the setting and the rule.
    """
    text = setting.strip().lower()
    if text != "auto":
        low, high = MIN_CACHED_CASES // 10, MAX_CACHED_CASES * 10
        if not text.isdigit() or not low <= int(text) <= high:
            raise ValueError(f"WORKER_CACHED_CASES: must be auto or a whole number from {low} to {high}, got {setting!r}")
        return int(text)
    memory = available_memory_bytes() if memory_bytes is None else memory_bytes
    if memory is None:
        return MIN_CACHED_CASES
    share = int(memory * MEMORY_SHARE / max(processes, 1) / CASE_MEMORY_BYTES)
    return max(MIN_CACHED_CASES, min(MAX_CACHED_CASES, share))
