"""Unit tests for imgdex.ops.fusion: collapsing, reciprocal rank fusion, max fusion, ties."""

from __future__ import annotations

import itertools
import random

import pytest

from imgdex.ops.fusion import FusedResult, Fusion, Hit, _fuse_many, _fuse_one, collapse, fuse


def hits(index: str, *pairs: tuple[str, float], method: str = "image") -> list[Hit]:
    return [Hit(image, score, index, method) for image, score in pairs]


def summary(results: list[FusedResult]) -> list[tuple[str, float, list[tuple[int, str, float]]]]:
    # Which of two equally scored descriptions explains a match is collapse's business
    # (tested there); here: images, scores, and the rank and score of each index's match.
    return [
        (r.image, r.score, [(rank, h.index, h.score) for rank, h in r.matches]) for r in results
    ]


# --- collapse ----------------------------------------------------------------------


def test_collapse_keeps_best_hit_per_image() -> None:
    raw = [
        Hit("a", 0.5, "words", "caption"),
        Hit("b", 0.7, "words", "caption"),
        Hit("a", 0.9, "words", "ocr"),
        Hit("a", 0.1, "words", "tags"),
        Hit("c", 0.3, "words", "caption"),
    ]
    assert collapse(raw) == [
        Hit("a", 0.9, "words", "ocr"),
        Hit("b", 0.7, "words", "caption"),
        Hit("c", 0.3, "words", "caption"),
    ]
    assert collapse([]) == []


def test_collapse_orders_by_score_then_id() -> None:
    raw = hits("ix", ("d", 0.5), ("b", 0.5), ("c", 0.9), ("a", 0.5))
    assert [h.image for h in collapse(raw)] == ["c", "a", "b", "d"]


def test_collapse_is_independent_of_input_order() -> None:
    raw = [
        Hit("a", 0.8, "words", "caption"),
        Hit("a", 0.8, "words", "ocr"),  # the same text twice gives the same score
        Hit("b", 0.8, "words", "caption"),
        Hit("c", 0.4, "words", "caption"),
        Hit("c", 0.6, "words", "tags"),
    ]
    expected = collapse(raw)
    for perm in itertools.permutations(raw):
        assert collapse(perm) == expected


# --- reciprocal rank fusion --------------------------------------------------------


def test_rrf_scores_are_sum_of_reciprocal_ranks() -> None:
    per_index = {
        "img": collapse(hits("img", ("a", 0.30), ("b", 0.20), ("c", 0.10))),
        "txt": collapse(hits("txt", ("c", 0.90), ("a", 0.80), ("d", 0.70), method="caption")),
    }
    results = {r.image: r for r in fuse(per_index)}
    assert set(results) == {"a", "b", "c", "d"}
    assert results["a"].score == pytest.approx(1 / 61 + 1 / 62)
    assert results["b"].score == pytest.approx(1 / 62)
    assert results["c"].score == pytest.approx(1 / 63 + 1 / 61)
    assert results["d"].score == pytest.approx(1 / 63)
    assert [r.image for r in fuse(per_index)] == ["a", "c", "b", "d"]
    assert results["a"].matches == [(1, per_index["img"][0]), (2, per_index["txt"][1])]


def test_rrf_k_parameter() -> None:
    per_index = {
        "x": hits("x", ("a", 0.9), ("b", 0.8)),
        "y": hits("y", ("b", 0.9)),
    }
    results = {r.image: r.score for r in fuse(per_index, k=1)}
    assert results == pytest.approx({"a": 1 / 2, "b": 1 / 3 + 1 / 2})


def test_image_with_many_descriptions_counts_once() -> None:
    words = [
        Hit("many", 0.60, "words", "caption"),
        Hit("many", 0.59, "words", "ocr"),
        Hit("many", 0.58, "words", "tags"),
        Hit("many", 0.57, "words", "alt"),
        Hit("one", 0.61, "words", "caption"),
    ]
    image = hits("img", ("many", 0.2), ("one", 0.3))
    per_index = {"words": collapse(words), "img": collapse(image)}
    results = {r.image: r for r in fuse(per_index)}
    # "one" is first in both indexes; "many" second in both, however many captions match.
    assert results["one"].score == pytest.approx(2 / 61)
    assert results["many"].score == pytest.approx(2 / 62)
    assert len(results["many"].matches) == 2
    assert [r.image for r in fuse(per_index)] == ["one", "many"]


