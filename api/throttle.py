"""Throttling of failed authentication: per client address and per API key id.

Each failed authentication (a key that is malformed, unknown, revoked or wrong) is counted
against the client's address and, when the key names one (``lck_<id>_...``), its key id, in a
sliding window of ``WINDOW_SECONDS``. Once either has ``limit`` failures in the window, every
request from that address, or presenting that key id, answers 429 with ``Retry-After`` (the
seconds until the oldest failure leaves the window) without reaching the database, whether
its key is right or not: otherwise a 429 would tell a guesser which answers were wrong.

The counts are held in memory, per API process: with several API processes behind a load
balancer, each allows ``limit`` failures a window.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict, deque

#: The sliding window failures are counted in, seconds.
WINDOW_SECONDS = 60.0

#: At most this many addresses and key ids are tracked (the least recently failing are forgotten
#: first), so that a flood of made-up key ids cannot grow the process without bound.
MAX_TRACKED = 10_000

#: The key id of a presented key, even when the rest of it is malformed.
_KEY_ID = re.compile(r"^lck_([0-9a-f]{16})_")


def key_id_of(presented: str) -> str | None:
    """The 16-hex-digit key id a presented key names (``lck_<id>_...``), or ``None``."""
    match = _KEY_ID.match(presented or "")
    return match.group(1) if match else None


class FailureThrottle:
    """Counts failures per name (``"addr:<ip>"``, ``"key:<id>"``) in a sliding window.

    ``limit``: failures allowed in ``window`` seconds; ``clock``: a monotonic clock in seconds
    (for tests). Thread-safe.
    """

    def __init__(self, limit: int, window: float = WINDOW_SECONDS, clock=time.monotonic,
                 max_tracked: int = MAX_TRACKED):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_tracked = max_tracked
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> deque[float] | None:
        times = self._failures.get(name)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[name]
            return None
        return times

    def retry_after(self, *names: str) -> int | None:
        """Whole seconds until every name in ``names`` is below the limit again, or ``None``
        when none of them has reached it."""
        now = self.clock()
        waits = []
        with self._lock:
            for name in names:
                times = self._recent(name, now)
                if times is not None and len(times) >= self.limit:
                    waits.append(times[-self.limit] + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def fail(self, *names: str) -> None:
        """Count one failure against each name in ``names``."""
        now = self.clock()
        with self._lock:
            for name in names:
                times = self._recent(name, now) or deque(maxlen=self.limit)
                times.append(now)
                self._failures[name] = times
                self._failures.move_to_end(name)
            while len(self._failures) > self.max_tracked:
                self._failures.popitem(last=False)


def names_of(address: str | None, presented: str | None) -> list[str]:
    """What a request's failures count against: its address and the key id it names."""
    names = [f"addr:{address or 'unknown'}"]
    key_id = key_id_of(presented or "")
    if key_id:
        names.append(f"key:{key_id}")
    return names
