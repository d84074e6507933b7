"""The dialect seam holds: SQLite-only SQL lives in the SQLite dialect alone
(imgdex.catalog.sqlite, its schema sqlite_schema and change logs sqlite_changes), and
no module outside the catalog package runs SQL."""

from __future__ import annotations

import re
from pathlib import Path

import imgdex
import imgdex.catalog

CORE = Path(imgdex.__file__).parent
PACKAGE = Path(imgdex.catalog.__file__).parent
DIALECT_MODULES = {"sqlite.py", "sqlite_schema.py", "sqlite_changes.py"}

# Constructs PostgreSQL lacks or spells differently; the SQLite dialect supplies them.
SQLITE_ONLY = {
    "INSERT OR IGNORE/REPLACE": r"\bINSERT\s+OR\s+(IGNORE|REPLACE)\b",
    "ON CONFLICT": r"\bON\s+CONFLICT\b",
    "datetime()": r"\bdatetime\s*\(",
    "julianday()": r"\bjulianday\s*\(",
    "BEGIN IMMEDIATE": r"\bBEGIN\s+IMMEDIATE\b",
    "PRAGMA": r"\bPRAGMA\b",
    "AUTOINCREMENT": r"\bAUTOINCREMENT\b",
    "group_concat()": r"\bgroup_concat\s*\(",
    "rowid": r"\browid\b",
    "sqlite_master": r"\bsqlite_master\b",
    "the sqlite3 driver": r"\bsqlite3\b",
}


def offences(path: Path, patterns: dict[str, str]) -> list[str]:
    text = path.read_text()
    found = []
    for what, pattern in patterns.items():
        for match in re.finditer(pattern, text, re.IGNORECASE):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{path.relative_to(CORE)}:{line}: {what}")
    return found


def test_sqlite_only_sql_stays_in_the_sqlite_dialect() -> None:
    modules = sorted(p for p in PACKAGE.glob("*.py") if p.name not in DIALECT_MODULES)
    assert {p.name for p in modules} >= {"engine.py", "jobs.py", "images.py", "migrations.py"}
    found = [line for path in modules for line in offences(path, SQLITE_ONLY)]
    assert found == []


def test_the_check_catches_what_it_looks_for() -> None:
    # The dialect module itself must trip every pattern it is the home of.
    found = [line for name in DIALECT_MODULES for line in offences(PACKAGE / name, SQLITE_ONLY)]
    kinds = {line.rsplit(": ", 1)[1] for line in found}
    assert {"ON CONFLICT", "datetime()", "BEGIN IMMEDIATE", "PRAGMA", "AUTOINCREMENT"} <= kinds


def test_no_sql_outside_the_catalog() -> None:
    modules = sorted(p for p in CORE.rglob("*.py") if PACKAGE not in p.parents)
    patterns = {
        "execute()": r"\.(execute|executemany|executescript)\s*\(",
        "the sqlite3 driver": r"\bimport\s+sqlite3\b",
    }
    found = [line for path in modules for line in offences(path, patterns)]
    assert found == []