def test_rrf_weights() -> None:
    per_index = {
        "img": hits("img", ("a", 0.3), ("b", 0.2)),
        "txt": hits("txt", ("b", 0.9), ("a", 0.8)),
    }
    plain = {r.image: r.score for r in fuse(per_index)}
    assert plain["a"] == pytest.approx(plain["b"])
    weighted = fuse(per_index, weights={"txt": 2.0})
    assert [r.image for r in weighted] == ["b", "a"]
    scores = {r.image: r.score for r in weighted}
    assert scores["b"] == pytest.approx(1 / 62 + 2 / 61)
    assert scores["a"] == pytest.approx(1 / 61 + 2 / 62)
    # An index missing from the weights gets 1.0; a zero weight silences an index.
    muted = {r.image: r.score for r in fuse(per_index, weights={"img": 0.0})}
    assert muted == pytest.approx({"a": 1 / 62, "b": 1 / 61})


def test_rrf_best_match_is_best_rank() -> None:
    per_index = {
        "img": hits("img", ("x", 0.9), ("a", 0.10)),
        "txt": hits("txt", ("a", 0.95), method="caption"),
    }
    result = next(r for r in fuse(per_index) if r.image == "a")
    assert result.best == per_index["txt"][0]  # rank 1 beats rank 2
    assert [rank for rank, _ in result.matches] == [1, 2]


def test_rrf_ties_broken_by_image_id() -> None:
    # "b" and "a" each rank first in one index and second in the other: equal scores.
    per_index = {
        "x": hits("x", ("b", 0.9), ("a", 0.8)),
        "y": hits("y", ("a", 0.9), ("b", 0.8)),
    }
    results = fuse(per_index)
    assert results[0].score == pytest.approx(results[1].score)
    assert [r.image for r in results] == ["a", "b"]


def test_order_independent_of_dict_order_and_tied_hits() -> None:
    base = {
        "img": [
            Hit("a", 0.5, "img", "image"),
            Hit("b", 0.5, "img", "image"),
            Hit("c", 0.4, "img", "image"),
        ],
        "txt": [
            Hit("c", 0.8, "txt", "caption"),
            Hit("c", 0.8, "txt", "ocr"),
            Hit("d", 0.8, "txt", "caption"),
            Hit("a", 0.7, "txt", "caption"),
        ],
        "alt": [Hit("d", 0.2, "alt", "image"), Hit("b", 0.2, "alt", "image")],
    }
    rng = random.Random(7)

    def shuffled_run(fusion: str) -> list[tuple[str, float, list[tuple[int, str, float]]]]:
        names = list(base)
        rng.shuffle(names)
        per_index = {}
        for name in names:
            raw = list(base[name])
            rng.shuffle(raw)
            per_index[name] = collapse(raw)
        return summary(fuse(per_index, method=fusion))  # type: ignore[arg-type]

    for fusion in ("rrf", "max"):
        expected = shuffled_run(fusion)
        for _ in range(30):
            assert shuffled_run(fusion) == expected


# --- single index and max fusion ---------------------------------------------------


def test_single_index_gives_raw_scores() -> None:
    per_index = {"img": collapse(hits("img", ("a", 0.99), ("b", 0.42), ("c", 0.10)))}
    results = fuse(per_index)
    assert [(r.image, r.score) for r in results] == [("a", 0.99), ("b", 0.42), ("c", 0.10)]
    assert all(r.best.index == "img" for r in results)
    assert [r.matches[0][0] for r in results] == [1, 2, 3]


def test_single_index_with_weight_still_raw() -> None:
    per_index = {"img": hits("img", ("a", 0.99))}
    assert fuse(per_index, weights={"img": 5.0})[0].score == 0.99


