"""Routing one model's calls across its service targets, with health state and failover.

A model (an index's embedder or a describer) whose plugin is named by entries under
``services:`` is served by a `Router` in place of the plugin's own provider. Each of
those entries is one `ServiceTarget`: a remote model service (``imgdex serve-model``) or,
only when a service says ``endpoint: in-process``, the plugin's model in this process.
A call goes to the highest-priority usable target, spread by weight (smooth weighted
round robin) across equal priorities, passes over targets at their rate limit, and fails
over to the next on error or timeout; when every target fails it raises `NoModelService`
and the work stays pending for the enricher.

What a target must serve is the subclass's to say (`Router._probe`, `Router._verify`):
a target serving another model is taken out with the reason (``mismatch``). Three
failures in a row take a target down; a passing re-check brings it back. Embedders and
describers share everything else here.
"""

from __future__ import annotations

import abc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar

from imgdex.config import ServiceConfig
from imgdex.errors import ServiceUnavailable, detail_of
from imgdex.services.client import (
    IN_PROCESS,
    Endpoint,
    InputRejected,
    MismatchError,
    RateLimiter,
    Served,
    TargetError,
)

__all__ = [
    "FAILURES_TO_DISABLE",
    "NoModelService",
    "Router",
    "ServiceTarget",
    "TargetState",
]

log = logging.getLogger(__name__)

FAILURES_TO_DISABLE = 3
TargetState = Literal["unchecked", "ok", "down", "mismatch"]
T = TypeVar("T")  # what one call answers (vectors, captions)
B = TypeVar("B", bound=Endpoint)  # what a target calls: an embedding or a describing backend


class NoModelService(ServiceUnavailable):
    """No target of a model could serve the call; the work is retried later."""

    code = "no_model_service"


@dataclass(eq=False)
class ServiceTarget(Generic[B]):
    """One target of one model: its backend, switches, state and counters."""

    service: str
    plugin: str
    config: ServiceConfig
    backend: B
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
    def url(self) -> str:
        """Where the target answers: the service's base URL, or ``in-process``."""
        return self.backend.url

    @property
    def in_process(self) -> bool:
        return self.url == IN_PROCESS


Call = Callable[[ServiceTarget[B], list[Any]], tuple[T, Served]]


