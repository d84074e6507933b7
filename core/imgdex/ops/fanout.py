"""Embedding one new item in every enabled index at once, on the request path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from imgdex.errors import ImgdexError, reason_of
from imgdex.models import EmbedderSlot
from imgdex.pools import Pools
from imgdex.schemas import EmbeddingError, EmbeddingInfo
from imgdex.status import hide_model_path, model_name

__all__ = ["embedding_info", "fan_out"]

log = logging.getLogger(__name__)


def embedding_info(slot: EmbedderSlot) -> EmbeddingInfo:
    return EmbeddingInfo(
        model=model_name(slot.provider.model), index=slot.name, dimension=slot.dimension or 0
    )


async def fan_out(
    pools: Pools,
    slots: list[EmbedderSlot],
    fn: Callable[[EmbedderSlot], None],
    wake: Callable[[], None],
) -> tuple[list[EmbeddingInfo], list[EmbeddingError]]:
    """Run `fn` for every slot concurrently in the model pool; what failed is reported
    per index and left to the background workers (`wake` tells them)."""

    def call(slot: EmbedderSlot) -> None:
        # Never wait for a model that is loading: what it misses is filled in by the
        # workers once it is ready (the image stays `pending` until then).
        slot.check_not_loading()
        fn(slot)

    outcomes = await asyncio.gather(
        *(pools.run_model(call, slot) for slot in slots), return_exceptions=True
    )
    done, failed = [], []
    for slot, outcome in zip(slots, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, ImgdexError):
                log.error("%s: %s", slot.name, outcome, exc_info=outcome)
            message = outcome.detail if isinstance(outcome, ImgdexError) else str(outcome)
            message = reason_of(message, slot.name)  # `index` names it already
            failed.append(
                EmbeddingError(
                    index=slot.name,
                    model=model_name(slot.provider.model),
                    error=hide_model_path(message, slot.provider.model) or message,
                )
            )
        else:
            done.append(embedding_info(slot))
    if failed:
        wake()  # the workers retry what failed
    return done, failed
