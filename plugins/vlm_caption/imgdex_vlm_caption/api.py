"""The ``api`` backend: captions from any OpenAI-compatible chat-completions endpoint.

Works with vLLM, Ollama (``/v1``), OpenAI and Qwen/DashScope compatible mode. Each image
is downscaled, JPEG-encoded and sent inline as a ``data:`` URL, one request per image,
several in flight at once over one pooled `httpx.Client` per describer.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from imgdex.providers import Caption, Describer
from imgdex_vlm_caption.config import CaptionSettings
from imgdex_vlm_caption.errors import CaptionError, ModelLoadError
from imgdex_vlm_caption.tagging import split_caption, tag_prompt

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["ApiCaptioner", "encode_jpeg"]

log = logging.getLogger(__name__)

_CHAT_PATH = "/chat/completions"


def encode_jpeg(image: Image, max_side: int, quality: int = 90) -> bytes:
    """JPEG bytes of `image` shrunk (never enlarged) to at most `max_side` on its longest side."""
    from PIL import Image as PILImage

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    scale = max_side / max(width, height)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = rgb.resize(size, PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class ApiCaptioner(Describer):
    """A describer that asks a remote OpenAI-compatible server for each caption."""

    # No weights on this machine: `imgdex models` skips it.
    loads_weights = False

    def __init__(self, settings: CaptionSettings) -> None:
        if settings.endpoint is None:  # resolve_settings guarantees it; keep mypy honest
            raise ValueError(f"{settings.method}: the api backend needs an endpoint")
        self.settings = settings
        self.method = settings.method
        self.model = settings.model
        base = settings.endpoint.rstrip("/")
        # Accept the full URL too: "http://host/v1/chat/completions".
        self.base_url = base.removesuffix(_CHAT_PATH)
        self.url = self.base_url + _CHAT_PATH
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ApiCaptioner(method={self.method!r}, model={self.model!r}, url={self.url!r})"

    # --- lifecycle ------------------------------------------------------------------

    def load(self) -> None:
        """Open the pooled client and, if `check_model`, ask the endpoint for its models."""
        with self._lock:
            if self._client is not None:
                return
            headers = {"Accept": "application/json"}
            if key := self._api_key():
                headers["Authorization"] = f"Bearer {key}"
            n = self.settings.concurrency
            client = httpx.Client(
                headers=headers,
                timeout=httpx.Timeout(self.settings.timeout),
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            )
            try:
                if self.settings.check_model:
                    self._check_model(client)
            except BaseException:
                client.close()
                raise
            self._client = client

    def close(self) -> None:
        """Close the pooled connections; a later `load` opens new ones."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _api_key(self) -> str | None:
        if self.settings.api_key is not None:
            return self.settings.api_key
        name = self.settings.api_key_env
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            raise ModelLoadError(
                f"{self.method}: environment variable {name} (api_key_env) is not set; "
                f"it should hold the API key for {self.base_url}"
            )
        return value

    def _check_model(self, client: httpx.Client) -> None:
        url = self.base_url + "/models"
        try:
            response = client.get(url)
        except httpx.TimeoutException:
            raise ModelLoadError(
                f"{self.method}: endpoint {self.base_url} did not answer GET /models "
                f"within {self.settings.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise ModelLoadError(
                f"{self.method}: cannot reach endpoint {self.base_url}: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code in (401, 403):
            raise ModelLoadError(
                f"{self.method}: endpoint {self.base_url} rejected the API key "
                f"(GET /models returned HTTP {response.status_code}: {_error_text(response)})"
            )
        served = _served_models(response)
        if served is None:  # not every compatible server lists its models: skip the check
            log.debug("%s: %s does not list models; not checking", self.method, url)
            return
        if not any(_same_model(self.model, name) for name in served):
            shown = ", ".join(sorted(served)[:20]) or "nothing"
            raise ModelLoadError(
                f"{self.method}: model {self.model!r} is not served by {self.base_url} "
                f"(it serves: {shown}); set `model` to one of them or `check_model: false`"
            )

    # --- captions -------------------------------------------------------------------

    @property
    def _tag_part(self) -> list[dict[str, str]]:
        text = tag_prompt(self.settings.language, self.settings.tags)
        return [{"type": "text", "text": text}] if text else []

    def describe_images(self, images: Sequence[Image]) -> list[str | Caption]:
        """One caption per image, in order (with its tags when the model gave a tag
        line); any failure raises `CaptionError`."""
        if not images:
            return []
        self.load()
        jpegs = [
            encode_jpeg(image, self.settings.max_image_side, self.settings.jpeg_quality)
            for image in images
        ]
        workers = min(self.settings.concurrency, len(jpegs))
        if workers == 1:
            return [self._caption(jpeg) for jpeg in jpegs]
        with ThreadPoolExecutor(workers, thread_name_prefix=f"imgdex-{self.method}") as pool:
            return list(pool.map(self._caption, jpegs))

    def request_body(self, jpeg: bytes) -> dict[str, Any]:
        """The chat-completions request for one JPEG-encoded image."""
        data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        return {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": self.settings.prompt},
                        {"type": "image_url", "image_url": {"url": data_url}},
                        *self._tag_part,
                    ],
                }
            ],
            "max_tokens": self.settings.max_new_tokens,
        }

    def _caption(self, jpeg: bytes) -> str | Caption:
        client = self._client
        if client is None:
            raise CaptionError(f"{self.method}: closed; call load() first")
        try:
            response = client.post(self.url, json=self.request_body(jpeg))
        except httpx.TimeoutException:
            raise CaptionError(
                f"{self.method}: POST {self.url} (model {self.model!r}) timed out "
                f"after {self.settings.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise CaptionError(
                f"{self.method}: POST {self.url} failed: {type(exc).__name__}: {exc}"
            ) from None
        if not response.is_success:
            raise CaptionError(
                f"{self.method}: POST {self.url} (model {self.model!r}) returned "
                f"HTTP {response.status_code}: {_error_text(response)}"
            )
        try:
            data = response.json()
        except ValueError:
            raise CaptionError(
                f"{self.method}: POST {self.url} returned HTTP {response.status_code} with a "
                f"body that is not JSON: {response.text[:200]!r}"
            ) from None
        text = _message_text(data)
        if text is None:
            raise CaptionError(
                f"{self.method}: POST {self.url} returned HTTP {response.status_code} with a "
                f"malformed response (no choices[0].message.content): {str(data)[:200]}"
            )
        caption = text.strip()
        if not caption:
            raise CaptionError(
                f"{self.method}: POST {self.url} (model {self.model!r}) returned an empty "
                f"caption (finish_reason={_finish_reason(data)!r})"
            )
        return split_caption(caption, self.settings.tags)


def _message_text(data: Any) -> str | None:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if isinstance(content, str):
        return content
    # Some servers answer with content parts, like the request's.
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(p for p in parts if p is not None)
    return None


def _finish_reason(data: Any) -> Any:
    try:
        return data["choices"][0].get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def _error_text(response: httpx.Response) -> str:
    """The server's own error message when it sent one (OpenAI style), else the body start."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip() or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if isinstance(data.get("detail"), str):
            return str(data["detail"])[:300]
    return str(data)[:200]


def _served_models(response: httpx.Response) -> list[str] | None:
    if response.status_code != 200:
        return None
    try:
        data = response.json()
        names = [str(item["id"]) for item in data["data"]]
    except (ValueError, KeyError, TypeError):
        return None
    return names or None


def _same_model(wanted: str, served: str) -> bool:
    # Ollama serves "llava:latest" and accepts "llava" for it.
    return served == wanted or served == f"{wanted}:latest"