class Router(abc.ABC, Generic[B, T]):
    """The targets of one model and how calls are spread, checked and failed over."""

    def __init__(self, label: str, targets: list[ServiceTarget[B]], batch: int) -> None:
        self.label = label  # for logs and errors: an index name or ``describer <method>``
        self.targets = sorted(targets, key=lambda p: (p.config.priority, p.service))
        self._lock = threading.Lock()
        self._batch = batch

    # --- what a kind of model says ----------------------------------------------------

    @abc.abstractmethod
    def _probe(self, target: ServiceTarget[B], *, trial: bool, establish: bool) -> Served:
        """Check a target (``/health``, and a tiny real call with `trial`); raise
        `TargetError` (`MismatchError` for another model) unless it can serve."""

    @abc.abstractmethod
    def _verify(self, target: ServiceTarget[B], out: T, served: Served, n: int) -> None:
        """Raise `TargetError` unless one call's answer for `n` items is usable."""

    def _established(self) -> bool:
        """Whether a checked target needs no further check before use (see `load`)."""
        return True

    @abc.abstractmethod
    def _join(self, parts: list[T]) -> T:
        """One answer from the answers of several batches, in order."""

    # --- the shared part --------------------------------------------------------------

    def where(self) -> tuple[str | None, str | None]:
        """``(index, describer method)`` the targets serve, for reports."""
        return self.label, None

    def find_target(self) -> None:
        """Find one target that works and serves this model (nothing is loaded
        in-process while a remote service of higher priority is fine)."""
        reasons = []
        for target in self.targets:
            if not target.enabled:
                continue
            if target.state == "ok" and self._established():
                return
            if self.check(target, establish=True):
                return
            reasons.append(f"{target.service}: {target.reason}")
        raise NoModelService(
            f"{self.label}: no model service is available: "
            + ("; ".join(reasons) or "every target is disabled")
        )

    def check(
        self, target: ServiceTarget[B], *, trial: bool = False, establish: bool = False
    ) -> bool:
        """Verify a target (reachable, same model) and record the outcome. `trial` also
        makes one tiny real call, proving that a target coming back answers in time.
        `establish` (from `find_target`, which goes in priority order) lets a target
        define what the model has not recorded yet (an index's dimension)."""
        started = time.perf_counter()
        try:
            served = self._probe(target, trial=trial, establish=establish)
        except TargetError as exc:
            self._failed(target, exc)
            return False
        except Exception as exc:
            self._failed(target, TargetError(detail_of(exc)))
            return False
        self._succeeded(target, time.perf_counter() - started, served, checked=True)
        return True

    def _succeeded(
        self,
        p: ServiceTarget[B],
        seconds: float,
        served: Served,
        *,
        checked: bool = False,
        n: int = 0,
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
            log.warning("model service %s (%s) is healthy again", p.service, self.label)

    def _failed(self, p: ServiceTarget[B], exc: TargetError) -> None:
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
            log.error("model service %s refused for %s: %s", p.service, self.label, reason)
        else:
            log.warning(
                "model service %s (%s) disabled after %d failures in a row: %s; it is "
                "re-checked in the background",
                p.service,
                self.label,
                FAILURES_TO_DISABLE,
                reason,
            )

    # --- routing ----------------------------------------------------------------------

    def call_order(self) -> list[ServiceTarget[B]]:
        """Usable targets in the order a call tries them (advances the round robin)."""
        with self._lock:
            usable = [p for p in self.targets if p.enabled and p.state in ("ok", "unchecked")]
            order: list[ServiceTarget[B]] = []
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

    def snapshot(self) -> list[ServiceTarget[B]]:
        """Copies of the targets, consistent with each other (for reports)."""
        with self._lock:
            return [replace(p) for p in self.targets]

    def route(self, items: Sequence[Any], call: Call[B, T]) -> T:
        """`call` on one target per batch of `items` (never called with no items)."""
        items = list(items)
        parts = [
            self._route_one(items[i : i + self._batch], call)
            for i in range(0, len(items), self._batch)
        ]
        return parts[0] if len(parts) == 1 else self._join(parts)

    def _route_one(self, chunk: list[Any], call: Call[B, T]) -> T:
        reasons: dict[str, str] = {}
        rejected: list[str] = []
        limited: list[tuple[float, ServiceTarget[B]]] = []
        found: list[T] = []

        def attempt(target: ServiceTarget[B]) -> bool:
            try:
                ok = self._attempt(target, chunk, call, found)
            except InputRejected as exc:
                rejected.append(f"{target.service}: {exc}")
                return False
            if not ok:
                reasons[target.service] = str(target.reason)
            return ok

        for target in self.call_order():
            wait = target.limiter.try_acquire()
            if wait > 0:
                limited.append((wait, target))
            elif attempt(target):
                return found[0]
        # Everything usable failed or is at its rate limit: wait for the first request
        # slot that frees up within that target's timeout, rather than fail at once.
        for wait, target in sorted(limited, key=lambda t: t[0]):
            if not rejected and wait <= target.config.timeout:
                time.sleep(wait)
                if target.limiter.try_acquire() == 0:
                    if attempt(target):
                        return found[0]
                    continue
            limit = target.config.rate_limit
            reasons[target.service] = f"rate limit of {limit} requests/minute reached"
        if rejected:
            # Not NoModelService: the model stays up and the enricher sets the item aside.
            raise ServiceUnavailable(
                f"{self.label}: the model service refused the input: {'; '.join(rejected)}",
                code="input_rejected",
            )
        for p in self.targets:
            if p.service not in reasons:
                reasons[p.service] = (
                    f"{p.state}: {p.reason}" if p.enabled else str(p.disabled_reason)
                )
        raise NoModelService(
            f"{self.label}: no model service could serve the request: "
            + "; ".join(f"{sid}: {why}" for sid, why in reasons.items())
        )

    def _attempt(
        self, target: ServiceTarget[B], chunk: list[Any], call: Call[B, T], found: list[T]
    ) -> bool:
        if target.state == "unchecked" and not self.check(target):
            return False
        started = time.perf_counter()
        try:
            out, served = call(target, chunk)
            self._verify(target, out, served, len(chunk))
        except InputRejected:
            with self._lock:
                target.errors += 1
            raise
        except TargetError as exc:
            self._failed(target, exc)
            return False
        except Exception as exc:
            self._failed(target, TargetError(detail_of(exc)))
            return False
        self._succeeded(target, time.perf_counter() - started, served, n=len(chunk))
        found.append(out)
        return True

    def close(self) -> None:
        for target in self.targets:
            target.backend.close()
