"""The keyword index: full-text search over descriptions, tags and file names.

One document per ``(image, field)``: a description (field ``d:<method>``), the image's
tags (``tags``) or its uploaded file name (``filename``). Documents are written in the
same transaction as what they index (`DescriptionStore` and `ImageStore` call in here),
and an image's hard delete cascades to them.

Chinese, Japanese and Korean have no spaces between words, and a full-text tokenizer
keeps a run of them as one token, so a 2-character word inside a sentence would never
match. The text is prepared before it is indexed: every CJK run becomes its overlapping
bigrams plus its last character (``海边的日落`` -> ``海边 边的 的日 日落 落``). A query is
prepared the same way: a CJK word of two or more characters becomes the phrase of its
bigrams (so any substring matches), one character a prefix term; other words match
whole, or as a prefix from 3 characters on (``sunset`` finds ``sunsets``). Terms are
OR-ed: BM25 ranks documents matching more and rarer terms first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple

from imgdex.catalog.dialect import Connection, Dialect
from imgdex.catalog.engine import Store, marks

__all__ = [
    "COMMON_AT",
    "FILENAME",
    "TAGS",
    "KeywordStore",
    "Term",
    "backfill",
    "description_field",
    "field_label",
    "index_tags",
    "index_text",
    "match_expression",
    "prepare",
    "query_terms",
]

FILENAME = "filename"
TAGS = "tags"
_MAX_TERMS = 32
# A word in more documents than this is left out of a query: BM25 would have to score
# every one of them (seconds at 100k documents for "a" or "the") for a term that hardly
# ranks (its IDF is low).
COMMON_AT = 5000

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_RUNS = re.compile(rf"([{_CJK}]+)|((?:(?![{_CJK}])\w)+)")


def description_field(method: str) -> str:
    """The field of a description of `method`."""
    return f"d:{method}"


def field_label(field: str) -> str:
    """How a match on `field` is reported (``matched_by``): the description's method,
    ``tags`` or ``filename``."""
    return field[2:] if field.startswith("d:") else field


def _bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def prepare(text: str) -> str:
    """`text` as the full-text table stores it (CJK runs as bigrams, see above)."""
    out: list[str] = []
    for match in _RUNS.finditer(text.lower()):
        cjk, word = match.groups()
        if cjk:
            out.extend(_bigrams(cjk))
            out.append(cjk[-1])
        else:
            out.append(word)
    return " ".join(out)


class Term(NamedTuple):
    """One term of a query: its MATCH expression, and the plain word it stands for
    (None for a CJK phrase or character, which is always kept)."""

    expression: str
    word: str | None


def query_terms(query: str) -> list[Term]:
    """A user's query as MATCH terms (see the module's docstring)."""
    terms: list[Term] = []
    for match in _RUNS.finditer(query.lower()):
        cjk, word = match.groups()
        if cjk:
            phrase = f'"{cjk}"*' if len(cjk) == 1 else '"' + " ".join(_bigrams(cjk)) + '"'
            terms.append(Term(phrase, None))
        else:
            # A prefix from 4 characters on: "the"* would match every "there" and "them".
            terms.append(Term(f'"{word}"*' if len(word) >= 4 else f'"{word}"', word))
    return list(dict.fromkeys(terms))[:_MAX_TERMS]


def match_expression(query: str, common: Collection[str] = ()) -> str | None:
    """The full-text MATCH expression for a user's query, without the words in
    `common`; None when no term is left."""
    terms = [t.expression for t in query_terms(query) if t.word not in common]
    return " OR ".join(terms) if terms else None


def index_text(dialect: Dialect, db: Connection, image: str, field: str, text: str | None) -> None:
    """Write (or, with no text, remove) one document, inside the caller's transaction."""
    sql = dialect.keyword()
    if not text or not text.strip():
        rows = db.execute(
            "SELECT id FROM keyword_docs WHERE image_sha256 = ? AND field = ?", (image, field)
        ).fetchall()
        for (doc,) in rows:
            db.execute(sql.remove, (doc,))
        db.execute("DELETE FROM keyword_docs WHERE image_sha256 = ? AND field = ?", (image, field))
        return
    upsert = dialect.upsert("image_sha256, field", "field = excluded.field")
    (doc,) = db.execute(
        f"INSERT INTO keyword_docs (image_sha256, field) VALUES (?, ?) {upsert} RETURNING id",
        (image, field),
    ).fetchone()
    db.execute(sql.remove, (doc,))
    db.execute(sql.put, (doc, prepare(text)))


def index_tags(dialect: Dialect, db: Connection, image: str, tags: Iterable[str]) -> None:
    """Index an image's current tags (all of them; none removes the document). For the
    tag store to call in the transaction that changes an image's tags."""
    index_text(dialect, db, image, TAGS, " ".join(tags))


def backfill(dialect: Dialect) -> Callable[[Connection], None]:
    """The migration step that indexes what a catalog held before the keyword index."""

    def run(db: Connection) -> None:
        rows = db.execute("SELECT image_sha256, method, content FROM descriptions").fetchall()
        for image, method, content in rows:
            index_text(dialect, db, image, description_field(method), content)
        for image, name in db.execute("SELECT sha256, original_name FROM images").fetchall():
            index_text(dialect, db, image, FILENAME, name)

    return run


class KeywordStore(Store):
    """Keyword search. Methods are blocking; call them from worker threads."""

    def keyword_search(self, query: str, limit: int) -> list[tuple[str, str, float]]:
        """``(image, field, score)`` of the best `limit` documents of live images for
        `query`, best first (score: BM25, higher is better)."""
        if limit <= 0:
            return []
        words = [t.word for t in query_terms(query) if t.word is not None]
        common: set[str] = set()
        if words:
            sql = self.dialect.keyword().term_docs.format(marks=marks(len(words)))
            common = {str(w) for w, docs in self._read(sql, words) if docs > COMMON_AT}
        expression = match_expression(query, common)
        if expression is None:
            return []
        return [
            (str(image), str(field), float(score))
            for image, field, score in self._read(
                self.dialect.keyword().search, (expression, limit)
            )
        ]

    def index_tags(self, db: Connection, image: str, tags: Iterable[str]) -> None:
        """Index an image's current tags, in the caller's transaction (the tag store's
        hook: ``catalog.keyword.index_tags(db, image, tags)``)."""
        index_tags(self.dialect, db, image, tags)

    def keyword_count(self) -> int:
        """Documents in the keyword index."""
        return int(self._read("SELECT COUNT(*) FROM keyword_docs")[0][0])
