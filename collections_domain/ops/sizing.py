"""How many worker processes a host runs and how many cases each keeps cached, from the machine.

One Python worker process uses one core (the GIL): a host runs one per core it may use
(``WORKER_PROCESSES=auto``). Each process keeps up to ``WORKER_CACHED_CASES`` cases in its
workflow cache; a case evicted from the cache is replayed from its history on its next task,
which is what made a 09:00 herd slow (issue 14: 48 % of its workflow tasks replayed). ``auto``
gives each process an equal share of half the memory available when it starts, at
``CASE_MEMORY_BYTES`` a cached case (``python -m bench --only memory`` measures it), between
``MIN_CACHED_CASES`` and ``MAX_CACHED_CASES``. The README's "Sizing" section says how to size
them for N open cases and H cases due at one instant.
"""

from __future__ import annotations

import os

#: A cached case's memory, with a margin over the bench's per-case slope (unsandboxed workflows).
CASE_MEMORY_BYTES = 150 * 1024
#: The share of the memory available at start that the workflow caches of all processes may use.
MEMORY_SHARE = 0.5
MIN_CACHED_CASES = 1_000
MAX_CACHED_CASES = 100_000
#: The most processes ``WORKER_PROCESSES`` may ask for.
MAX_PROCESSES = 64


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` without one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


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