def random_hits(rng: random.Random, index: str, n: int) -> list[Hit]:
    # Few images, few distinct scores and several methods: duplicates and ties abound.
    return [
        Hit(
            f"img{rng.randrange(n // 2 + 1)}",
            rng.choice([0.9, 0.5, 0.5, 0.25, -0.1]),
            index,
            rng.choice(["image", "caption", "ocr"]),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("fusion_method", ["rrf", "max"])
def test_single_index_fast_path_equals_general_path(fusion_method: Fusion) -> None:
    rng = random.Random(11)
    weights = {"ix": 3.0}  # ignored with one index, on both paths
    for n in (0, 1, 2, 5, 20, 60):
        for _ in range(20):
            collapsed = collapse(random_hits(rng, "ix", n))
            general = _fuse_many({"ix": collapsed}, fusion_method, 60, weights)
            assert _fuse_one(collapsed) == general
            assert fuse({"ix": collapsed}, method=fusion_method, weights=weights) == general


@pytest.mark.parametrize("fusion_method", ["rrf", "max"])
def test_limit_keeps_the_first_results(fusion_method: Fusion) -> None:
    rng = random.Random(3)
    for n_indexes in (1, 2, 3):
        for _ in range(30):
            per_index = {
                f"ix{i}": collapse(random_hits(rng, f"ix{i}", rng.randrange(0, 25)))
                for i in range(n_indexes)
            }
            full = fuse(per_index, method=fusion_method)
            for limit in (0, 1, 3, 10, 100):
                assert fuse(per_index, method=fusion_method, limit=limit) == full[:limit]


def test_single_index_fast_path_ranks_and_order_of_unsorted_input() -> None:
    # Distinct images out of score order: ranks stay the input positions, the results
    # are ordered by score then image id, as on the general path.
    raw = hits("ix", ("c", 0.2), ("a", 0.9), ("b", 0.2), ("d", 0.5))
    fast = _fuse_one(raw)
    assert fast == _fuse_many({"ix": raw}, "rrf", 60, {})
    assert fast is not None
    assert [(r.image, r.matches[0][0]) for r in fast] == [("a", 2), ("d", 4), ("b", 3), ("c", 1)]


def test_single_index_uncollapsed_input_takes_general_path() -> None:
    rng = random.Random(5)
    for _ in range(50):
        raw = random_hits(rng, "ix", 12)
        if len({h.image for h in raw}) == len(raw):
            continue
        assert _fuse_one(raw) is None
        merged = fuse({"ix": raw})
        assert merged == _fuse_many({"ix": raw}, "rrf", 60, {})
        assert len(merged) == len({h.image for h in raw})


def test_max_fusion_picks_highest_raw_score() -> None:
    per_index = {
        "img": hits("img", ("a", 0.12), ("b", 0.10)),
        "txt": hits("txt", ("b", 0.85), ("a", 0.30), method="caption"),
    }
    results = fuse(per_index, method="max")
    assert [(r.image, r.score) for r in results] == [("b", 0.85), ("a", 0.30)]
    b = results[0]
    assert b.best == per_index["txt"][0]
    assert [m[1].index for m in b.matches] == ["txt", "img"]
    assert b.matches[1] == (2, per_index["img"][1])  # ranks are kept per index


def test_max_fusion_best_match_is_highest_score_even_at_worse_rank() -> None:
    per_index = {
        "img": hits("img", ("a", 0.20)),
        "txt": hits("txt", ("x", 0.95), ("a", 0.90), method="caption"),
    }
    a = next(r for r in fuse(per_index, method="max") if r.image == "a")
    assert a.score == 0.90
    assert a.best.index == "txt"  # rank 2 but the highest score


def test_max_fusion_with_negative_scores() -> None:
    # l2 indexes report -distance: every score is negative.
    per_index = {
        "l2": hits("l2", ("a", -0.5), ("b", -1.0)),
        "l2b": hits("l2b", ("b", -0.2), ("a", -3.0)),
    }
    results = fuse(per_index, method="max")
    assert [(r.image, r.score) for r in results] == [("b", -0.2), ("a", -0.5)]


def test_empty_input() -> None:
    assert fuse({}) == []
    assert fuse({"img": []}) == []
    assert fuse({"img": [], "txt": hits("txt", ("a", 0.5))})[0].image == "a"
