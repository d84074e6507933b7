"""Bulk import: files, folders (recursive) and ZIP archives into a library.

`imgdex import PATH...` sends images to a running server (``--server``), or writes into a
data directory directly when no server runs (``--local``). Each file is hashed first and
skipped when the library already holds it, so an interrupted import re-run picks up where
it stopped without uploading anything twice. Files that are not images (by their first
bytes) are skipped with a reason; images the server refuses are counted as rejected with
its reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from imgdex.runtime import Runtime

__all__ = [
    "ImportReport",
    "Item",
    "discover",
    "import_local",
    "import_to_server",
    "looks_like_image",
]

# First bytes of the formats the server accepts (and HEIC, refused with a reason).
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),  # JPEG / MPO
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"BM"),
    (0, b"II*\x00"),  # TIFF little-endian
    (0, b"MM\x00*"),  # TIFF big-endian
    (8, b"WEBP"),
    (4, b"ftypavif"),
    (4, b"ftypavis"),
    (4, b"ftypheic"),
    (4, b"ftypmif1"),
)


def looks_like_image(head: bytes) -> bool:
    return any(head[offset : offset + len(sig)] == sig for offset, sig in _SIGNATURES)


@dataclass(frozen=True)
class Item:
    """One candidate file: a path on disk or a member of a ZIP archive."""

    name: str  # shown in reports: path, or archive.zip!member
    path: Path
    member: str | None = None

    def read(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(self.member)


@dataclass
class ImportReport:
    counts: Counter[str] = field(default_factory=Counter)  # added, duplicate, rejected, skipped
    problems: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: str, name: str = "", reason: str = "") -> None:
        with self._lock:
            self.counts[outcome] += 1
            if reason:
                self.problems.append((name, reason))


def discover(paths: Iterable[str | Path], report: ImportReport) -> Iterator[Item]:
    """Every file under `paths` (folders recursively, ZIP members included), sorted."""
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files = [path]
        else:
            report.add("skipped", str(path), "no such file or directory")
            continue
        for file in files:
            if file.name.startswith("."):
                continue
            if file.suffix.lower() == ".zip" and zipfile.is_zipfile(file):
                try:
                    with zipfile.ZipFile(file) as archive:
                        members = sorted(m.filename for m in archive.infolist() if not m.is_dir())
                except (OSError, zipfile.BadZipFile) as exc:
                    report.add("skipped", str(file), f"unreadable ZIP archive: {exc}")
                    continue
                for member in members:
                    if not Path(member).name.startswith("."):
                        yield Item(f"{file}!{member}", file, member)
            else:
                yield Item(str(file), file)


def _prepare(item: Item, report: ImportReport) -> tuple[bytes, str] | None:
    try:
        data = item.read()
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        report.add("skipped", item.name, f"unreadable: {exc}")
        return None
    if not looks_like_image(data[:16]):
        report.add("skipped", item.name, "not an image")
        return None
    return data, hashlib.sha256(data).hexdigest()[:32]


def _run(
    items: Iterable[Item],
    work: Callable[[Item], None],
    workers: int,
    progress: Callable[[], None],
) -> None:
    def one(item: Item) -> None:
        try:
            work(item)
        finally:
            progress()

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(one, items):
            pass


def import_to_server(
    items: Iterable[Item],
    server: str,
    *,
    source: str | None,
    workers: int,
    report: ImportReport,
    progress: Callable[[], None] = lambda: None,
    timeout: float = 300.0,
    api_key: str | None = None,
) -> None:
    """Upload `items` to a running server, skipping what it already holds. `api_key`
    (a key with the ``write`` scope) is needed by a server in ``auth.mode: users``."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    local = threading.local()
    clients: list[httpx.Client] = []
    clients_lock = threading.Lock()

    def client() -> httpx.Client:
        http: httpx.Client | None = getattr(local, "http", None)
        if http is None:
            http = httpx.Client(base_url=server, timeout=timeout, headers=headers)
            local.http = http
            with clients_lock:
                clients.append(http)
        return http

    def upload(item: Item) -> None:
        prepared = _prepare(item, report)
        if prepared is None:
            return
        data, id_ = prepared
        http = client()
        try:
            known = http.get(f"/api/images/{id_}")
            if known.status_code == 200 and not known.json().get("is_deleted"):
                report.add("duplicate")
                return
            form = {"source": source} if source else {}
            r = http.post("/api/images", files={"file": (Path(item.name).name, data)}, data=form)
        except httpx.HTTPError as exc:
            report.add("failed", item.name, f"server unreachable: {exc}")
            return
        if r.status_code == 201:
            report.add("added")
        elif r.status_code == 200:
            report.add("duplicate")
        elif r.status_code in (401, 403):
            hint = "set IMGDEX_API_KEY to an API key with the write scope"
            report.add("failed", item.name, f"{_detail(r)} ({hint})")
        elif 400 <= r.status_code < 500:
            report.add("rejected", item.name, _detail(r))
        else:
            report.add("failed", item.name, f"HTTP {r.status_code}: {_detail(r)}")

    try:
        _run(items, upload, workers, progress)
    finally:
        for http in clients:
            http.close()


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))
    except ValueError:
        return r.text[:200]


def import_local(
    items: Iterable[Item],
    runtime: Runtime,
    *,
    source: str | None,
    workers: int,
    report: ImportReport,
    progress: Callable[[], None] = lambda: None,
) -> None:
    """Write `items` straight into a data directory through its `Runtime` (no server
    running on it)."""
    from imgdex.errors import ImgdexError

    loop = asyncio.new_event_loop()
    lock = threading.Lock()

    def add(item: Item) -> None:
        prepared = _prepare(item, report)
        if prepared is None:
            return
        data, id_ = prepared
        row = runtime.catalog.get_image(id_)
        if row is not None and not row.is_deleted:
            report.add("duplicate")
            return
        try:
            with lock:  # one event loop, driven by one thread at a time
                result = loop.run_until_complete(
                    runtime.ingest.ingest(data, source, Path(item.name).name)
                )
        except ImgdexError as exc:
            report.add("rejected", item.name, exc.detail)
            return
        report.add("duplicate" if result.duplicate else "added")

    try:
        _run(items, add, workers, progress)
    finally:
        loop.close()
