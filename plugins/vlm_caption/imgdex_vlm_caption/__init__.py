"""imgdex plugin ``vlm_caption``: image captions written by vision-language models.

Registers one describer per configured instance (see `imgdex_vlm_caption.config`): the
``local`` backend runs a transformers model in process, the ``api`` backend asks any
OpenAI-compatible chat-completions endpoint. Nothing heavy is imported or loaded here;
the core calls `Describer.load` lazily in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from imgdex import Describer, PluginSettings, hookimpl
from imgdex_vlm_caption.api import ApiCaptioner
from imgdex_vlm_caption.config import CaptionSettings, VlmCaptionConfig, resolve_settings
from imgdex_vlm_caption.errors import CaptionError, ModelLoadError
from imgdex_vlm_caption.local import LocalCaptioner

__all__ = [
    "ApiCaptioner",
    "CaptionError",
    "CaptionSettings",
    "LocalCaptioner",
    "ModelLoadError",
    "VlmCaptionConfig",
    "build_describers",
    "make_describer",
    "register_describers",
]


def make_describer(settings: CaptionSettings) -> ApiCaptioner | LocalCaptioner:
    """The describer for one resolved instance."""
    if settings.backend == "api":
        return ApiCaptioner(settings)
    return LocalCaptioner(settings)


def build_describers(config: PluginSettings) -> list[ApiCaptioner | LocalCaptioner]:
    """Decode the plugin's section and build every enabled describer it declares."""
    section = config.decode(VlmCaptionConfig)
    return [make_describer(s) for s in resolve_settings(section, f"plugins.{config.name}")]


@hookimpl
def register_describers(register: Callable[[Describer], None], config: PluginSettings) -> None:
    """Register the default describer and every entry of ``instances``."""
    for describer in build_describers(config):
        register(describer)
