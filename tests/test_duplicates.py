"""Near-duplicates through the real app: a resized, re-encoded copy of a photo-like image
is found by the background job and resolved; other photos are not grouped with it.

The toy colour embedder is too crude here (two photos of similar colours look alike to
it), so these tests use a small but real image embedder: the zero-mean pixels of a
16 x 16 thumbnail, which survive resizing and JPEG re-encoding and tell different
photos apart."""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from litestar.testing import TestClient
from PIL import Image, ImageDraw, ImageFilter

from imgdex.providers import Embedder, Modality
from imgdex.testing import ToyPlugin, make_config, toy_plugins

Client = TestClient[Any]


class PixelEmbedder(Embedder):
    """The zero-mean pixels of a 16 x 16 RGB thumbnail (768-d, cosine)."""

    index_name = "pixels_v1"
    model = "imgdex-test-pixels"
    version = "1"
    stores: Modality = "image"
    query_modalities = frozenset({"image"})

    @property
    def dimension(self) -> int:
        return 16 * 16 * 3

    def embed_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.float32]:
        rows = []
        for image in images:
            small = image.convert("RGB").resize((16, 16), Image.Resampling.BOX)
            x = np.asarray(small, np.float32).ravel()
            x -= x.mean()
            rows.append(x / max(float(np.linalg.norm(x)), 1e-6))
        return np.stack(rows).astype(np.float32)

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        raise NotImplementedError


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo-like picture: a sky-to-ground gradient, soft shapes and sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y = np.linspace(0, 1, h)[:, None, None]
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    base = np.broadcast_to(top * (1 - y) + bottom * y, (h, w, 3)).copy()
    im = Image.fromarray(base.astype(np.uint8))
    layer = Image.new("RGB", size)
    draw = ImageDraw.Draw(layer)
    for _ in range(12):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        r = int(rng.integers(20, 160))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
    im = Image.composite(layer, im, layer.convert("L").point(lambda v: 150 if v else 0))
    im = im.filter(ImageFilter.GaussianBlur(3))
    noisy = np.asarray(im, np.float32) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def client(tmp_path: Any) -> Any:
    from imgdex.api import create_app

    config = make_config(tmp_path / "data", duplicates={"min_score": 0.9, "threshold": 0.95})
    plugins = {**toy_plugins(), "pixels": ToyPlugin(PixelEmbedder())}
    with TestClient(create_app(config, plugins=plugins, entry_points=False, preload=False)) as c:
        yield c


def upload(client: Client, data: bytes, name: str) -> str:
    r = client.post("/api/images", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def checked(client: Client) -> bool:
    catalog = client.app.state.runtime.catalog
    counts = catalog.job_counts()
    return not counts.get(("find_duplicates", "pixels_v1")) and not counts.get(
        ("embed_image", "pixels_v1")
    )


def duplicates(client: Client, **params: Any) -> Any:
    r = client.get("/api/duplicates", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_resized_reencoded_copy_is_found_and_resolved(client: Client) -> None:
    original = photo(1)
    sha = upload(client, encode(original, "PNG"), "beach.png")
    copy = original.resize((320, 240), Image.Resampling.LANCZOS)
    copy_sha = upload(client, encode(copy, "JPEG", quality=70), "beach-small.jpg")
    others = [upload(client, encode(photo(seed), "PNG"), f"{seed}.png") for seed in (2, 3, 4)]
    wait_for(lambda: checked(client))
    (group,) = duplicates(client)["groups"]
    assert {i["sha256"] for i in group["images"]} == {sha, copy_sha}
    assert group["id"] == min(sha, copy_sha)
    assert all(0.95 <= i["score"] <= 1.0 for i in group["images"])
    assert not set(others) & {i["sha256"] for i in group["images"]}

    r = client.post("/api/duplicates/resolve", json={"keep": sha, "trash": [copy_sha]})
    assert r.status_code == 200, r.text
    assert r.json() == {"kept": sha, "trashed": [copy_sha]}
    assert client.get(f"/api/images/{copy_sha}").json()["is_deleted"] == 1
    assert client.get(f"/api/images/{sha}").json()["is_deleted"] == 0
    assert duplicates(client)["groups"] == []


def test_images_stored_before_are_checked_at_start(tmp_path: Any) -> None:
    # A library from before near-duplicate detection: its images were never checked.
    from imgdex.api import create_app

    config = make_config(tmp_path / "data")
    plugins = {"pixels": ToyPlugin(PixelEmbedder())}
    original = photo(5)
    with TestClient(create_app(config, plugins=plugins, entry_points=False)) as client:
        a = upload(client, encode(original, "PNG"), "a.png")
        edited = original.rotate(0.5, resample=Image.Resampling.BICUBIC)
        b = upload(client, encode(edited, "PNG"), "b.png")
        wait_for(lambda: checked(client))
        catalog = client.app.state.runtime.catalog
        with catalog.transaction() as db:
            catalog.forget_duplicate_checks(db, "pixels_v1")
    plugins = {"pixels": ToyPlugin(PixelEmbedder())}
    with TestClient(create_app(config, plugins=plugins, entry_points=False)) as client:
        wait_for(lambda: bool(duplicates(client)["groups"]))
        (group,) = duplicates(client)["groups"]
        assert {i["sha256"] for i in group["images"]} == {a, b}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        ("get", "/api/duplicates", {"params": {"threshold": "high"}}, 400, None),
        ("get", "/api/duplicates", {"params": {"threshold": 1.5}}, 400, None),
        ("get", "/api/duplicates", {"params": {"threshold": 0.5}}, 400, "bad_threshold"),
        ("get", "/api/duplicates", {"params": {"offset": -1}}, 400, None),
        ("get", "/api/duplicates", {"params": {"offset": "first"}}, 400, None),
        ("get", "/api/duplicates", {"params": {"limit": 0}}, 400, None),
        ("get", "/api/duplicates", {"params": {"limit": 1001}}, 400, None),
        ("get", "/api/duplicates", {"params": {"per_group": 0}}, 400, None),
        ("get", "/api/duplicates", {"params": {"per_group": "all"}}, 400, None),
        ("post", "/api/duplicates/resolve", {"json": {"keep": "x" * 32, "trash": []}}, 400, None),
        ("post", "/api/duplicates/resolve", {"json": {"keep": "0" * 32}}, 400, None),
        (
            "post",
            "/api/duplicates/resolve",
            {"json": {"keep": "0" * 32, "trash": ["1" * 32]}},
            404,
            "image_not_found",
        ),
        (
            "post",
            "/api/duplicates/resolve",
            {"json": {"keep": "0" * 32, "trash": ["0" * 32]}},
            400,
            None,
        ),
        (
            "post",
            "/api/duplicates/resolve",
            {"json": {"keep": "0" * 32, "trash": [f"{i:032x}" for i in range(1001)]}},
            400,
            None,
        ),
    ],
)
def test_bad_requests_are_4xx(
    client: Client, method: str, path: str, kwargs: Any, status: int, error: str | None
) -> None:
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"status_code", "error", "detail"}
    if error:
        assert body["error"] == error


