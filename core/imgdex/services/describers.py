"""A describer routed across its service targets: ``POST /describe`` on model services
(``imgdex serve-model`` of a plugin with describers), or the plugin's describer in this
process, with the routing, health checks and failover of `imgdex.services.routing`.

A remote target must run the describer's method with the same model (its ``/health``
lists its describers), and every answer is checked: one description per image, tags (if
any) one list of strings per image, the same method and model. Anything else is a failure
of that service (it fails over, and three in a row take the service down), never of the
core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from imgdex.config import ServiceConfig
from imgdex.providers import Caption, Describer, as_caption
from imgdex.services.client import (
    Endpoint,
    HttpService,
    InProcess,
    MismatchError,
    Served,
    TargetError,
)
from imgdex.services.protocol import DescribeReply
from imgdex.services.routing import Router, ServiceTarget

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["DescriberBackend", "DescriberClient", "InProcessDescriber", "RoutingDescriber"]


class DescriberBackend(Endpoint, Protocol):
    """The seam a describing router calls: a remote service or the in-process describer."""

    def check(self) -> Served: ...

    def describe(self, images: Sequence[Image]) -> tuple[list[Caption], Served]: ...


class InProcessDescriber(InProcess[Describer]):
    """The plugin's own describer in this process."""

    @property
    def name(self) -> str:
        return f"describer {self.provider.method} (in-process)"

    def _served(self) -> Served:
        return Served(self.provider.model, None, None, self.provider.method)

    def describe(self, images: Sequence[Image]) -> tuple[list[Caption], Served]:
        served = self.check()
        with self._infer_lock:
            out = self.provider.describe_images(images)
        if not isinstance(out, list | tuple) or len(out) != len(images):
            raise TargetError(f"the describer answered {len(out)} captions for {len(images)}")
        try:
            return [as_caption(value) for value in out], served
        except TypeError as exc:
            raise TargetError(str(exc)) from None


class DescriberClient(HttpService):
    """A client of one describing service: ``POST /describe?method=``."""

    def __init__(self, config: ServiceConfig, method: str) -> None:
        super().__init__(config, {"method": method})
        self.method = method

    def check(self) -> Served:
        """``GET /health``: up, and running this describer with a model it names."""
        reply = self.health()
        mine = [d for d in reply.describers if d.method == self.method]
        if not mine:
            offered = sorted(str(d.method) for d in reply.describers)
            raise MismatchError(
                f"it runs no describer {self.method!r} (its describers: {offered or 'none'})"
            )
        if mine[0].model is None:
            raise MismatchError("its /health does not say which model the describer runs")
        return Served(mine[0].model, None, None, self.method)

    def describe(self, images: Sequence[Image]) -> tuple[list[Caption], Served]:
        reply = self.post_images("/describe", images, DescribeReply)
        return captions_of(reply, len(images)), Served(reply.model, None, None, reply.method)


def captions_of(reply: DescribeReply, n: int) -> list[Caption]:
    """The `Caption`s of a ``/describe`` answer for `n` images, or `TargetError` why not
    (the types were already checked by the strict decode)."""
    if len(reply.descriptions) != n:
        raise TargetError(f"/describe answered {len(reply.descriptions)} descriptions for {n}")
    tags = reply.tags if reply.tags is not None else [[] for _ in range(n)]
    if len(tags) != n:
        raise TargetError(f"/describe answered tags for {len(tags)} images instead of {n}")
    return [
        Caption(text.strip(), tuple(t)) for text, t in zip(reply.descriptions, tags, strict=True)
    ]


class RoutingDescriber(Router[DescriberBackend, list[Caption]], Describer):
    """The describer as the core sees it; each call goes to one of its targets."""

    def __init__(
        self, plugin_describer: Describer, targets: list[ServiceTarget[DescriberBackend]]
    ) -> None:
        d = plugin_describer
        batch = min((p.config.batch_size for p in targets), default=32)
        super().__init__(f"describer {d.method}", targets, batch)
        # Registration loads no weights: the plugin's describer names the method and model.
        self.method, self.model, self.empty_ok = d.method, d.model, d.empty_ok

    def where(self) -> tuple[str | None, str | None]:
        return None, self.method

    def load(self) -> None:
        self.find_target()

    def describe_images(self, images: Sequence[Image]) -> list[Caption]:
        if not images:
            return []
        return self.route(images, lambda p, chunk: p.backend.describe(chunk))

    def _join(self, parts: list[list[Caption]]) -> list[Caption]:
        return [caption for part in parts for caption in part]

    def _probe(
        self, target: ServiceTarget[DescriberBackend], *, trial: bool, establish: bool
    ) -> Served:
        served = target.backend.check()
        self._verify_served(served)
        if trial:
            from PIL import Image as PILImage

            image = PILImage.new("RGB", (32, 32), (128, 128, 128))
            _, served = target.backend.describe([image])
            self._verify_served(served)
        return served

    def _verify(
        self, target: ServiceTarget[DescriberBackend], out: list[Caption], served: Served, n: int
    ) -> None:
        if len(out) != n:  # the backends check this; a router never stores a short batch
            raise TargetError(f"answered {len(out)} captions for {n} images")
        self._verify_served(served)

    def _verify_served(self, served: Served) -> None:
        """Raise `MismatchError` unless the target runs this method with this model."""
        problems = []
        if served.index != self.method:
            problems.append(f"method {served.index!r}")
        if served.model != self.model:
            problems.append(f"model {served.model!r}")
        if problems:
            raise MismatchError(
                f"model mismatch: it describes with {', '.join(problems)} but describer "
                f"{self.method} is {self.model}"
            )
