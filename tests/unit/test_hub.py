"""`find_problem`: why a model cannot load offline, without loading it."""

from __future__ import annotations

from pathlib import Path

from imgdex.hub import find_problem, model_source


def test_a_local_directory_has_no_problem(tmp_path: Path) -> None:
    assert find_problem(str(tmp_path)) is None
    assert "does not exist" in (find_problem(str(tmp_path / "missing")) or "")


def test_a_name_that_cannot_be_a_repo_id_is_bundled_not_a_crash() -> None:
    # e.g. the OCR plugin's models ship inside its wheel: nothing to download or find.
    for name in ("some bundled model", "x" * 200):
        assert model_source(name) == "bundled"
        assert find_problem(name) is None
    assert model_source("BAAI/bge-small-zh-v1.5") == "hub"
