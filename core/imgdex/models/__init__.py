"""Models in the core: one lifecycle (`lifecycle`), the slots around plugin providers
(`slots`) and the one check every vector passes (`vectors`)."""

from imgdex.models.lifecycle import (
    FAILURES_BEFORE_BACKOFF,
    IMPORT_LOCK,
    QUICK_RETRIES,
    FailureStreak,
    Lifecycle,
    import_for,
    import_serially,
    transient,
)
from imgdex.models.slots import (
    DescriberSlot,
    EmbedderSlot,
    ModelSlot,
    OpenIndex,
    RoutedSlots,
    build_embedder_slot,
    image_key,
)
from imgdex.models.vectors import BadVectors, as_vectors

__all__ = [
    "FAILURES_BEFORE_BACKOFF",
    "IMPORT_LOCK",
    "QUICK_RETRIES",
    "BadVectors",
    "DescriberSlot",
    "EmbedderSlot",
    "FailureStreak",
    "Lifecycle",
    "ModelSlot",
    "OpenIndex",
    "RoutedSlots",
    "as_vectors",
    "build_embedder_slot",
    "image_key",
    "import_for",
    "import_serially",
    "transient",
]
