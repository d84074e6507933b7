"""Model loading: imports serialised across threads, quick retries, the next attempt shown."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from imgdex.models import DescriberSlot
from imgdex.plugins import PluginRecord
from imgdex.providers import Describer
from imgdex.testing import ColorEmbedder, ToyPlugin, make_config

from .conftest import wait_for

# Several slots load at once in worker threads, each provider importing a different name
# from transformers the way the bundled plugins do. transformers 5.x resolves these
# lazily without a lock. Each round starts from a freshly imported transformers (torch,
# the slow part, stays imported), in a fresh interpreter.
RACE = """
import sys, threading
import imgdex.models.lifecycle
from imgdex.models import DescriberSlot
from imgdex.plugins import PluginRecord
from imgdex.providers import Describer

NAMES = ["AutoModel", "AutoTokenizer", "AutoProcessor", "AutoModelForImageTextToText",
         "AutoConfig", "AutoImageProcessor"]

class Importing(Describer):
    model = "none"
    def __init__(self, name):
        self.method = "m_" + name.lower()
        self.name = name
        self.imports = ("transformers:" + name,)
    def load(self):
        exec("from transformers import " + self.name)
    def describe_images(self, images):
        return []

record = PluginRecord(name="race", module="race")
errors = []
for _ in range(int(sys.argv[1])):
    for name in [m for m in sys.modules if m.split(".")[0] == "transformers"]:
        del sys.modules[name]
    imgdex.models.lifecycle._imported.clear()  # the core's memo of what it imported
    slots = [DescriberSlot(record, Importing(n), retry_after=600) for n in NAMES]
    barrier = threading.Barrier(len(slots))
    def run(slot):
        barrier.wait()
        try:
            slot.ensure_loaded()
        except Exception as exc:
            errors.append(str(exc))
    threads = [threading.Thread(target=run, args=(s,)) for s in slots]
    for t in threads: t.start()
    for t in threads: t.join()
print("\\n".join(errors))
sys.exit(1 if errors else 0)
"""


@pytest.mark.slow
def test_concurrent_loads_never_race_on_lazy_imports() -> None:
    # Without the core's serial imports about half the rounds fail.
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", RACE, "6"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


class FailsOnce(Describer):
    """Raises `error` on the first load, then loads."""

    model = "none"
    method = "flaky"

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error
        self.loads = 0

    def load(self) -> None:
        self.loads += 1
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def describe_images(self, images: Any) -> list[str]:
        return ["" for _ in images]


def _slot(error: Exception) -> DescriberSlot:
    return DescriberSlot(PluginRecord(name="p", module="p"), FailsOnce(error), retry_after=600)


def test_a_failure_outside_the_model_is_retried_within_seconds() -> None:
    # An import race as transformers reports it, wrapped by the plugin as plugins do.
    cause = ImportError("cannot import name 'AutoModel' from 'transformers'")
    wrapped = RuntimeError("model could not be loaded")
    wrapped.__cause__ = cause
    slot = _slot(wrapped)
    with pytest.raises(Exception, match="could not be loaded"):
        slot.ensure_loaded()
    assert slot.state == "failed"
    assert slot.retry_in is not None and slot.retry_in <= 1.0
    assert slot.next_attempt_at is not None
    due = datetime.fromisoformat(slot.next_attempt_at).timestamp()
    assert abs(due - time.time()) <= 2.0
    assert not slot.available()
    wait_for(slot.available, timeout=3, what="the quick retry is due")
    slot.ensure_loaded()
    assert slot.state == "ready" and slot.retry_in is None and slot.next_attempt_at is None


def test_a_model_failure_waits_for_the_full_back_off() -> None:
    slot = _slot(OSError("org/model is not in the local cache and the hub is offline"))
    with pytest.raises(Exception, match="hub is offline"):
        slot.ensure_loaded()
    assert slot.retry_in is not None and slot.retry_in > 590
    # A missing package is about the installation, not a race: no quick retry either.
    slot = _slot(ModuleNotFoundError("No module named 'transformers'"))
    with pytest.raises(Exception, match="transformers"):
        slot.ensure_loaded()
    assert slot.retry_in is not None and slot.retry_in > 590


class RacyColor(ColorEmbedder):
    """Fails its first load as a lazy import race does, then loads."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def load(self) -> None:
        if self.failures:
            self.failures -= 1
            raise AttributeError("module 'transformers' has no attribute 'AutoModel'")
        super().load()


class Missing(ColorEmbedder):
    def __init__(self) -> None:
        super().__init__("toy_missing_v1")

    def load(self) -> None:
        raise OSError("weights not found")


def test_the_server_reloads_quickly_and_reports_the_next_attempt(tmp_path: Any) -> None:
    from imgdex.api import create_app

    config = make_config(tmp_path / "data", worker={"retry_load_after": 600})
    racy, missing = RacyColor(), Missing()
    plugins = {"racy": ToyPlugin(racy), "missing": ToyPlugin(missing)}
    app = create_app(config, plugins=plugins, entry_points=False, preload=True)
    with TestClient(app) as client:
        # Loaded by the server itself within seconds, with no job or search asking.
        wait_for(
            lambda: any(
                m["name"] == "toy_color_v1" and m["state"] == "ready"
                for m in client.get("/health").json()["models"]
            ),
            timeout=10,
            what="the racy model reloaded",
        )
        health = {m["name"]: m for m in client.get("/health").json()["models"]}
        assert health["toy_color_v1"]["next_attempt_at"] is None
        failed = health["toy_missing_v1"]
        assert failed["state"] == "failed" and "weights not found" in failed["error"]
        assert 500 < failed["retry_in"] <= 600
        due = datetime.fromisoformat(failed["next_attempt_at"]).timestamp()
        assert abs(due - (time.time() + failed["retry_in"])) < 5
        indexes = {ix["index"]: ix for ix in client.get("/api/indexes").json()["indexes"]}
        assert indexes["toy_missing_v1"]["next_attempt_at"] == failed["next_attempt_at"]
        assert 500 < indexes["toy_missing_v1"]["retry_in"] <= 600
        assert indexes["toy_color_v1"]["retry_in"] is None
    assert np.isfinite(racy.dimension)
