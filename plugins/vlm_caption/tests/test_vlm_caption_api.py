"""The api backend against a real chat-completions HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import imgdex_vlm_caption
from imgdex import Caption
from imgdex.config import PluginSettings
from imgdex.errors import ServiceUnavailable
from imgdex_vlm_caption import ApiCaptioner, CaptionError, ModelLoadError, build_describers
from imgdex_vlm_caption.api import encode_jpeg
from imgdex_vlm_caption.config import DEFAULT_PROMPTS

# --- a chat-completions server ------------------------------------------------------


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    content_type: str = "application/json"


def chat_reply(content: Any, *, finish_reason: str = "stop") -> Reply:
    """A well-formed chat-completions answer carrying `content`."""
    data = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
    }
    return Reply(body=json.dumps(data).encode())


def request_image(body: Any) -> Image.Image:
    """Decode the data-URL image of a chat-completions request body."""
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix), url[:40]
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :], validate=True)))
    image.load()
    return image


def size_caption(request: Received) -> Reply:
    """Default behaviour: caption each image with the size the server decoded."""
    image = request_image(request.body)
    return chat_reply(f"  \n an image of {image.width}x{image.height} pixels \n")


@dataclass
class ChatServer:
    """State of the fake server; tests set `reply` and `models`, then read `requests`."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    reply: Callable[[Received], Reply] = size_caption
    # Answer to GET /models: the ids served, or None for a 404 (server lists nothing).
    models: list[str] | None = field(default_factory=lambda: ["test-vlm"])
    models_status: int = 200
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0  # most chat requests being answered at the same time

    def posts(self) -> list[Received]:
        return [r for r in self.requests if r.method == "POST"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server: the client pools
    state: ChatServer  # set on the subclass made per server

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        request = Received(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.state.lock:
            self.state.requests.append(request)
        if method == "GET" and self.path.endswith("/models"):
            models = self.state.models
            if models is None:
                reply = Reply(status=404, body=b'{"detail": "Not Found"}')
            else:
                data = {"object": "list", "data": [{"id": m, "object": "model"} for m in models]}
                reply = Reply(status=self.state.models_status, body=json.dumps(data).encode())
        elif method == "POST" and self.path.endswith("/chat/completions"):
            with self.state.lock:
                self.state.in_flight += 1
                self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
            try:
                reply = self.state.reply(request)
                if reply.delay:
                    self.state.stop.wait(reply.delay)
            finally:
                with self.state.lock:
                    self.state.in_flight -= 1
        else:
            reply = Reply(status=404, body=b'{"detail": "Not Found"}')
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    """A ThreadingHTTPServer on a free 127.0.0.1 port speaking chat-completions."""
    state = ChatServer()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="chat-server", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


MakeCaptioner = Callable[..., ApiCaptioner]


@pytest.fixture
def make_captioner(chat_server: ChatServer) -> Iterator[MakeCaptioner]:
    """Build api describers through the plugin's config; their clients are closed after."""
    made: list[ApiCaptioner] = []

    def make(**section: Any) -> ApiCaptioner:
        raw = {"backend": "api", "endpoint": chat_server.url, "model": "test-vlm", **section}
        (describer,) = build_describers(PluginSettings("vlm_caption", raw))
        assert isinstance(describer, ApiCaptioner)
        made.append(describer)
        return describer

    yield make
    for describer in made:
        describer.close()


def gradient(width: int, height: int) -> Image.Image:
    """An image whose left half is dark red and right half light blue."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (200, 20, 20)
    array[:, width // 2 :] = (60, 160, 240)
    return Image.fromarray(array)


def test_request_shape(chat_server: ChatServer, make_captioner: MakeCaptioner) -> None:
    captioner = make_captioner(
        api_key="sk-secret", prompt="What is in the picture?", max_image_side=64, max_new_tokens=33
    )
    original = gradient(320, 160)

    assert captioner.describe_images([original]) == ["an image of 64x32 pixels"]

    (post,) = chat_server.posts()
    assert post.path == "/v1/chat/completions"
    assert post.headers["authorization"] == "Bearer sk-secret"
    assert post.headers["content-type"] == "application/json"
    body = post.body
    assert body["model"] == "test-vlm"
    assert body["max_tokens"] == 33
    (message,) = body["messages"]
    assert message["role"] == "user"
    text, image_part, tags = message["content"]
    assert text == {"type": "text", "text": "What is in the picture?"}
    assert image_part["type"] == "image_url"
    # After the image, the model is asked for a tag line (split off its answer).
    assert tags["type"] == "text" and tags["text"].startswith("Then, on a last line")
    sent = request_image(body)
    assert sent.format == "JPEG"
    assert sent.mode == "RGB"
    assert sent.size == (64, 32)
    # The pixels are the downscaled original, not just any image of that size.
    expected = np.asarray(original.resize((64, 32)), dtype=np.float32)
    assert np.abs(np.asarray(sent, dtype=np.float32) - expected).mean() < 6
    # The caller's image is left as it was.
    assert original.size == (320, 160)


def test_small_images_are_not_enlarged_and_other_modes_become_rgb() -> None:
    jpeg = encode_jpeg(Image.new("L", (50, 20), 128), max_side=768)
    image = Image.open(io.BytesIO(jpeg))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (50, 20))


def test_no_api_key_sends_no_authorization(
    chat_server: ChatServer, make_captioner: MakeCaptioner
) -> None:
    make_captioner().describe_images([gradient(10, 10)])
    assert all("authorization" not in r.headers for r in chat_server.requests)


def test_api_key_from_environment(
    chat_server: ChatServer, make_captioner: MakeCaptioner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLM_TEST_KEY", "sk-from-env")
    make_captioner(api_key_env="VLM_TEST_KEY").describe_images([gradient(10, 10)])
    assert chat_server.posts()[0].headers["authorization"] == "Bearer sk-from-env"

    monkeypatch.delenv("VLM_TEST_KEY")
    with pytest.raises(ModelLoadError, match="VLM_TEST_KEY"):
        make_captioner(api_key_env="VLM_TEST_KEY").load()


def test_captions_come_back_in_order(
    chat_server: ChatServer, make_captioner: MakeCaptioner
) -> None:
    widths = [40, 50, 60, 70, 80, 90]

    def slow_first(request: Received) -> Reply:
        reply = chat_reply(f" caption for width {request_image(request.body).width} ")
        # The first images answer last, so completion order is the reverse of input order.
        reply.delay = (100 - request_image(request.body).width) / 300
        return reply

    chat_server.reply = slow_first
    captioner = make_captioner(concurrency=6)
    images = [gradient(w, 30) for w in widths]

    captions = captioner.describe_images(images)

    assert captions == [f"caption for width {w}" for w in widths]
    assert chat_server.max_in_flight > 1  # the requests ran concurrently
    assert len(chat_server.posts()) == len(widths)
    assert captioner.describe_images([]) == []


def test_a_tag_line_becomes_tags(chat_server: ChatServer, make_captioner: MakeCaptioner) -> None:
    chat_server.reply = lambda r: chat_reply("A red car by the sea.\nTags: Car, red, sea")
    (caption,) = make_captioner().describe_images([gradient(8, 8)])
    assert caption == Caption("A red car by the sea.", ("car", "red", "sea"))
    (plain,) = make_captioner(tags=0).describe_images([gradient(8, 8)])
    assert len(chat_server.posts()[-1].body["messages"][0]["content"]) == 2  # not asked
    assert plain == "A red car by the sea.\nTags: Car, red, sea"  # tags off: left as written


def test_content_parts_answer_is_joined(
    chat_server: ChatServer, make_captioner: MakeCaptioner
) -> None:
    chat_server.reply = lambda r: chat_reply([{"type": "text", "text": " a red car "}])
    assert make_captioner().describe_images([gradient(8, 8)]) == ["a red car"]


def test_language_picks_default_prompt_and_prompt_overrides(
    chat_server: ChatServer, make_captioner: MakeCaptioner
) -> None:
    make_captioner(language="zh").describe_images([gradient(8, 8)])
    make_captioner().describe_images([gradient(8, 8)])
    make_captioner(language="zh", prompt="Say it in English.").describe_images([gradient(8, 8)])
    prompts = [r.body["messages"][0]["content"][0]["text"] for r in chat_server.posts()]
    assert prompts == [DEFAULT_PROMPTS["zh"], DEFAULT_PROMPTS["en"], "Say it in English."]


def _status_500(request: Received) -> Reply:
    error = {"error": {"message": "CUDA out of memory", "type": "server_error"}}
    return Reply(status=500, body=json.dumps(error).encode())


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        pytest.param(_status_500, r"HTTP 500: CUDA out of memory", id="http-500"),
        pytest.param(
            lambda r: Reply(status=502, body=b"<html>Bad gateway</html>", content_type="text/html"),
            r"HTTP 502: <html>Bad gateway",
            id="http-502-html",
        ),
        pytest.param(
            lambda r: Reply(body=b'{"choices": [{"message": '), r"not JSON", id="malformed-json"
        ),
        pytest.param(
            lambda r: Reply(body=b'{"object": "error"}'),
            r"malformed response \(no choices\[0\]\.message\.content\)",
            id="no-choices",
        ),
        pytest.param(
            lambda r: chat_reply(None),
            r"malformed response",
            id="null-content",
        ),
        pytest.param(
            lambda r: chat_reply("  \n ", finish_reason="length"),
            r"empty caption \(finish_reason='length'\)",
            id="empty-caption",
        ),
    ],
)
def test_bad_answers_raise_clear_errors(
    chat_server: ChatServer,
    make_captioner: MakeCaptioner,
    reply: Callable[[Received], Reply],
    message: str,
) -> None:
    chat_server.reply = reply
    captioner = make_captioner(api_key="sk-secret")
    with pytest.raises(CaptionError, match=message) as info:
        captioner.describe_images([gradient(8, 8)])
    text = str(info.value)
    assert text.startswith("vlm_caption: ")
    assert f"{chat_server.url}/chat/completions" in text
    assert "sk-secret" not in text
    assert isinstance(info.value, ServiceUnavailable)


def test_one_failure_fails_the_batch(
    chat_server: ChatServer, make_captioner: MakeCaptioner
) -> None:
    def fail_wide(request: Received) -> Reply:
        if request_image(request.body).width > 20:
            return _status_500(request)
        return size_caption_reply(request)

    chat_server.reply = fail_wide
    with pytest.raises(CaptionError, match="HTTP 500"):
        make_captioner().describe_images([gradient(10, 10), gradient(30, 10), gradient(12, 10)])


def size_caption_reply(request: Received) -> Reply:
    image = request_image(request.body)
    return chat_reply(f"{image.width}x{image.height}")


def test_timeout(chat_server: ChatServer, make_captioner: MakeCaptioner) -> None:
    chat_server.reply = lambda r: Reply(body=chat_reply("late").body, delay=2.0)
    captioner = make_captioner(timeout=0.2)
    started = time.monotonic()
    with pytest.raises(CaptionError, match=r"timed out after 0\.2s") as info:
        captioner.describe_images([gradient(8, 8)])
    assert time.monotonic() - started < 1.5
    assert chat_server.url in str(info.value)


# --- load: client and model check ----------------------------------------------------


def test_load_is_idempotent_and_checks_the_model_once(
    chat_server: ChatServer, make_captioner: MakeCaptioner
) -> None:
    captioner = make_captioner()
    captioner.load()
    captioner.load()
    captioner.describe_images([gradient(8, 8)])
    gets = [r for r in chat_server.requests if r.method == "GET"]
    assert [r.path for r in gets] == ["/v1/models"]


def test_unknown_model_fails_to_load(
    chat_server: ChatServer, make_captioner: MakeCaptioner
) -> None:
    chat_server.models = ["Qwen/Qwen2.5-VL-7B-Instruct", "other"]
    with pytest.raises(ModelLoadError) as info:
        make_captioner(model="qwen-vl").load()
    text = str(info.value)
    assert "'qwen-vl' is not served by " + chat_server.url in text
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in text
    assert chat_server.posts() == []


def test_model_check_can_be_skipped_or_tolerates_ollama_tags(
    chat_server: ChatServer, make_captioner: MakeCaptioner
) -> None:
    chat_server.models = ["llava:latest"]
    make_captioner(model="llava").load()
    make_captioner(model="not-listed", check_model=False).load()
    chat_server.models = None  # the server does not list models: nothing to check
    make_captioner(model="anything").load()


def test_rejected_key_fails_to_load(chat_server: ChatServer, make_captioner: MakeCaptioner) -> None:
    chat_server.models_status = 401
    with pytest.raises(ModelLoadError, match=r"rejected the API key .*HTTP 401"):
        make_captioner(api_key="sk-wrong").load()


def test_unreachable_endpoint_fails_to_load() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/v1"
    raw = {"backend": "api", "endpoint": endpoint, "model": "m", "method": "vlm9"}
    (captioner,) = build_describers(PluginSettings("vlm_caption", raw))
    with pytest.raises(ModelLoadError, match=rf"vlm9: cannot reach endpoint {endpoint}"):
        captioner.load()


def test_full_chat_completions_url_is_accepted(chat_server: ChatServer) -> None:
    raw = {
        "backend": "api",
        "endpoint": chat_server.url + "/chat/completions/",
        "model": "test-vlm",
    }
    (captioner,) = build_describers(PluginSettings("vlm_caption", raw))
    assert isinstance(captioner, ApiCaptioner)
    try:
        assert captioner.describe_images([gradient(8, 6)]) == ["an image of 8x6 pixels"]
    finally:
        captioner.close()
    assert [r.path for r in chat_server.requests] == ["/v1/models", "/v1/chat/completions"]


# --- through the server -------------------------------------------------------------


def test_server_writes_descriptions_for_new_images(chat_server: ChatServer, tmp_path: Path) -> None:
    """An uploaded image gets a caption from every instance, stored under its method."""
    from litestar.testing import TestClient

    from imgdex.api import create_app
    from imgdex.testing import image_bytes, make_config, toy_plugins

    section = {
        "backend": "api",
        "endpoint": chat_server.url,
        "model": "test-vlm",
        "instances": [{"method": "vlm2", "prompt": "Another caption."}],
    }
    config = make_config(tmp_path / "data", plugins={"vlm_caption": section})
    plugins = {**toy_plugins(), "vlm_caption": imgdex_vlm_caption}
    app = create_app(config, plugins=plugins, entry_points=False, preload=False)
    try:
        with TestClient(app=app) as client:
            upload = client.post(
                "/api/images", files={"file": ("a.png", image_bytes("red", (80, 60)), "image/png")}
            )
            assert upload.status_code == 201, upload.text
            sha = upload.json()["sha256"]
            descriptions: dict[str, Any] = {}
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                answer = client.get(f"/api/images/{sha}/descriptions")
                assert answer.status_code == 200, answer.text
                descriptions = {d["method"]: d for d in answer.json()}
                if {"vlm_caption", "vlm2"} <= descriptions.keys() and all(
                    descriptions[m]["indexes"] for m in ("vlm_caption", "vlm2")
                ):
                    break
                time.sleep(0.1)
    finally:
        for slot in app.state.runtime.registry.describers.values():
            slot.provider.close()

    assert descriptions["vlm_caption"]["content"] == "an image of 80x60 pixels"
    assert descriptions["vlm2"]["content"] == "an image of 80x60 pixels"
    # Each description was embedded by the text embedder like a human-written one.
    assert descriptions["vlm2"]["indexes"] == ["toy_words_v1"]
    prompts = sorted(r.body["messages"][0]["content"][0]["text"] for r in chat_server.posts())
    assert prompts == sorted([DEFAULT_PROMPTS["en"], "Another caption."])
