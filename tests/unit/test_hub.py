"""`find_problem`: why a model cannot load offline, without loading it."""

from __future__ import annotations

from pathlib import Path

from imgdex.hub import find_problem


def test_a_local_directory_has_no_problem(tmp_path: Path) -> None:
    assert find_problem(str(tmp_path)) is None
    assert "does not exist" in (find_problem(str(tmp_path / "missing")) or "")


def test_a_name_that_cannot_be_a_repo_id_is_a_problem_not_a_crash() -> None:
    problem = find_problem("some bundled model")
    assert problem is not None and "neither a local directory" in problem
    assert find_problem("x" * 200) is not None
