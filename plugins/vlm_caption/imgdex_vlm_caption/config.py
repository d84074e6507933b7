"""The ``plugins.vlm_caption`` config section and its resolution into describer settings.

The section's top-level keys configure one describer (method ``vlm_caption`` unless
``method`` says otherwise). Each entry of ``instances:`` adds another describer; keys an
entry leaves unset are taken from the top level, except that ``model`` is only inherited
by an entry with the same backend, and ``api_key``/``api_key_env`` only by an entry with
the same endpoint (a key is never sent to a server it was not written for).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from imgdex.config import PluginConfig
from imgdex.errors import ConfigError

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "DEFAULT_PROMPTS",
    "Backend",
    "CaptionSettings",
    "InstanceConfig",
    "Language",
    "VlmCaptionConfig",
    "resolve_settings",
]

Backend = Literal["local", "api"]
Language = Literal["en", "zh"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
# Method names become file names in the core (same rule as `imgdex.ids.check_name`).
MethodName = Annotated[str, msgspec.Meta(pattern=r"^(?!.*\.\.)[A-Za-z0-9_.-]{1,64}$")]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
ImageSide = Annotated[int, msgspec.Meta(ge=32, le=8192)]
JpegQuality = Annotated[int, msgspec.Meta(ge=1, le=95)]

DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
DEFAULT_PROMPTS: dict[str, str] = {
    "en": (
        "Describe this image in one or two sentences. Mention the main subjects, "
        "the setting and any clearly visible text."
    ),
    "zh": "用一两句话描述这张图片，说明主要对象、场景以及图中清晰可见的文字。",  # noqa: RUF001
}


class InstanceConfig(PluginConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One describer; every unset (None) key is inherited from the section's top level."""

    method: MethodName
    backend: Backend | None = None
    # api backend: base URL of an OpenAI-compatible server (``http://host:8000/v1``); the
    # request goes to ``{endpoint}/chat/completions``.
    endpoint: str | None = None
    api_key: str | None = None
    # Name of an environment variable holding the API key (read when the model loads).
    api_key_env: str | None = None
    # Explicit prompt; overrides the default prompt of `language`.
    prompt: str | None = None
    language: Language | None = None
    max_new_tokens: PositiveInt | None = None
    # api backend: images are downscaled to this longest side and sent as JPEG.
    max_image_side: ImageSide | None = None
    jpeg_quality: JpegQuality | None = None
    timeout: PositiveFloat | None = None
    # api backend: requests in flight at once for one batch of images.
    concurrency: PositiveInt | None = None
    # api backend: on load, ask ``GET {endpoint}/models`` whether the model is served.
    check_model: bool | None = None
    # local backend: torch device (auto, cpu, cuda, cuda:1, mps) and dtype.
    device: str | None = None
    dtype: DType | None = None
    # local backend: images per `generate` call.
    batch_size: PositiveInt | None = None
    # The model is also asked for up to this many tags per image (0: no tags).
    tags: Annotated[int, msgspec.Meta(ge=0, le=30)] | None = None


class VlmCaptionConfig(InstanceConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The whole ``plugins.vlm_caption`` section: the default describer plus `instances`."""

    method: MethodName = "vlm_caption"
    instances: tuple[InstanceConfig, ...] = ()


class CaptionSettings(msgspec.Struct, kw_only=True, frozen=True):
    """The fully resolved settings of one describer."""

    method: str
    backend: Backend
    model: str
    endpoint: str | None
    api_key: str | None
    api_key_env: str | None
    prompt: str
    language: Language
    max_new_tokens: int
    max_image_side: int
    jpeg_quality: int
    timeout: float
    concurrency: int
    check_model: bool
    device: str
    dtype: DType
    batch_size: int
    tags: int


_DEFAULTS: dict[str, Any] = {
    "backend": "local",
    "endpoint": None,
    "api_key": None,
    "api_key_env": None,
    "prompt": None,
    "language": "en",
    "max_new_tokens": 96,
    "max_image_side": 768,
    "jpeg_quality": 90,
    "timeout": 60.0,
    "concurrency": 4,
    "check_model": True,
    "device": "auto",
    "dtype": "auto",
    "batch_size": 4,
    "tags": 8,
}
# Keys with their own inheritance rules (see the module docstring and `_merge`).
_PLAIN = tuple(k for k in _DEFAULTS if k not in {"api_key", "api_key_env", "prompt"})


def resolve_settings(config: VlmCaptionConfig, section: str) -> list[CaptionSettings]:
    """The settings of every enabled describer of the section, top level first.

    `section` (``plugins.vlm_caption``) prefixes every `ConfigError` so it names the key.
    """
    # `top` is both the first describer and the parent of every instance.
    top = _merge(config, _DEFAULTS, inherit_model=None, inherit_key=None)
    resolved = [_finish(top, section)]
    used = {config.method: section}
    for i, instance in enumerate(config.instances):
        where = f"{section}.instances[{i}]"
        same_backend = (instance.backend or top["backend"]) == top["backend"]
        same_endpoint = instance.endpoint is None or _same_url(instance.endpoint, top["endpoint"])
        merged = _merge(
            instance,
            top,
            inherit_model=config.model if same_backend else None,
            inherit_key=(config.api_key, config.api_key_env) if same_endpoint else None,
        )
        if instance.method in used:
            raise ConfigError(
                f"{where}.method: {instance.method!r} is already used by {used[instance.method]}"
            )
        used[instance.method] = where
        if instance.enabled:
            resolved.append(_finish(merged, where))
    return resolved


def _merge(
    own: InstanceConfig,
    parent: dict[str, Any],
    *,
    inherit_model: str | None,
    inherit_key: tuple[str | None, str | None] | None,
) -> dict[str, Any]:
    values = msgspec.structs.asdict(own)
    merged = {key: values[key] if values[key] is not None else parent[key] for key in _PLAIN}
    merged["method"] = own.method
    merged["model"] = own.model or inherit_model
    if own.api_key is not None or own.api_key_env is not None or inherit_key is None:
        merged["api_key"], merged["api_key_env"] = own.api_key, own.api_key_env
    else:
        merged["api_key"], merged["api_key_env"] = inherit_key
    # An explicit prompt wins; a language chosen here picks its own default prompt even
    # when the parent had an explicit prompt in another language.
    if own.prompt is not None:
        merged["prompt"] = own.prompt
    elif own.language is None and parent.get("prompt") is not None:
        merged["prompt"] = parent["prompt"]
    else:
        merged["prompt"] = None
    return merged


def _finish(values: dict[str, Any], where: str) -> CaptionSettings:
    backend = values["backend"]
    endpoint = values["endpoint"]
    if endpoint is not None:
        endpoint = endpoint.strip().rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.endpoint: expected an http:// or https:// URL")
    model = values["model"]
    if backend == "api":
        if endpoint is None:
            raise ConfigError(f"{where}.endpoint: required when backend is api")
        if not model:
            raise ConfigError(f"{where}.model: required when backend is api (the served name)")
    elif not model:
        model = DEFAULT_LOCAL_MODEL
    prompt = values["prompt"]
    if prompt is None:
        prompt = DEFAULT_PROMPTS[values["language"]]
    elif not prompt.strip():
        raise ConfigError(f"{where}.prompt: must not be empty")
    return CaptionSettings(**{**values, "endpoint": endpoint, "model": model, "prompt": prompt})


def _same_url(a: str, b: str | None) -> bool:
    return b is not None and a.strip().rstrip("/") == b.strip().rstrip("/")
