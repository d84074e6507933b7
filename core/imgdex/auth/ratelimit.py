"""Failed-login limits per account and per client address (sliding windows, in memory).

In memory is deliberate: limits protect one process's CPU (argon2) and slow guessing;
a restart forgetting them costs an attacker a restart, which they cannot cause.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

__all__ = ["LoginLimiter"]


class LoginLimiter:
    """Counts failures per key in a window; `retry_after` says how long a key must wait."""

    def __init__(self, per_account: int, per_address: int, window: float) -> None:
        self.per_account = per_account
        self.per_address = per_address
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, account: str, address: str) -> int:
        """Seconds until either key may try again; 0 when both may try now."""
        now = time.monotonic()
        with self._lock:
            waits = [
                self._wait(f"user:{account.lower()[:128]}", self.per_account, now),
                self._wait(f"addr:{address}", self.per_address, now),
            ]
        return max(waits)

    def failed(self, account: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"user:{account.lower()[:128]}", f"addr:{address}"):
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 100_000:  # forget quiet keys, bounded memory
                self._prune(now)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{account.lower()[:128]}", None)

    def _wait(self, key: str, limit: int, now: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) < limit:
            return 0
        return max(1, math.ceil(self.window - (now - times[-limit])))

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or now - t[-1] >= self.window]:
            del self._failures[key]
