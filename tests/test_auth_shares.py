"""Share-link machinery on a real catalog (the albums API builds its routes on it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgdex.auth.policy import Principal
from imgdex.auth.shares import Shares
from imgdex.catalog import Catalog
from imgdex.errors import BadRequest, NotFound

EDITOR = Principal(name="erin", role="editor", scopes=frozenset({"read", "write"}))


@pytest.fixture
def shares(tmp_path: Path) -> Iterator[Shares]:
    catalog = Catalog(tmp_path / "imgdex.db")
    yield Shares(catalog.shares)
    catalog.close()


def test_a_link_shows_its_album_until_revoked(shares: Shares, tmp_path: Path) -> None:
    row, token = shares.create(EDITOR, "album-1")
    assert shares.album_of(token) == "album-1"
    assert [s.id for s in shares.list("album-1")] == [row.id] and shares.list("album-2") == []
    with pytest.raises(NotFound):
        shares.revoke("album-2", row.id)  # another album's id does not reach it
    shares.revoke("album-1", row.id)
    with pytest.raises(NotFound) as revoked:
        shares.album_of(token)
    with pytest.raises(NotFound) as unknown:
        shares.album_of("no-such-token")
    assert revoked.value.detail == unknown.value.detail  # never tells which
    assert token.encode() not in (tmp_path / "imgdex.db").read_bytes()


def test_expired_and_password_links(shares: Shares) -> None:
    _, token = shares.create(EDITOR, "a", expires_at=time.time() + 1)
    assert shares.album_of(token) == "a"
    time.sleep(1.2)
    with pytest.raises(NotFound):
        shares.album_of(token)
    with pytest.raises(BadRequest):
        shares.create(EDITOR, "a", expires_at=time.time() - 1)
    _, token = shares.create(EDITOR, "b", password="link-password")
    with pytest.raises(NotFound):
        shares.album_of(token)
    with pytest.raises(NotFound):
        shares.album_of(token, "wrong-password")
    assert shares.album_of(token, "link-password") == "b"
    assert shares.list("b")[0].has_password
