"""Shared fixtures for the core's API and integration tests.

The generic fixtures (``imgdex_config``, ``imgdex_app_factory``, ``imgdex_client``) come
from `imgdex.testing`, the pytest plugin the core ships for plugin authors too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ADMIN = {"Authorization": "Bearer test-admin-token"}


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """Poll `predicate` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not reached in {timeout} s: {what}")