def test_groups_are_paged_most_alike_first_with_their_size(client: Client) -> None:
    groups = []
    for seed, copies in ((11, 2), (12, 1), (13, 1)):
        original = photo(seed)
        shas = [upload(client, encode(original, "PNG"), f"{seed}.png")]
        for n in range(copies):
            copy = original.resize((320 - 40 * n, 240 - 30 * n), Image.Resampling.LANCZOS)
            shas.append(upload(client, encode(copy, "JPEG", quality=80), f"{seed}-{n}.jpg"))
        groups.append(set(shas))
    wait_for(lambda: duplicates(client)["total"] == 3)
    everything = duplicates(client)
    assert (everything["total"], everything["offset"], everything["limit"]) == (3, 0, 100)
    assert sorted(len(g["images"]) for g in everything["groups"]) == [2, 2, 3]
    assert all(g["size"] == len(g["images"]) for g in everything["groups"])
    assert sorted(map(sorted, groups)) == sorted(
        sorted(i["sha256"] for i in g["images"]) for g in everything["groups"]
    )
    # One group a page, in the same order, the same groups.
    pages = [duplicates(client, limit=1, offset=k) for k in range(4)]
    assert [p["total"] for p in pages] == [3, 3, 3, 3]
    assert [g for p in pages for g in p["groups"]] == everything["groups"]
    assert pages[3]["groups"] == []
    # A group cut to its most alike images keeps its size.
    cut = duplicates(client, per_group=1)
    assert [g["size"] for g in cut["groups"]] == [g["size"] for g in everything["groups"]]
    assert [g["images"] for g in cut["groups"]] == [g["images"][:1] for g in everything["groups"]]


def test_the_page_shows_a_huge_group_cut_and_pages_groups(tmp_path: Any) -> None:
    # A chain of 60 images (what a low threshold or a burst of similar shots makes) and
    # 3 pairs, recorded as the finder records them, once it has checked every image
    # (noise images: it finds nothing itself; the pixels index only, as the toy colour
    # histograms of noise are all alike).
    from imgdex.api import create_app

    config = make_config(tmp_path / "data", duplicates={"min_score": 0.9, "threshold": 0.95})
    plugins = {"pixels": ToyPlugin(PixelEmbedder())}
    with TestClient(create_app(config, plugins=plugins, entry_points=False)) as client:
        check_the_page(client)


def check_the_page(client: Client) -> None:
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)) for _ in range(66)]
    shas = [upload(client, encode(im, "PNG"), f"{i}.png") for i, im in enumerate(noise)]
    runtime = client.app.state.runtime
    wait_for(lambda: not runtime.catalog.job_counts().get(("embed_image", "pixels_v1")))
    while runtime.duplicate_finder.run_once():
        pass
    assert duplicates(client)["total"] == 0
    catalog = client.app.state.runtime.catalog
    with catalog.transaction() as db:
        for a, b in [
            *itertools.pairwise(shas[:60]),
            *zip(shas[60::2], shas[61::2], strict=True),
        ]:
            catalog.record_duplicates(db, a, "pixels_v1", [(b, 0.99)])
    api = duplicates(client)
    assert api["total"] == 4
    chain = next(g for g in api["groups"] if g["size"] == 60)
    assert len(chain["images"]) == 60
    r = client.get("/duplicates")
    assert r.status_code == 200
    html = r.text
    assert html.count("data-member=") == 48 + 3 * 2  # the chain cut to 48 cards
    assert "60 images, the 48 most alike shown" in html
    assert "data-others" not in html  # each group's images are listed once
    later = client.get("/duplicates", params={"offset": 3}).text
    assert later.count('class="group"') == 1 and 'id="group-4"' in later
    assert 'href="/duplicates?offset=0"' in later  # back to the first page
    assert client.get("/duplicates", params={"offset": 10}).status_code == 200
