"""The hooks a plugin implements. This module is the plugin author's documentation.

Every hook is a *registration* hook: the plugin is handed a ``register`` callable and
calls it with the provider objects it offers (see `imgdex.providers`). pluggy is
synchronous, so hooks only describe; the core owns loading, concurrency and fan-out.

A plugin is a module (usually its own distribution) listed in the entry-point group
``imgdex``::

    [project.entry-points.imgdex]
    bge = "imgdex_bge"

and it imports nothing from the core but ``from imgdex import hookimpl`` and the bases.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from imgdex.config import PluginSettings
from imgdex.providers import Describer, Embedder, IndexBackend

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("imgdex")
hookimpl = pluggy.HookimplMarker("imgdex")


# --- models -----------------------------------------------------------------------


@hookspec
def register_embedders(register: Callable[[Embedder], None], config: PluginSettings) -> None:
    """Register the embedders this plugin offers, one `register(embedder)` call each.

    `config` is the plugin's own ``plugins.<name>`` section; decode it with
    ``config.decode(MyConfig)`` (a `imgdex.config.PluginConfig` subclass) so a typo in
    the YAML becomes an error naming the key. Do not load weights here: the core calls
    `Embedder.load` lazily, in a worker thread, the first time the model is needed.
    Each embedder owns one index, named after model family, modality and version
    (``siglip2_image_v1``); a new model version must use a new index name. The hook may
    be called again with the section that built an older index (a model upgrade keeps
    the old index answering until the new one is complete), so build embedders from
    `config` alone.
    """


@hookspec
def register_describers(register: Callable[[Describer], None], config: PluginSettings) -> None:
    """Register the describers (captioners) this plugin offers.

    The core describes every stored image with every enabled describer in the
    background; each description is stored under `Describer.method` and embedded by
    every enabled text embedder like a human-written one.
    """


# --- storage ----------------------------------------------------------------------


@hookspec
def register_index_backends(register: Callable[[IndexBackend], None]) -> None:
    """Register vector index backends; ``index.backend`` in the config picks one by name.

    The default, ``hnswlib``, is itself registered through this hook by the core.
    """
