"""Search: fan-out across indexes, fusion, filters and paging through the real app."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from imgdex.catalog import Catalog, IndexEntry
from imgdex.testing import image_bytes, make_config

from .conftest import ADMIN

Client = TestClient[Any]


def index_entries(catalog: Catalog, index: str) -> list[IndexEntry]:
    return [entry for batch in catalog.index_entry_batches(index) for entry in batch]


def upload(client: Client, data: bytes) -> str:
    r = client.post("/api/images", files={"file": ("a.png", data, "image/png")})
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def describe(client: Client, sha: str, method: str, content: str) -> None:
    r = client.post(f"/api/images/{sha}/descriptions", json={"method": method, "content": content})
    assert r.status_code == 201, r.text


def text(client: Client, **body: Any) -> Any:
    r = client.post("/api/search/text", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def library(client: Client) -> dict[str, str]:
    shas = {
        color: upload(client, image_bytes(color, pattern=i))
        for i, color in enumerate(["red", "green", "blue", "yellow", "purple"])
    }
    describe(client, shas["red"], "human", "sunset over the harbour with fishing boats")
    describe(client, shas["green"], "human", "a quiet forest trail in spring")
    describe(client, shas["blue"], "human", "swimming pool at a hotel")
    describe(client, shas["blue"], "vlm1", "the harbour seen from a hotel window")
    describe(client, shas["yellow"], "vlm1", "taxi cabs in a busy street")
    return shas


def test_image_searched_with_itself_comes_first_with_score_one(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    for color, sha in shas.items():
        r = imgdex_client.post(
            "/api/search/image",
            files={
                "file": ("q.png", image_bytes(color, pattern=list(shas).index(color)), "image/png")
            },
            data={"top_k": "3"},
        )
        body = r.json()
        first = body["results"][0]
        assert first["sha256"] == sha
        assert first["score"] > 0.999
        assert first["matched_by"] == "image"
        assert first["index"] == "toy_color_v1"
        assert len(body["results"]) == 3


def test_base64_search_matches_multipart(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    raw = image_bytes("green", pattern=1)
    plain = imgdex_client.post(
        "/api/search/image/base64", json={"image": base64.b64encode(raw).decode()}
    ).json()
    url = "data:image/png;base64," + base64.b64encode(raw).decode()
    data_url = imgdex_client.post(
        "/api/search/image/base64", json={"image": url, "top_k": 2}
    ).json()
    assert plain["results"][0]["sha256"] == data_url["results"][0]["sha256"] == shas["green"]
    assert len(data_url["results"]) == 2


def test_text_search_fuses_indexes_and_explains(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    body = text(imgdex_client, query="red harbour", top_k=5)
    assert body["fusion"] == "rrf"
    searched = {s["index"]: s for s in body["indexes_searched"]}
    # The keyword index answers text queries beside the vector indexes.
    assert set(searched) == {"toy_color_v1", "toy_words_v1", "keyword"}
    assert searched["toy_words_v1"]["model"] == "imgdex-toy-words"
    ids = [r["sha256"] for r in body["results"]]
    assert len(ids) == len(set(ids)), "one result per image"
    # Red is first in both indexes (colour and words): first overall; the other
    # "harbour" image is also among the top results.
    assert ids[0] == shas["red"]
    assert shas["blue"] in ids[:3]
    top = body["results"][0]
    ranks = {m["index"]: m["rank"] for m in top["matches"]}
    assert ranks["toy_color_v1"] == 1
    assert ranks["toy_words_v1"] <= 2
    assert {
        "sha256",
        "score",
        "matched_by",
        "matched_text",
        "index",
        "model",
        "width",
        "height",
    } <= set(top)
    words = next(m for m in top["matches"] if m["index"] == "toy_words_v1")
    assert words["matched_by"] == "human"
    assert words["matched_text"] == "sunset over the harbour with fishing boats"
    for result in body["results"]:
        ranks = [(m["index"], m["rank"]) for m in result["matches"]]
        assert len({i for i, _ in ranks}) == len(ranks), "one match per index per image"
        # The RRF score is the sum of 1/(60 + rank) over the indexes that matched.
        expected = sum(1 / (60 + m["rank"]) for m in result["matches"])
        assert abs(result["score"] - expected) < 1e-5


def test_many_descriptions_count_once(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    # Five descriptions of purple all saying "street" must not outrank by repetition.
    for i in range(5):
        describe(imgdex_client, shas["purple"], f"vlm{i + 2}", f"street scene number {i}")
    body = text(imgdex_client, query="street", index="toy_words_v1", top_k=10)
    ids = [r["sha256"] for r in body["results"]]
    assert ids.count(shas["purple"]) == 1
    assert body["indexes_searched"][0]["result_count"] == len(ids)


def test_cross_modal_text_searches_image_index(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    body = text(imgdex_client, query="something yellow", index="toy_color_v1", top_k=1)
    assert body["results"][0]["sha256"] == shas["yellow"]
    assert body["results"][0]["matched_by"] == "image"
    assert body["fusion"] == "single"


def test_index_list_methods_filter_min_score_and_paging(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    both = text(
        imgdex_client, query="harbour hotel", index=["toy_words_v1", "toy_color_v1"], top_k=5
    )
    assert len(both["indexes_searched"]) == 2
    only_vlm1 = text(imgdex_client, query="harbour", index="toy_words_v1", methods=["vlm1"])
    assert [r["sha256"] for r in only_vlm1["results"]] == [shas["blue"], shas["yellow"]] or (
        only_vlm1["results"][0]["sha256"] == shas["blue"]
    )
    assert all(m["matched_by"] == "vlm1" for r in only_vlm1["results"] for m in r["matches"])
    strict = text(imgdex_client, query="harbour", index="toy_words_v1", min_score=0.3)
    assert {r["sha256"] for r in strict["results"]} == {shas["red"], shas["blue"]}
    assert all(r["score"] >= 0.3 for r in strict["results"])

    full = text(imgdex_client, query="harbour", index="toy_color_v1", top_k=5)["results"]
    page1 = text(imgdex_client, query="harbour", index="toy_color_v1", top_k=2)["results"]
    page2 = text(imgdex_client, query="harbour", index="toy_color_v1", top_k=2, offset=2)["results"]
    assert [r["sha256"] for r in page1 + page2] == [r["sha256"] for r in full[:4]]


def test_max_fusion_uses_raw_scores(imgdex_client: Client) -> None:
    library(imgdex_client)
    body = text(imgdex_client, query="harbour", fusion="max", top_k=5)
    assert body["fusion"] == "max"
    for result in body["results"]:
        assert abs(result["score"] - max(m["score"] for m in result["matches"])) < 1e-5
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_weights_shift_rrf(imgdex_client: Client) -> None:
    library(imgdex_client)
    weights = {"toy_color_v1": 0.0, "keyword": 0.0}
    body = text(imgdex_client, query="harbour", weights=weights, top_k=5)
    for result in body["results"]:
        words = [m for m in result["matches"] if m["index"] == "toy_words_v1"]
        expected = sum(1 / (60 + m["rank"]) for m in words)
        assert abs(result["score"] - expected) < 1e-5


def test_deleted_images_never_come_back(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    imgdex_client.delete(f"/api/images/{shas['red']}")
    imgdex_client.delete(f"/api/images/{shas['blue']}", params={"hard": "true"}, headers=ADMIN)
    body = text(imgdex_client, query="harbour", top_k=10)
    ids = {r["sha256"] for r in body["results"]}
    assert shas["red"] not in ids and shas["blue"] not in ids
    assert len(ids) == 3


def test_empty_library_answers_empty(imgdex_client: Client) -> None:
    body = text(imgdex_client, query="anything")
    assert body["results"] == []
    assert {s["result_count"] for s in body["indexes_searched"]} == {0}


def test_fused_search_resolves_labels_from_memory_or_the_catalog(
    imgdex_app_factory: Callable[..., Litestar], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The background duplicate finder resolves labels too: off, so only searches count.
    config = make_config(tmp_path / "quiet", duplicates={"enabled": False})
    with TestClient(app=imgdex_app_factory(config)) as client:
        _resolves_labels_from_memory_or_the_catalog(client, monkeypatch)


def _resolves_labels_from_memory_or_the_catalog(
    imgdex_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    library(imgdex_client)
    lib = imgdex_client.app.state.runtime
    catalog = lib.catalog
    calls: list[list[int]] = []
    resolve = catalog.resolve_entries

    def counted(ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        calls.append(list(ids))
        return resolve(ids)

    monkeypatch.setattr(catalog, "resolve_entries", counted)
    body = text(imgdex_client, query="red harbour", top_k=3)
    searched = {s["index"] for s in body["indexes_searched"]}
    assert searched == {"toy_color_v1", "toy_words_v1", "keyword"}
    assert all(s["result_count"] > 0 for s in body["indexes_searched"])
    assert calls == []  # every label answered by its index's label map

    # Without the maps (ids a map cannot hold, say) the catalog answers, with one query
    # per index, and the response is the same.
    for name in ("toy_color_v1", "toy_words_v1"):
        lib.indexes.get(name).labels.load([])
    assert text(imgdex_client, query="red harbour", top_k=3) == body
    assert len(calls) == 2


def test_label_maps_follow_every_change_to_the_catalog(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    lib = imgdex_client.app.state.runtime
    names = ("toy_color_v1", "toy_words_v1")
    before = {name: index_entries(lib.catalog, name) for name in names}
    imgdex_client.delete(f"/api/images/{shas['red']}")  # soft: hidden, restorable
    imgdex_client.delete(f"/api/images/{shas['green']}")
    imgdex_client.delete(f"/api/images/{shas['blue']}", params={"hard": "true"}, headers=ADMIN)
    describe(imgdex_client, shas["purple"], "human", "a lighthouse on a rocky coast")
    describe(imgdex_client, shas["purple"], "human", "a lighthouse in a storm")
    r = imgdex_client.delete(f"/api/images/{shas['yellow']}/descriptions/vlm1")
    assert r.status_code == 200, r.text
    r = imgdex_client.post("/api/images", files={"file": ("a.png", image_bytes("red", pattern=0))})
    assert r.json()["restored"] is True, r.text

    for name, old_rows in before.items():
        managed = lib.indexes.get(name)
        rows = index_entries(lib.catalog, name)
        assert any(r.image_deleted for r in rows)  # green, still soft-deleted
        known, sizes, unknown = managed.resolve([r.id for r in rows])
        assert known == {r.id: (r.image, r.method) for r in rows if not r.image_deleted}
        assert sizes == {r.image: (r.width, r.height) for r in rows if not r.image_deleted}
        assert sizes == {image: (64, 48) for image, _ in known.values()}  # image_bytes' size
        assert sorted(unknown) == sorted(r.id for r in rows if r.image_deleted)
        dropped = sorted({r.id for r in old_rows} - {r.id for r in rows})
        assert dropped  # blue's vectors; for text, the replaced and deleted descriptions too
        assert managed.resolve(dropped) == ({}, {}, dropped)

    queries = ("harbour", "lighthouse", "taxi", "forest", "hotel", "storm")
    with_maps = [text(imgdex_client, query=q) for q in queries]
    assert any(r["sha256"] == shas["red"] for r in with_maps[0]["results"])
    for name in names:  # the catalog alone gives the same answers
        lib.indexes.get(name).labels.load([])
    assert [text(imgdex_client, query=q) for q in queries] == with_maps


def test_too_few_images_in_the_rank_window_searches_deeper(
    imgdex_app_factory: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window of 6 labels (3 x top_k): the 20 best vectors are "harbour" descriptions
    # the methods filter drops, so the index must be searched again with a larger k.
    config = make_config(tmp_path / "deep", search={"min_candidates": 1})
    with TestClient(app=imgdex_app_factory(config)) as client:
        shas = library(client)
        for sha in shas.values():
            for method in ("alt1", "alt2", "alt3", "alt4"):
                describe(client, sha, method, "harbour")
        describe(client, shas["green"], "vlm2", "harbour boats")
        describe(client, shas["purple"], "vlm2", "harbour boats")
        words_index = client.app.state.runtime.indexes.get("toy_words_v1")
        calls: list[int] = []
        search = words_index.search

        def counted(vector: Any, k: int) -> Any:
            calls.append(k)
            return search(vector, k)

        monkeypatch.setattr(words_index, "search", counted)
        for index in ("toy_words_v1", None):
            calls.clear()
            body = text(client, query="harbour", index=index, methods=["vlm2"], top_k=2)
            assert len(calls) == 2, "the first window, then the deeper search"
            assert calls[1] > calls[0]
            assert {r["sha256"] for r in body["results"]} == {shas["green"], shas["purple"]}
            assert all(m["matched_by"] == "vlm2" for r in body["results"] for m in r["matches"])
            words = next(s for s in body["indexes_searched"] if s["index"] == "toy_words_v1")
            assert words["result_count"] == 2


def test_a_bad_image_fails_the_request_before_any_index_is_blamed(imgdex_client: Client) -> None:
    # The image is decoded in the search's worker call: a bad one is still the request's
    # error (415), never one index's; a bad option is reported first (it costs nothing).
    library(imgdex_client)
    bad = base64.b64encode(b"not an image").decode()
    cases = {
        None: (415, "not_an_image"),
        "toy_color_v1": (415, "not_an_image"),
        "no_such_index": (404, "unknown_index"),
        "toy_words_v1": (400, "index_cannot_answer"),
    }
    for index, (status, code) in cases.items():
        form = {} if index is None else {"index": index}
        r = imgdex_client.post(
            "/api/search/image",
            files={"file": ("q.txt", b"not an image", "text/plain")},
            data=form,
        )
        assert (r.status_code, r.json()["error"]) == (status, code), r.text
        r = imgdex_client.post("/api/search/image/base64", json={"image": bad, **form})
        assert (r.status_code, r.json()["error"]) == (status, code), r.text


def test_fused_image_search_answers_from_every_index(
    imgdex_app_factory: Callable[..., Any],
) -> None:
    from imgdex.testing import ColorEmbedder, ToyPlugin

    plugins = {
        "colors": ToyPlugin(ColorEmbedder("toy_color_v1"), ColorEmbedder("toy_color_b_v1")),
    }
    with TestClient(app=imgdex_app_factory(plugins=plugins)) as client:
        shas = {c: upload(client, image_bytes(c, pattern=i)) for i, c in enumerate(["red", "blue"])}
        r = client.post(
            "/api/search/image",
            files={"file": ("q.png", image_bytes("blue", pattern=1), "image/png")},
            data={"top_k": "2"},
        )
        body = r.json()
        assert body["fusion"] == "rrf"
        assert {s["index"]: s["result_count"] for s in body["indexes_searched"]} == {
            "toy_color_v1": 2,
            "toy_color_b_v1": 2,
        }
        assert body["results"][0]["sha256"] == shas["blue"]
        assert [m["rank"] for m in body["results"][0]["matches"]] == [1, 1]
