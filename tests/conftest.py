"""Shared fixtures for the core's API and integration tests.

The generic fixtures (``imgdex_config``, ``imgdex_app_factory``, ``imgdex_client``) come
from `imgdex.testing`, the pytest plugin the core ships for plugin authors too.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ADMIN = {"Authorization": "Bearer test-admin-token"}
