"""Multipart uploads read straight into memory.

Litestar's form parsing writes every file part into a `SpooledTemporaryFile` that rolls
over to disk above 1 MiB, with one thread hop per received chunk after that, and the
handler then reads the file back, for bytes that the upload path needs in memory anyway.
This reads the body as it arrives with the `multipart` package's push parser (the parser
Litestar itself uses), appending the file part to one buffer, several times cheaper per
megabyte (docs/benchmarks.md has the measurements). The request size
limit is still Litestar's (`Request.stream` enforces ``server.max_upload_bytes``).

Large bodies are not held whole: past ``server.upload_spool_bytes`` the file part is
hashed and written to a staging file as it arrives (`imgdex.staging`), in worker threads,
a megabyte at a time. Every body's bytes are taken from the `UploadBudget` (its
Content-Length up front, else as it arrives) until the handler closes the form.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from multipart import (
    MultipartSegment,
    ParserError,
    ParserLimitReached,
    PushMultipartParser,
    parse_options_header,
)

from imgdex.budget import UploadBudget
from imgdex.errors import BadRequest
from imgdex.staging import Spool, Spooling, StagedFile

__all__ = ["Form", "read_form", "upload_operation"]

_MAX_TEXT = 4096  # bytes of one text field
_MAX_PARTS = 32
_FLUSH = 1024 * 1024  # a spooled body goes to its file in pieces of about this size


@dataclass
class Form:
    """A multipart form: its one file part (in memory, or staged on disk) and its text
    fields. `close` gives back its upload budget and removes a staged file not stored."""

    file: bytearray | StagedFile
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None  # the file part's own name, as the client sent it
    budget: UploadBudget | None = None
    held: int = 0

    def text(self, name: str) -> str | None:
        """A text field, stripped; None when absent or blank."""
        value = self.fields.get(name, "").strip()
        return value or None

    def close(self) -> None:
        if self.budget is not None and self.held:
            self.budget.give(self.held)
            self.held = 0
        if isinstance(self.file, StagedFile):
            self.file.path.unlink(missing_ok=True)  # stored files were renamed away


async def read_form(
    request: Request[Any, Any, Any],
    file_field: str,
    text_fields: Collection[str],
    spooling: Spooling | None = None,
) -> Form:
    """Read a ``multipart/form-data`` body with one file part named `file_field`.

    Text parts named in `text_fields` are kept (up to 4 kB each), others are skipped; a
    4xx names what is wrong: not multipart, malformed, no file part, a second one, or a
    text field too long. With `spooling`, a large file part is staged on disk and the
    body's bytes are held of its budget (the caller closes the form)."""
    form = Form(bytearray(), budget=spooling.budget if spooling else None)
    spool: Spool | None = None  # set once the body is read: _read cleans up its own
    try:
        if form.budget is not None and (length := _content_length(request)) is not None:
            await form.budget.take(length)
            form.held = length
        file, form.fields, spool = await _read(request, file_field, text_fields, spooling, form)
        form.file = file if spool is None else await asyncio.to_thread(_finish, spool, file)
        return form
    except BaseException:
        if spool is not None:
            await asyncio.to_thread(spool.discard)
        form.close()
        raise


def _content_length(request: Request[Any, Any, Any]) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _finish(spool: Spool, rest: bytearray) -> StagedFile:
    spool.write(rest)
    return spool.finish()


async def _read(
    request: Request[Any, Any, Any],
    file_field: str,
    text_fields: Collection[str],
    spooling: Spooling | None,
    form: Form,
) -> tuple[bytearray, dict[str, str], Spool | None]:
    """The body's file part (what is not yet in the spool), its text fields, the spool."""
    content_type = request.headers.get("content-type", "")
    kind, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if kind != "multipart/form-data" or not boundary:
        raise BadRequest(
            f"send the {file_field!r} part as multipart/form-data (got Content-Type "
            f"{content_type or 'none'!r})",
            code="not_multipart",
        )
    file: bytearray | None = None
    filename: str | None = None
    fields: dict[str, str] = {}
    buffer: bytearray | None = None
    segment: MultipartSegment | None = None
    spool: Spool | None = None
    budget, metered = form.budget, form.budget is not None and not form.held
    try:
        with PushMultipartParser(boundary, max_segment_count=_MAX_PARTS) as parser:
            async for chunk in request.stream():
                if metered and budget is not None:  # no Content-Length: hold as it comes
                    await budget.take(len(chunk))
                    form.held += len(chunk)
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment, buffer = event, None
                        if event.name == file_field:
                            if event.filename is None:
                                raise BadRequest(
                                    f"{file_field!r} must be a file part (multipart/form-data)",
                                    code="missing_file",
                                )
                            if file is not None:
                                raise BadRequest(
                                    f"send one {file_field!r} part, not several",
                                    code="bad_multipart",
                                )
                            file = buffer = bytearray()
                            filename = event.filename
                        elif event.name in text_fields:
                            buffer = bytearray()
                    elif event is None:  # the end of a part
                        if segment is not None and buffer is not None and buffer is not file:
                            fields[segment.name] = _decode(segment, buffer)
                        segment, buffer = None, None
                    elif buffer is not None:
                        buffer += event
                        if buffer is file:
                            if spooling is None:
                                continue
                            if spool is None and len(file) > spooling.threshold:
                                spool = await asyncio.to_thread(Spool, spooling.directory)
                            if spool is not None and len(file) >= _FLUSH:
                                full, file = file, bytearray()
                                buffer = file
                                await asyncio.to_thread(spool.write, full)
                        elif len(buffer) > _MAX_TEXT:
                            assert segment is not None
                            raise BadRequest(
                                f"the form field {segment.name!r} is longer than {_MAX_TEXT} bytes",
                                code="bad_multipart",
                            )
        # Leaving the block checks that the body ended with the closing boundary.
        if file is None:
            raise BadRequest(f"the form has no {file_field!r} file part", code="missing_file")
    except BaseException as exc:
        if spool is not None:
            await asyncio.to_thread(spool.discard)
        if isinstance(exc, ParserLimitReached):
            raise BadRequest(
                f"the form has more than {_MAX_PARTS} parts", code="bad_multipart"
            ) from None
        if isinstance(exc, ParserError):
            raise BadRequest(f"invalid multipart/form-data: {exc}", code="bad_multipart") from None
        raise
    form.filename = filename
    return file, fields, spool


def _decode(segment: MultipartSegment, data: bytearray) -> str:
    try:
        return data.decode(segment.charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        raise BadRequest(
            f"the form field {segment.name!r} is not valid {segment.charset or 'utf-8'} text",
            code="bad_multipart",
        ) from None


def upload_operation(file_field: str, text_fields: dict[str, str]) -> type[Operation]:
    """An OpenAPI operation documenting the multipart body that `read_form` reads (a
    handler that reads the request itself has no ``data`` for Litestar to describe)."""
    properties: dict[str, Reference | Schema] = {
        file_field: Schema(
            type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description="The image file"
        ),
        **{
            name: Schema(type=OpenAPIType.STRING, description=description)
            for name, description in text_fields.items()
        },
    }
    body = RequestBody(
        required=True,
        content={
            "multipart/form-data": OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.OBJECT, properties=properties, required=[file_field])
            )
        },
    )

    @dataclass
    class _Operation(Operation):
        def __post_init__(self) -> None:
            if self.request_body is None:
                self.request_body = body

    return _Operation
