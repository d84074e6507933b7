"""Routing one index's calls across its service targets, with health state and failover.

An index whose plugin is named by entries under ``services:`` is served by a
`RoutingEmbedder` in place of the plugin's own embedder. Each of those entries is one
`ServiceTarget` of the index: a remote model service (``imgdex serve-model`` or any
server of the seed's protocol) or, only when a service says ``endpoint: in-process``,
the plugin's model in this process. A call goes to the highest-priority usable target,
spread by weight (smooth weighted round robin) across equal priorities, passes over
targets at their rate limit, and fails over to the next on error or timeout; when every
target fails it raises `NoModelService` and the work stays pending for the enricher.

Vectors of another model never reach an index: a remote target is checked (model,
version, dimension, index name) before its first use and after every recovery, and each
response is checked again; a mismatch takes the target out with the reason. Three
failures in a row take a target down; a passing re-check brings it back.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from imgdex.config import ServiceConfig
from imgdex.errors import ServiceUnavailable, detail_of
from imgdex.providers import Embedder
from imgdex.services.client import (
    IN_PROCESS,
    Backend,
    InputRejected,
    MismatchError,
    RateLimiter,
    Served,
    TargetError,
)

if TYPE_CHECKING:
    from PIL.Image import Image


__all__ = [
    "FAILURES_TO_DISABLE",
    "NoModelService",
    "RoutingEmbedder",
    "ServiceTarget",
    "TargetState",
]

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
FAILURES_TO_DISABLE = 3
TargetState = Literal["unchecked", "ok", "down", "mismatch"]


class NoModelService(ServiceUnavailable):
    """No target of an index could serve the call; the work is retried later."""

    code = "no_model_service"


@dataclass(eq=False)
class ServiceTarget:
    """One target of one index: its backend, switches, state and counters."""

    service: str
    plugin: str
    config: ServiceConfig
    backend: Backend
    limiter: RateLimiter
    enabled: bool
    disabled_reason: str | None = None
    state: TargetState = "unchecked"
    reason: str | None = None
    failures: int = 0  # in a row
    errors: int = 0
    requests: int = 0
    items: int = 0
    latency: float | None = None
    checked_at: float | None = None
    served: Served | None = None
    current: float = 0.0  # smooth weighted round robin

    @property
    def in_process(self) -> bool:
        return self.backend.url == IN_PROCESS

    @property
    def url(self) -> str:
        """Where the target answers: the service's base URL, or ``in-process``."""
        return self.backend.url


Call = Callable[[ServiceTarget, Sequence[Any]], tuple[Vectors, Served]]


