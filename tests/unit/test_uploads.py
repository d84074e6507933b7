"""`read_form` on bodies that arrive in many small chunks, as they do over a socket.

The API tests go through Litestar's test client, which hands the whole body over in one
message; here the body is cut into pieces small enough that boundaries, headers and the
file part are all split across chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from imgdex.api.uploads import read_form
from imgdex.budget import UploadBudget
from imgdex.errors import BadRequest
from imgdex.staging import Spooling, StagedFile

BOUNDARY = "----b0und4ry"


class ChunkedRequest:
    """What `read_form` uses of a Litestar request: headers and the body stream."""

    def __init__(self, body: bytes, chunk: int) -> None:
        self.headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        self._body, self._chunk = body, chunk

    async def stream(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), self._chunk):
            yield self._body[start : start + self._chunk]


def body(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def read(data: bytes, chunk: int) -> Any:
    request: Any = ChunkedRequest(data, chunk)
    return asyncio.run(read_form(request, "file", ("source", "top_k")))


@pytest.mark.parametrize("chunk", [1, 7, 4096, 10**9])
def test_chunked_body_gives_the_same_form(chunk: int) -> None:
    # Random bytes, with the boundary's own prefix inside the file to tempt the parser.
    payload = os.urandom(20_000) + b"\r\n--" + BOUNDARY[:-2].encode() + os.urandom(50)
    data = body(
        [
            ("source", None, b" album "),
            ("other", None, b"skipped"),
            ("file", "x.bin", payload),
            ("top_k", None, b"3"),
        ]
    )
    form = read(data, chunk)
    assert bytes(form.file) == payload
    assert form.fields == {"source": " album ", "top_k": "3"}
    assert form.text("source") == "album" and form.text("other") is None


@pytest.mark.parametrize("chunk", [1, 13])
def test_chunked_bad_bodies_are_refused(chunk: int) -> None:
    whole = body([("file", "x.bin", b"abc")])
    with pytest.raises(BadRequest) as cut:
        read(whole[:-5], chunk)  # no closing boundary
    assert cut.value.code == "bad_multipart"
    with pytest.raises(BadRequest) as long:
        read(body([("source", None, b"s" * 5000), ("file", "x.bin", b"abc")]), chunk)
    assert long.value.code == "bad_multipart" and "'source'" in long.value.detail


@pytest.mark.parametrize("chunk", [4096, 300_000, 10**9])
def test_a_large_file_part_is_staged_hashed_and_its_budget_given_back(
    chunk: int, tmp_path: Path
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    data = body([("source", None, b"album"), ("file", "x.bin", payload)])
    budget = UploadBudget(10 * 1024 * 1024, 0.0)
    spooling = Spooling(tmp_path / "tmp", 64 * 1024, budget)

    async def go() -> Any:
        request: Any = ChunkedRequest(data, chunk)
        return await read_form(request, "file", ("source",), spooling)

    form = asyncio.run(go())
    assert isinstance(form.file, StagedFile)
    assert form.file.path.read_bytes() == payload
    assert (form.file.sha256, form.file.size) == (hashlib.sha256(payload).hexdigest(), len(payload))
    assert form.fields == {"source": "album"}
    assert budget.in_use == len(data)  # no Content-Length: held as it arrived
    form.close()
    assert budget.in_use == 0 and not any((tmp_path / "tmp").iterdir())

    # A body cut short leaves no staged file and holds nothing.
    with pytest.raises(BadRequest):
        asyncio.run(read_form(ChunkedRequest(data[:-5], chunk), "file", (), spooling))  # type: ignore[arg-type]
    assert budget.in_use == 0 and not any((tmp_path / "tmp").iterdir())
