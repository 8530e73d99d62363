"""Worker sizing from the machine (``ops.sizing``): processes per core, cache from memory."""

import pytest

from collections_domain.ops import sizing
from collections_domain.ops.settings import Settings


def test_auto_cache_shares_half_the_memory_between_the_processes():
    gib = 1024 ** 3
    # 8 GiB available, 2 processes: 2 GiB each at 150 KB a case.
    assert sizing.cached_cases("auto", 2, memory_bytes=8 * gib) == int(8 * gib * 0.5 / 2 / (150 * 1024))
    assert sizing.cached_cases("auto", 1, memory_bytes=64 * 1024 ** 2) == sizing.MIN_CACHED_CASES  # small box
    assert sizing.cached_cases("auto", 1, memory_bytes=1024 * gib) == sizing.MAX_CACHED_CASES
    assert sizing.cached_cases("20000", 4) == 20_000


def test_auto_processes_is_one_per_usable_core():
    assert sizing.worker_processes("auto") == min(sizing.usable_cores(), sizing.MAX_PROCESSES)
    assert sizing.worker_processes(" 3 ") == 3


@pytest.mark.parametrize(("field", "value"), [("worker_processes", "0"), ("worker_processes", "65"),
                                              ("worker_processes", "two"), ("worker_cached_cases", "10"),
                                              ("worker_cached_cases", "-1")])
def test_bad_sizes_are_refused_naming_the_setting(field, value):
    with pytest.raises(ValueError, match=field.upper()):
        Settings(**{field: value})


def test_a_containers_limits_bound_the_cores_and_the_memory(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 cores
    (tmp_path / "memory.max").write_text(str(2 * 1024 ** 3))
    (tmp_path / "memory.current").write_text(str(512 * 1024 ** 2))
    assert sizing.usable_cores(tmp_path) == min(2, sizing.usable_cores(tmp_path / "none"))
    assert sizing.available_memory_bytes(tmp_path) <= 1536 * 1024 ** 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert sizing.usable_cores(tmp_path) == sizing.usable_cores(tmp_path / "none")
    assert sizing.available_memory_bytes(tmp_path) == sizing.available_memory_bytes(tmp_path / "none")
