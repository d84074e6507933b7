"""The keyword index through the real app: descriptions and file names, Chinese
substrings, fusion with the vector indexes, and every way a document goes away."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from imgdex.catalog import keyword as catalog_keyword
from imgdex.catalog.keyword import match_expression, prepare
from imgdex.testing import image_bytes

from .conftest import ADMIN

Client = TestClient[Any]


def upload(client: Client, color: str, pattern: int, name: str = "a.png") -> str:
    data = image_bytes(color, pattern=pattern)
    r = client.post("/api/images", files={"file": (name, data, "image/png")})
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def describe(client: Client, sha: str, method: str, content: str) -> None:
    r = client.post(f"/api/images/{sha}/descriptions", json={"method": method, "content": content})
    assert r.status_code == 201, r.text


def keyword(client: Client, query: str, **body: Any) -> list[dict[str, Any]]:
    r = client.post("/api/search/text", json={"query": query, "index": "keyword", **body})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [s["index"] for s in answer["indexes_searched"]] == ["keyword"]
    results: list[dict[str, Any]] = answer["results"]
    return results


def test_cjk_text_is_indexed_as_bigrams_and_queried_the_same_way() -> None:
    assert prepare("海边的日落 Sunset") == "海边 边的 的日 日落 落 sunset"
    assert match_expression("日落") == '"日落"'
    assert match_expression("日") == '"日"*'
    assert match_expression("落风景 at sunsets") == '"落风 风景" OR "at" OR "sunsets"*'
    assert match_expression("  ,.; ") is None


def test_a_word_of_a_description_finds_the_image(imgdex_client: Client) -> None:
    beach = upload(imgdex_client, "yellow", 1)
    city = upload(imgdex_client, "black", 2)
    describe(imgdex_client, beach, "human", "海边的日落风景, children building a sandcastle")
    describe(imgdex_client, city, "vlm1", "a tram crossing a bridge at night")
    for query in ("sandcastle", "日落", "日", "落风景", "SANDCASTLES"[:-1]):
        results = keyword(imgdex_client, query)
        assert [r["sha256"] for r in results] == [beach], query
        (match,) = results[0]["matches"]
        assert (match["index"], match["matched_by"]) == ("keyword", "human")
        assert match["model"] == "sqlite-fts5-bm25"
        assert "sandcastle" in match["matched_text"]
    assert keyword(imgdex_client, "海滩") == []  # two characters that are not there
    assert [r["sha256"] for r in keyword(imgdex_client, "tram")] == [city]
    # The methods filter applies to keyword matches too.
    assert keyword(imgdex_client, "tram", methods=["human"]) == []


def test_bm25_ranks_the_better_match_first(imgdex_client: Client) -> None:
    both = upload(imgdex_client, "red", 1)
    one = upload(imgdex_client, "red", 2)
    describe(imgdex_client, one, "human", "a lighthouse")
    describe(imgdex_client, both, "human", "a lighthouse on a rocky coast at dawn")
    ids = [r["sha256"] for r in keyword(imgdex_client, "lighthouse rocky coast")]
    assert ids == [both, one]


def test_the_uploaded_file_name_is_searchable(imgdex_client: Client) -> None:
    sha = upload(imgdex_client, "green", 3, name="IMG_2041 beach-party.jpg")
    (result,) = keyword(imgdex_client, "party")
    assert result["sha256"] == sha and result["matched_by"] == "filename"


def test_keyword_takes_part_in_fusion(imgdex_client: Client) -> None:
    red = upload(imgdex_client, "red", 1)
    blue = upload(imgdex_client, "blue", 2)
    describe(imgdex_client, red, "human", "zebra crossing")
    describe(imgdex_client, blue, "human", "a street")
    r = imgdex_client.post("/api/search/text", json={"query": "zebra", "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fusion"] == "rrf"
    assert {s["index"] for s in body["indexes_searched"]} >= {"keyword", "toy_words_v1"}
    first = body["results"][0]
    assert first["sha256"] == red
    assert "keyword" in {m["index"] for m in first["matches"]}
    # It can be weighed, and named in a list of indexes.
    body = {"query": "zebra", "index": ["keyword", "toy_words_v1"], "weights": {"keyword": 2}}
    r = imgdex_client.post("/api/search/text", json=body)
    assert r.status_code == 200, r.text
    assert [s["index"] for s in r.json()["indexes_searched"]] == ["toy_words_v1", "keyword"]


def test_keyword_cannot_answer_image_queries(imgdex_client: Client) -> None:
    upload(imgdex_client, "red", 1)
    r = imgdex_client.post(
        "/api/search/image",
        files={"file": ("q.png", image_bytes("red"), "image/png")},
        data={"index": "keyword"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "index_cannot_answer"


def test_documents_follow_deletes(imgdex_client: Client) -> None:
    lib = imgdex_client.app.state.runtime
    kept = upload(imgdex_client, "red", 1, name="harbour.png")
    soft = upload(imgdex_client, "blue", 2)
    hard = upload(imgdex_client, "green", 3)
    for sha in (kept, soft, hard):
        describe(imgdex_client, sha, "human", "fishing boats in the harbour")
    describe(imgdex_client, kept, "vlm1", "boats")
    r = imgdex_client.delete(f"/api/images/{kept}/descriptions/human")
    assert r.status_code == 200, r.text
    assert imgdex_client.delete(f"/api/images/{soft}").status_code == 200
    r = imgdex_client.delete(f"/api/images/{hard}", params={"hard": "true"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    results = keyword(imgdex_client, "harbour fishing")
    # Only the file name of `kept` still says "harbour"; its description went.
    assert [(r["sha256"], r["matched_by"]) for r in results] == [(kept, "filename")]
    fields = {
        (image, field)
        for image, field, _ in lib.catalog.keyword_search("harbour OR boats fishing", 50)
    }
    assert all(image != hard for image, _ in fields)
    # A trashed image keeps its documents, so a restore makes it findable again.
    assert (soft, "d:human") in {
        (i, f) for i, f in lib.catalog.engine.read("SELECT image_sha256, field FROM keyword_docs")
    }


def test_tags_are_searchable_once_indexed(imgdex_client: Client) -> None:
    # The tag store calls this in the transaction that changes an image's tags.
    sha = upload(imgdex_client, "red", 1)
    catalog = imgdex_client.app.state.runtime.catalog
    with catalog.transaction() as db:
        catalog.keyword.index_tags(db, sha, ["beach", "日落"])
    for query in ("beach", "日落"):
        (result,) = keyword(imgdex_client, query)
        assert (result["sha256"], result["matched_by"]) == (sha, "tags")
    with catalog.transaction() as db:
        catalog.keyword.index_tags(db, sha, [])
    assert keyword(imgdex_client, "beach") == []


def test_words_too_common_to_rank_by_are_left_out(
    imgdex_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scoring every document holding "the" costs seconds at 100k documents.
    monkeypatch.setattr(catalog_keyword, "COMMON_AT", 2)
    shas = [upload(imgdex_client, "red", i) for i in (1, 2, 3)]
    describe(imgdex_client, shas[0], "human", "the harbour")
    describe(imgdex_client, shas[1], "human", "the street")
    describe(imgdex_client, shas[2], "human", "the park")
    assert [r["sha256"] for r in keyword(imgdex_client, "the harbour")] == [shas[0]]
    assert keyword(imgdex_client, "the") == []
    monkeypatch.setattr(catalog_keyword, "COMMON_AT", 3)
    assert len(keyword(imgdex_client, "the")) == 3
