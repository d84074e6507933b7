"""The embedder on a tiny random BERT: shapes, pooling, agreement with PyTorch, batching,
query instructions, the export cache and lazy loading."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import imgdex_bge.export
from imgdex_bge import BgeEmbedder

MakeEmbedder = Callable[..., BgeEmbedder]

TEXTS = [
    "a cat sits on the mat",
    "dog",
    "the kitten sleeps by the window today",
    "stock market report",
    "a dog runs in the park on the beach one two three four",
]


def torch_reference(model_dir: Path, texts: list[str], pooling: str) -> npt.NDArray[np.float32]:
    """Embeddings computed by hand with PyTorch and transformers' own tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
    pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled.numpy().astype(np.float32)


def test_vectors_are_unit_float32_of_the_model_dimension(make_embedder: MakeEmbedder) -> None:
    embedder = make_embedder()
    assert embedder.dimension is None  # unknown until loaded
    vectors = embedder.embed_texts(TEXTS, query=False)
    assert embedder.dimension == 32
    assert vectors.shape == (len(TEXTS), 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert embedder.embed_texts([], query=True).shape == (0, 32)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_onnx_matches_pytorch(make_embedder: MakeEmbedder, tiny_model: Path, pooling: str) -> None:
    # Texts of different lengths in one batch: padding must not leak into either pooling.
    ours = make_embedder(pooling=pooling, query_instruction="").embed_texts(TEXTS, query=True)
    expected = torch_reference(tiny_model, TEXTS, pooling)
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_cls_and_mean_pooling_differ(make_embedder: MakeEmbedder) -> None:
    cls = make_embedder(pooling="cls").embed_texts(TEXTS, query=False)
    mean = make_embedder(pooling="mean").embed_texts(TEXTS, query=False)
    assert np.abs(cls - mean).max() > 0.1


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_batched_results_match_single_ones(make_embedder: MakeEmbedder, pooling: str) -> None:
    embedder = make_embedder(pooling=pooling, batch_size=2)
    batched = embedder.embed_texts(TEXTS, query=False)
    single = np.stack([embedder.embed_texts([text], query=False)[0] for text in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    whole = make_embedder(pooling=pooling, batch_size=64).embed_texts(TEXTS, query=False)
    np.testing.assert_allclose(batched, whole, atol=1e-5)


def test_query_instruction_is_prepended_to_queries_only(make_embedder: MakeEmbedder) -> None:
    embedder = make_embedder(query_instruction="query: ")
    query = embedder.embed_texts(["a cat sits"], query=True)
    document = embedder.embed_texts(["a cat sits"], query=False)
    by_hand = embedder.embed_texts(["query: a cat sits"], query=False)
    np.testing.assert_allclose(query, by_hand, atol=1e-6)
    assert np.abs(query - document).max() > 1e-3


def test_empty_instruction_makes_queries_and_documents_equal(make_embedder: MakeEmbedder) -> None:
    embedder = make_embedder(query_instruction="")
    np.testing.assert_array_equal(
        embedder.embed_texts(TEXTS, query=True), embedder.embed_texts(TEXTS, query=False)
    )


def test_long_texts_are_truncated_at_max_length(make_embedder: MakeEmbedder) -> None:
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight"] * 5
    embedder = make_embedder(max_length=8)
    long = embedder.embed_texts([" ".join(words)], query=False)
    # 8 tokens = [CLS] + 6 words + [SEP]
    first_six = embedder.embed_texts([" ".join(words[:6])], query=False)
    np.testing.assert_allclose(long, first_six, atol=1e-6)
    # The model's own limit (64 positions) caps a larger setting instead of crashing.
    capped = make_embedder(max_length=10_000).embed_texts([" ".join(words * 3)], query=False)
    assert np.isfinite(capped).all()


def test_export_is_cached_and_reused(
    make_embedder: MakeEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = make_embedder(cache=cache)
    first.load()
    assert first.exported and first.onnx_path is not None
    assert first.onnx_path.is_file() and first.onnx_path.parent.parent == cache
    stamp = first.onnx_path.stat().st_mtime_ns
    expected = first.embed_texts(TEXTS, query=False)

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although a cached export exists")

    monkeypatch.setattr(imgdex_bge.export, "export_onnx", no_export)
    second = make_embedder(cache=cache)
    second.load()
    assert not second.exported
    assert second.onnx_path == first.onnx_path
    assert first.onnx_path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(second.embed_texts(TEXTS, query=False), expected)
    # Written through a temporary directory renamed into place: nothing else is left.
    assert [p.name for p in cache.iterdir()] == [first.onnx_path.parent.name]


def test_changed_weights_get_a_new_export(
    make_embedder: MakeEmbedder,
    tiny_model: Path,
    tiny_bert_builder: Callable[..., Path],
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    before = make_embedder(model=str(copy), cache=cache)
    old = before.embed_texts(TEXTS, query=False)
    tiny_bert_builder(copy, seed=1)  # same path, same config, other weights
    after = make_embedder(model=str(copy), cache=cache)
    new = after.embed_texts(TEXTS, query=False)
    assert after.exported and after.onnx_path != before.onnx_path
    assert len(list(cache.iterdir())) == 2
    assert np.abs(old - new).max() > 0.1


def test_damaged_cached_export_is_made_again(make_embedder: MakeEmbedder, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = make_embedder(cache=cache)
    expected = first.embed_texts(TEXTS, query=False)
    assert first.onnx_path is not None
    first.onnx_path.write_bytes(b"not an onnx file")
    again = make_embedder(cache=cache)
    np.testing.assert_allclose(again.embed_texts(TEXTS, query=False), expected, atol=1e-6)
    assert again.exported


def test_loading_is_lazy_and_idempotent(
    make_embedder: MakeEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_export = imgdex_bge.export.export_onnx

    def counting_export(model_dir: Path, path: Path) -> None:
        calls.append(model_dir)
        real_export(model_dir, path)

    monkeypatch.setattr(imgdex_bge.export, "export_onnx", counting_export)
    cache = tmp_path / "cache"
    embedder = make_embedder(cache=cache)
    assert not embedder.loaded and not cache.exists()  # construction reads nothing
    embedder.load()
    session = embedder._session
    embedder.load()
    embedder.embed_texts(["a cat"], query=True)
    assert embedder._session is session
    assert len(calls) == 1


def test_first_use_loads_once_under_concurrency(
    make_embedder: MakeEmbedder, tmp_path: Path
) -> None:
    embedder: BgeEmbedder = make_embedder(cache=tmp_path / "cache")
    expected = make_embedder().embed_texts(TEXTS, query=False)
    results: list[npt.NDArray[np.float32]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(embedder.embed_texts(TEXTS, query=False))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 20
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)


def test_threads_setting_reaches_onnxruntime(make_embedder: MakeEmbedder) -> None:
    embedder = make_embedder(threads=1)
    embedder.load()
    assert embedder._session.get_session_options().intra_op_num_threads == 1
    assert embedder.providers[-1] == "CPUExecutionProvider"


def test_pooling_mismatch_with_the_checkpoint_is_logged(
    make_embedder: MakeEmbedder, tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    (copy / "1_Pooling").mkdir()
    (copy / "1_Pooling" / "config.json").write_text(
        '{"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}'
    )
    make_embedder(model=str(copy), pooling="mean", cache=tmp_path / "c").load()
    assert "trained with" not in caplog.text
    make_embedder(model=str(copy), pooling="cls", cache=tmp_path / "c").load()
    assert "trained with mean pooling" in caplog.text


def test_models_without_tokenizer_json_use_transformers(
    make_embedder: MakeEmbedder, tiny_model: Path, tiny_vocab: list[str], tmp_path: Path
) -> None:
    # A bare vocab.txt (older checkpoints) goes through AutoTokenizer: same vectors.
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    (copy / "tokenizer.json").unlink()
    (copy / "vocab.txt").write_text("\n".join(tiny_vocab) + "\n")
    (copy / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "BertTokenizer", "do_lower_case": true, "model_max_length": 64}'
    )
    ours = make_embedder(model=str(copy), cache=tmp_path / "c").embed_texts(TEXTS, query=False)
    expected = make_embedder().embed_texts(TEXTS, query=False)
    np.testing.assert_allclose(ours, expected, atol=1e-6)
