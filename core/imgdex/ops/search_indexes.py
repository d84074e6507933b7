"""Which indexes a search asks, or the 4xx its request earns.

Checked before anything is embedded or decoded, so a bad option costs nothing: the
indexes named (``index``) must exist, be enabled and answer the query's modality, and
every index in ``weights`` must exist. Without ``index``, every enabled index that can
answer is asked; a text search asks the keyword index too.
"""

from __future__ import annotations

from imgdex import keyword_index
from imgdex.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from imgdex.models import EmbedderSlot
from imgdex.registry import Registry
from imgdex.schemas import SearchOptions

__all__ = ["check_weights", "text_indexes", "vector_indexes"]


def check_weights(registry: Registry, options: SearchOptions) -> None:
    # A misspelt index in `weights` would otherwise just weigh nothing, silently.
    known = {*registry.embedders, keyword_index.NAME}
    unknown = sorted(set(options.weights or ()) - known)
    if unknown:
        raise BadRequest(
            f"weights: unknown index {', '.join(map(repr, unknown))} (available: {sorted(known)})",
            code="unknown_index",
        )


def text_indexes(
    registry: Registry, wanted: str | list[str] | None
) -> tuple[list[EmbedderSlot], bool]:
    """The vector indexes a text search asks, and whether the keyword index answers
    too (it does unless `wanted` names only vector indexes)."""
    names = [wanted] if isinstance(wanted, str) else wanted
    if names is None:
        return vector_indexes(registry, "text", None, none_ok=True), True
    rest = [n for n in names if n != keyword_index.NAME]
    if rest or not names:  # an empty list gets its 400 from vector_indexes
        return vector_indexes(registry, "text", rest), len(rest) < len(names)
    return [], True


def vector_indexes(
    registry: Registry, modality: str, wanted: str | list[str] | None, none_ok: bool = False
) -> list[EmbedderSlot]:
    """The vector indexes that answer `modality` queries: those `wanted`, or every
    enabled one. `none_ok`: no enabled vector index is fine (the keyword index answers)."""
    if wanted is None:
        slots = registry.embedder_slots(query=modality)
        if not slots and not none_ok:
            raise ServiceUnavailable(
                f"no enabled index can answer {modality} queries (install or enable a "
                "model plugin: see `imgdex plugins`)",
                code="no_index",
            )
        return slots
    names = [wanted] if isinstance(wanted, str) else list(dict.fromkeys(wanted))
    if not names:
        raise BadRequest("index: give one index name or a non-empty list", code="bad_index")
    slots = []
    for name in names:
        slot = registry.embedders.get(name)
        if name == keyword_index.NAME:
            raise BadRequest(
                f"index {name!r} cannot answer {modality} queries (it answers: ['text'])",
                code="index_cannot_answer",
            )
        if slot is None:
            known = sorted({*registry.embedders, keyword_index.NAME})
            raise NotFound(f"unknown index {name!r} (available: {known})", code="unknown_index")
        if not registry.plugin_enabled(slot.plugin):
            raise Conflict(
                f"index {name!r} is disabled (plugin {slot.plugin.name})", code="index_disabled"
            )
        if modality not in slot.provider.query_modalities:
            raise BadRequest(
                f"index {name!r} cannot answer {modality} queries "
                f"(it answers: {sorted(slot.provider.query_modalities)})",
                code="index_cannot_answer",
            )
        slots.append(slot)
    return slots