class RoutingEmbedder(Embedder):
    """The index's embedder as the core sees it; each call goes to one of its targets."""

    def __init__(
        self,
        plugin_embedder: Embedder,
        targets: list[ServiceTarget],
        expected_dimension: Callable[[], int | None],
    ) -> None:
        e = plugin_embedder
        # Registration loads no weights: the plugin's embedder names the index and model.
        self.index_name, self.model, self.version = e.index_name, e.model, e.version
        self.stores, self.query_modalities, self.metric = e.stores, e.query_modalities, e.metric
        self.targets = sorted(targets, key=lambda p: (p.config.priority, p.service))
        self._expected_dimension = expected_dimension
        self._dimension: int | None = None
        self._lock = threading.Lock()
        self._batch = min((p.config.batch_size for p in targets), default=32)

    @property
    def dimension(self) -> int | None:
        return self._dimension

    def load(self) -> None:
        """Find one target that works and serves this index's model (no weights are
        loaded in-process while a remote service of higher priority is fine)."""
        reasons = []
        for target in self.targets:
            if not target.enabled:
                continue
            if target.state == "ok" and self._dimension is not None:
                return
            if self.check(target, establish=True):
                return
            reasons.append(f"{target.service}: {target.reason}")
        raise NoModelService(
            f"{self.index_name}: no model service is available: "
            + ("; ".join(reasons) or "every target is disabled")
        )

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        return self._route(list(images), lambda p, chunk: p.backend.embed_images(chunk))

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        return self._route(list(texts), lambda p, chunk: p.backend.embed_texts(chunk, query))

    # --- checks -----------------------------------------------------------------------

    def check(self, target: ServiceTarget, *, trial: bool = False, establish: bool = False) -> bool:
        """Verify a target (reachable, same model) and record the outcome. `trial` also
        runs one tiny embedding, proving that a target coming back answers in time.
        `establish` (from `load`, which goes in priority order) lets a target define the
        dimension of an index that does not exist yet."""
        started = time.perf_counter()
        try:
            served = target.backend.check()
            self._verify(target, served, establish=establish)
            if trial or (establish and self._dimension is None):
                # Also how the size is learnt from a service whose /health omits it.
                served = self._trial(target)
                self._verify(target, served, establish=establish)
        except TargetError as exc:
            self._failed(target, exc)
            return False
        except Exception as exc:
            self._failed(target, TargetError(detail_of(exc)))
            return False
        self._succeeded(target, time.perf_counter() - started, served, checked=True)
        return True

    def _trial(self, target: ServiceTarget) -> Served:
        if self.stores == "image":
            from PIL import Image as PILImage

            image = PILImage.new("RGB", (32, 32), (128, 128, 128))
            vectors, served = target.backend.embed_images([image])
        else:
            vectors, served = target.backend.embed_texts(["imgdex health check"], False)
        return Served(served.model, served.version, int(vectors.shape[1]), served.index)

    def _verify(
        self,
        target: ServiceTarget,
        served: Served,
        width: int | None = None,
        establish: bool = False,
    ) -> None:
        """Raise `MismatchError` unless `served` is this index's model, version and size."""
        problems = []
        if served.model != self.model:
            problems.append(f"model {served.model!r}")
        if served.version is not None and served.version != self.version:
            problems.append(f"version {served.version!r}")
        if served.index is not None and served.index != self.index_name:
            problems.append(f"index {served.index!r}")
        dimension = width or served.dimension
        with self._lock:
            expected = self._dimension or self._expected_dimension()
            if dimension is not None and expected is not None and dimension != expected:
                problems.append(f"{dimension}-d vectors")
            if not problems and establish and self._dimension is None:
                self._dimension = expected or dimension
        if problems:
            raise MismatchError(
                f"model mismatch: it serves {', '.join(problems)} but index {self.index_name} "
                f"holds {self.model} v{self.version}"
                + (f" ({expected}-d)" if expected else "")
                + "; vectors of different models are never mixed"
            )

    def _succeeded(
        self, p: ServiceTarget, seconds: float, served: Served, *, checked: bool = False, n: int = 0
    ) -> None:
        with self._lock:
            back = p.state in ("down", "mismatch")
            p.state, p.reason, p.failures = "ok", None, 0
            p.latency, p.served = seconds, served
            if checked:
                p.checked_at = time.time()
            else:
                p.requests += 1
                p.items += n
        if back:
            log.warning("model service %s (%s) is healthy again", p.service, self.index_name)

    def _failed(self, p: ServiceTarget, exc: TargetError) -> None:
        reason = str(exc)
        with self._lock:
            p.errors += 1
            p.checked_at = time.time()
            p.reason = reason
            if isinstance(exc, MismatchError):
                newly = p.state != "mismatch"
                p.state = "mismatch"
                p.failures = 0
            else:
                p.failures += 1
                newly = p.failures >= FAILURES_TO_DISABLE and p.state != "down"
                if newly or p.state == "down":
                    p.state = "down"
        if not newly:
            return
        if p.state == "mismatch":
            log.error("model service %s refused for %s: %s", p.service, self.index_name, reason)
        else:
            log.warning(
                "model service %s (%s) disabled after %d failures in a row: %s; it is "
                "re-checked in the background",
                p.service,
                self.index_name,
                FAILURES_TO_DISABLE,
                reason,
            )

    # --- routing ----------------------------------------------------------------------

    def call_order(self) -> list[ServiceTarget]:
        """Usable targets in the order a call tries them (advances the round robin)."""
        with self._lock:
            usable = [p for p in self.targets if p.enabled and p.state in ("ok", "unchecked")]
            order: list[ServiceTarget] = []
            for _, group_iter in itertools.groupby(usable, key=lambda p: p.config.priority):
                group = list(group_iter)
                total = sum(p.config.weight for p in group)
                if total > 0:
                    for p in group:
                        p.current += p.config.weight
                    first = max(group, key=lambda p: p.current)
                    first.current -= total
                    group.remove(first)
                    group.sort(key=lambda p: -p.config.weight)
                    group.insert(0, first)
                order += group
            return order

    def usable(self) -> bool:
        return any(p.enabled and p.state in ("ok", "unchecked") for p in self.targets)

    def set_enabled(self, service: str, enabled: bool) -> bool:
        """Admin switch of one service's target; False if it has none here."""
        found = False
        with self._lock:
            for p in self.targets:
                if p.service == service:
                    found = True
                    p.enabled = enabled
                    p.disabled_reason = None if enabled else "disabled by an admin"
                    if enabled:
                        # Checked again before its next use: it may have changed meanwhile.
                        p.state, p.failures = "unchecked", 0
        return found

    def snapshot(self) -> list[ServiceTarget]:
        """Copies of the targets, consistent with each other (for reports)."""
        with self._lock:
            return [replace(p) for p in self.targets]

    def _route(self, items: list[Any], call: Call) -> Vectors:
        if not items:
            return np.empty((0, self._dimension or 0), dtype=np.float32)
        parts = [
            self._route_one(items[i : i + self._batch], call)
            for i in range(0, len(items), self._batch)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _route_one(self, chunk: list[Any], call: Call) -> Vectors:
        reasons: dict[str, str] = {}
        rejected: list[str] = []
        limited: list[tuple[float, ServiceTarget]] = []

        def attempt(target: ServiceTarget) -> Vectors | None:
            try:
                vectors = self._attempt(target, chunk, call)
            except InputRejected as exc:
                rejected.append(f"{target.service}: {exc}")
                return None
            if vectors is None:
                reasons[target.service] = str(target.reason)
            return vectors

        for target in self.call_order():
            wait = target.limiter.try_acquire()
            if wait > 0:
                limited.append((wait, target))
            elif (vectors := attempt(target)) is not None:
                return vectors
        # Everything usable failed or is at its rate limit: wait for the first request
        # slot that frees up within that target's timeout, rather than fail at once.
        for wait, target in sorted(limited, key=lambda t: t[0]):
            if not rejected and wait <= target.config.timeout:
                time.sleep(wait)
                if target.limiter.try_acquire() == 0:
                    if (vectors := attempt(target)) is not None:
                        return vectors
                    continue
            limit = target.config.rate_limit
            reasons[target.service] = f"rate limit of {limit} requests/minute reached"
        if rejected:
            # Not NoModelService: the index stays up and the enricher sets the item aside.
            raise ServiceUnavailable(
                f"{self.index_name}: the model service refused the input: {'; '.join(rejected)}",
                code="input_rejected",
            )
        for p in self.targets:
            if p.service not in reasons:
                reasons[p.service] = (
                    f"{p.state}: {p.reason}" if p.enabled else str(p.disabled_reason)
                )
        raise NoModelService(
            f"{self.index_name}: no model service could serve the request: "
            + "; ".join(f"{sid}: {why}" for sid, why in reasons.items())
        )

    def _attempt(self, target: ServiceTarget, chunk: list[Any], call: Call) -> Vectors | None:
        if target.state == "unchecked" and not self.check(target):
            return None
        started = time.perf_counter()
        try:
            vectors, served = call(target, chunk)
            self._verify(target, served, width=int(vectors.shape[1]))
        except InputRejected:
            with self._lock:
                target.errors += 1
            raise
        except TargetError as exc:
            self._failed(target, exc)
            return None
        except Exception as exc:
            self._failed(target, TargetError(detail_of(exc)))
            return None
        self._succeeded(target, time.perf_counter() - started, served, n=len(chunk))
        return vectors

    def close(self) -> None:
        for target in self.targets:
            target.backend.close()
