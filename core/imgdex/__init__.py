"""imgdex: a self-hosted image library server with pluggable embedding models.

Plugin authors need only what is listed here: ``from imgdex import hookimpl, Embedder``.
"""

from imgdex.config import Config, PluginConfig, PluginSettings, load_config
from imgdex.devices import resolve_device
from imgdex.hookspecs import hookimpl
from imgdex.models import import_serially
from imgdex.providers import (
    Caption,
    Describer,
    Embedder,
    IndexBackend,
    IndexLocation,
    Metric,
    Modality,
    VectorIndex,
)

__all__ = [
    "Caption",
    "Config",
    "Describer",
    "Embedder",
    "IndexBackend",
    "IndexLocation",
    "Metric",
    "Modality",
    "PluginConfig",
    "PluginSettings",
    "VectorIndex",
    "hookimpl",
    "import_serially",
    "load_config",
    "resolve_device",
]

__version__ = "0.1.0"
