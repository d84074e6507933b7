"""hnswlib's exact filtered search scores from its own copy of the vectors: the same labels
and scores as the graph search, for every metric, after updates, hides and a reopen
(the copy then read back from the saved graph file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from imgdex.index.hnsw import HnswIndex
from imgdex.index.hnsw_vectors import read_saved
from imgdex.providers import Metric

DIM = 24


def open_index(path: Path, metric: Metric) -> HnswIndex:
    return HnswIndex(path, DIM, metric, m=16, ef_construction=200, ef=400)


def brute(
    vectors: dict[int, npt.NDArray[np.float32]], query: npt.NDArray[np.float32], metric: Metric
) -> dict[int, float]:
    out = {}
    for label, v in vectors.items():
        if metric == "l2":
            out[label] = -float(np.sum((v.astype(np.float64) - query) ** 2))
        elif metric == "cosine":
            out[label] = float(v @ query / np.linalg.norm(v) / np.linalg.norm(query))
        else:
            out[label] = float(v.astype(np.float64) @ query)
    return out


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_search_matches_the_graph_search(tmp_path: Path, metric: Metric) -> None:
    rng = np.random.default_rng(5)
    vectors = {label: rng.standard_normal(DIM).astype(np.float32) * 3 for label in range(1, 301)}
    index = open_index(tmp_path, metric)
    labels = np.arange(1, 301, dtype=np.int64)
    index.add(labels, np.stack([vectors[int(x)] for x in labels]))
    # An update (the last of a repeated label wins) and a hidden label.
    vectors[7] = rng.standard_normal(DIM).astype(np.float32)
    index.add(np.asarray([7, 7], np.int64), np.stack([vectors[1], vectors[7]]))
    index.hide([9])
    among = np.asarray([*range(1, 300, 2), 7, 9, 10_000], np.int64)  # one label not held
    query = rng.standard_normal(DIM).astype(np.float32)
    allowed = {x: v for x, v in vectors.items() if x in set(among.tolist()) and x != 9}
    truth = sorted(brute(allowed, query, metric).items(), key=lambda t: -t[1])[:10]

    for reopened in (False, True):
        if reopened:
            index.save()
            index = open_index(tmp_path, metric)
        found, scores = index.search_among(query, 10, among)  # exact: few labels
        assert found.tolist() == [label for label, _ in truth]
        assert np.allclose(scores, [s for _, s in truth], rtol=1e-5, atol=1e-5)
        graph, graph_scores = index.search(query, 300)  # ef 400: every label, exactly
        by_label = dict(zip(graph.tolist(), graph_scores.tolist(), strict=True))
        assert np.allclose(scores, [by_label[x] for x in found.tolist()], atol=1e-5)


def test_saved_graph_file_gives_back_labels_and_stored_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    index = open_index(tmp_path, "cosine")
    vectors = rng.standard_normal((50, DIM)).astype(np.float32)
    index.add(np.arange(100, 150, dtype=np.int64), vectors)
    index.save()
    got = read_saved(tmp_path / "hnsw.1.bin", DIM)
    assert got is not None
    labels, stored = got
    # hnswlib inserts on several threads: the file's order is not the order added.
    order = np.argsort(labels)
    assert labels[order].tolist() == list(range(100, 150))
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert np.allclose(stored[order], normed, atol=1e-6)
    assert read_saved(tmp_path / "hnsw.1.bin", DIM + 1) is None  # another layout
    (tmp_path / "junk.bin").write_bytes(b"\x01" * 40)
    assert read_saved(tmp_path / "junk.bin", DIM) is None


def test_saved_vectors_are_mapped_not_held_twice(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = open_index(tmp_path, "ip")
    vectors = {label: rng.standard_normal(DIM).astype(np.float32) for label in range(1, 201)}
    index.add(np.arange(1, 201, dtype=np.int64), np.stack(list(vectors.values())))
    assert index.vectors_in_memory() == 200  # nothing saved yet
    index.save()
    assert index.vectors_in_memory() == 0  # read from the saved file from now on
    # Added and updated after the save: held in memory, and they win over the file.
    vectors[5] = rng.standard_normal(DIM).astype(np.float32) * 4
    vectors[500] = rng.standard_normal(DIM).astype(np.float32)
    index.add(np.asarray([5, 500], np.int64), np.stack([vectors[5], vectors[500]]))
    assert index.vectors_in_memory() == 2
    query = rng.standard_normal(DIM).astype(np.float32)
    among = np.asarray([5, 500, *range(100, 150)], np.int64)
    truth = sorted(
        brute({x: vectors[x] for x in among.tolist()}, query, "ip").items(), key=lambda t: -t[1]
    )[:10]
    found, scores = index.search_among(query, 10, among)
    assert found.tolist() == [label for label, _ in truth]
    assert np.allclose(scores, [s for _, s in truth], rtol=1e-5, atol=1e-5)
    index.save()
    assert index.vectors_in_memory() == 0
    reopened = open_index(tmp_path, "ip")
    assert reopened.vectors_in_memory() == 0
    again, _ = reopened.search_among(query, 10, among)
    assert again.tolist() == found.tolist()
