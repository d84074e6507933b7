"""Vector indexes: one per (model, version), each in ``vector_index/<name>/``.

`IndexManager` opens indexes through the configured backend, checks that the model,
version and dimension recorded in ``meta.json`` match the embedder that writes to it,
reconciles each index with the catalog on open (the graph on disk is a cache; the
``.npy`` vectors and the catalog are the record), saves changed indexes, and rebuilds
an index from its vectors when asked (compaction, or a change of backend).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog, IndexEntry, vector_job_kind
from imgdex.errors import Conflict, NotFound
from imgdex.files import atomic_write
from imgdex.index.labels import Key
from imgdex.index.managed import ManagedIndex
from imgdex.index.meta import IndexInfo, info_from_meta, read_all_meta, read_meta
from imgdex.providers import Embedder, IndexBackend, IndexLocation

__all__ = ["IndexInfo", "IndexManager", "ManagedIndex"]

log = logging.getLogger(__name__)


class IndexManager:
    def __init__(
        self,
        root: Path,
        backend: IndexBackend,
        catalog: Catalog,
        storage: BlobStore,
        url: str | None = None,
    ) -> None:
        self.root = root
        # Handed to the backend with each index's directory: where a backend that keeps
        # indexes in a database finds it (None: files only, today's backends).
        self.url = url
        self.backend = backend
        self.catalog = catalog
        self.storage = storage
        self.root.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, ManagedIndex] = {}
        self._lock = threading.Lock()

    # --- opening ------------------------------------------------------------------

    def get(self, name: str) -> ManagedIndex | None:
        return self._open.get(name)

    def open_for(self, embedder: Embedder, dimension: int) -> ManagedIndex:
        """Open (or create) the index an embedder writes to, after checking it matches."""
        with self._lock:
            if (managed := self._open.get(embedder.index_name)) is not None:
                self._check(managed.info, embedder, dimension)
                return managed
            path = self.root / embedder.index_name
            meta = self.read_meta(embedder.index_name)
            now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            info = IndexInfo(
                name=embedder.index_name,
                model=embedder.model,
                model_version=embedder.version,
                dimension=dimension,
                metric=embedder.metric,
                stores=embedder.stores,
                backend=self.backend.name,
                created_at=str(meta.get("created_at", now)) if meta else now,
                family=embedder.family,
            )
            if meta:
                self._check(info_from_meta(meta), embedder, dimension)
            if meta and meta.get("backend") != self.backend.name:
                # Another backend's files: start empty, reconcile re-adds every vector.
                log.warning("index %s: backend changed to %s; rebuilding", info.name, info.backend)
                self._clear_backend_files(path)
            path.mkdir(parents=True, exist_ok=True)
            location = self.location(info.name, path, info.to_json(0) | (meta or {}))
            index = self.backend.open(location, dimension=dimension, metric=embedder.metric)
            managed = ManagedIndex(info, path, index)
            self.reconcile(managed)
            self._write_meta(managed)
            self._open[info.name] = managed
            return managed

    @staticmethod
    def _check(info: IndexInfo, embedder: Embedder, dimension: int) -> None:
        mine = (embedder.model, embedder.version, dimension, embedder.metric)
        theirs = (info.model, info.model_version, info.dimension, info.metric)
        if mine != theirs:
            raise Conflict(
                f"index {info.name} holds vectors of {info.model} v{info.model_version} "
                f"({info.dimension}-d, {info.metric}) but the plugin provides {embedder.model} "
                f"v{embedder.version} ({dimension}-d, {embedder.metric}); vectors of different "
                "models are never mixed: give the new model a new index name or version",
                code="index_mismatch",
            )

    def read_meta(self, name: str) -> dict[str, Any] | None:
        return read_meta(self.root / name)

    def on_disk(self) -> dict[str, dict[str, Any]]:
        """Every index directory's ``meta.json``, open or not (plugins may be gone)."""
        return self.read_all_meta(self.root)

    @staticmethod
    def read_all_meta(root: Path) -> dict[str, dict[str, Any]]:
        return read_all_meta(root)

    def location(self, name: str, path: Path, meta: dict[str, Any] | None = None) -> IndexLocation:
        """Where the backend keeps index `name` (its files under `path`)."""
        return IndexLocation(name=name, path=path, url=self.url, meta=meta or {})

    def _write_meta(self, managed: ManagedIndex) -> None:
        data = managed.info.to_json(len(managed))
        atomic_write(managed.path / "meta.json", json.dumps(data, indent=2).encode())

    def _clear_backend_files(self, path: Path) -> None:
        for entry in path.iterdir() if path.exists() else ():
            if entry.name != "meta.json":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    # --- consistency ----------------------------------------------------------------

    def reconcile(self, managed: ManagedIndex) -> dict[str, int]:
        """Make the index hold exactly the catalog's vectors, hidden where deleted, and
        map its labels from the catalog.

        The catalog's entries are read once, a batch at a time, straight into the label
        map and a few integer arrays: at a million vectors, a list of entries would take
        hundreds of MB that the process keeps after freeing them."""
        present = managed.index.labels()
        hidden = managed.index.hidden()
        recorded: list[npt.NDArray[np.int64]] = []
        soft_deleted: list[npt.NDArray[np.int64]] = []
        missing: list[IndexEntry] = []

        def entries() -> Iterator[tuple[int, Key, bool]]:
            for batch in self.catalog.index_entry_batches(managed.name):
                recorded.append(np.fromiter((r.id for r in batch), np.int64, len(batch)))
                soft_deleted.append(np.fromiter((r.id for r in batch if r.image_deleted), np.int64))
                missing.extend(r for r in batch if r.id not in present)
                for r in batch:
                    yield r.id, r.key, not r.image_deleted

        with managed.swap_lock:
            managed.labels.load(entries(), expected=len(present))
        # Vectors the graph lacks (not saved before a crash) come back from their files;
        # those whose file is gone too are forgotten, and re-embedded.
        readded, lost_rows = self._readd(managed, missing)
        self._forget(managed.name, lost_rows)
        lost = [row.id for row in lost_rows]
        known = np.concatenate([np.empty(0, np.int64), *recorded])
        deleted = np.concatenate([np.empty(0, np.int64), *soft_deleted])
        in_graph = np.fromiter(present, np.int64, len(present))
        was_hidden = np.fromiter(hidden, np.int64, len(hidden))
        extra = np.setdiff1d(in_graph, known)
        with managed.swap_lock:
            managed.labels.set_alive(sorted(lost), False)  # the catalog forgot them
            managed.hide(np.union1d(extra, np.setdiff1d(deleted, was_hidden)).tolist())
            managed.unhide(np.setdiff1d(np.intersect1d(was_hidden, known), deleted).tolist())
        report = {
            "readded": readded,
            "lost": len(lost),
            "removed": len(np.setdiff1d(extra, was_hidden)),
        }
        if any(report.values()):
            log.info("index %s reconciled: %s", managed.name, report)
        return report

    def _readd(
        self, managed: ManagedIndex, rows: Sequence[IndexEntry]
    ) -> tuple[int, list[IndexEntry]]:
        """Add the vectors of `rows` from their files; returns (how many, the rows whose
        file is gone or unreadable), which the caller hands to `_forget`."""
        readded, lost = 0, []
        for start in range(0, len(rows), 1000):
            ids, vectors, keys = [], [], []
            for row in rows[start : start + 1000]:
                try:
                    vector = self.storage.read_vector(row.image, managed.name, row.method)
                except (OSError, ValueError):
                    lost.append(row)
                    continue
                if vector.shape != (managed.info.dimension,):
                    lost.append(row)
                    continue
                ids.append(row.id)
                vectors.append(vector)
                keys.append(row.key)
            if ids:
                managed.add(ids, np.stack(vectors), keys)
                readded += len(ids)
        return readded, lost

    def _forget(self, index: str, lost: Sequence[IndexEntry]) -> None:
        """The vector files of `lost` are gone: forget their entries and queue the items to
        be embedded again."""
        if not lost:
            return
        with self.catalog.transaction() as db:
            self.catalog.delete_vector_entries(db, [row.id for row in lost])
            for row in lost:
                kind = vector_job_kind(row.method)
                self.catalog.queue_jobs(db, kind, [index], row.image, row.method)

    def rebuild(self, name: str) -> dict[str, int]:
        """Compact: build a fresh index from the ``.npy`` vectors and swap it in."""
        managed = self._open.get(name)
        if managed is None:
            raise NotFound(f"index {name!r} is not open (unknown, or its plugin is disabled)")
        info = managed.info
        scratch = self.root / f".{name}.rebuild-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        old_dir = self.root / f".{name}.old-{uuid.uuid4().hex[:8]}"
        before = len(managed)
        try:
            fresh = ManagedIndex(
                info,
                scratch,
                self.backend.open(
                    self.location(name, scratch, info.to_json(0)),
                    dimension=info.dimension,
                    metric=info.metric,
                ),
            )
            # Fill the fresh index beside the old one, which keeps serving meanwhile.
            lost: list[IndexEntry] = []
            for batch in self.catalog.index_entry_batches(name):
                lost += self._readd(fresh, batch)[1]
            self._forget(name, lost)
            with managed.swap_lock:
                self.reconcile(fresh)  # catch up with writes made during the build
                fresh.index.save()
                managed.path.rename(old_dir)
                scratch.rename(managed.path)
                # Searches holding the old object finish on it; new calls see the new one.
                managed.index = self.backend.open(
                    self.location(name, managed.path, info.to_json(before)),
                    dimension=info.dimension,
                    metric=info.metric,
                )
                self.reconcile(managed)
                self._write_meta(managed)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(old_dir, ignore_errors=True)
        return {"before": before, "after": len(managed)}

    def compact(self, min_hidden: int = 1000, min_share: float = 0.2) -> dict[str, dict[str, int]]:
        """Rebuild every open index whose hidden (deleted) entries are at least
        `min_hidden` and `min_share` of it: hnswlib keeps deleted items in the graph."""
        done = {}
        for name, managed in list(self._open.items()):
            hidden = len(managed.index.hidden())
            if hidden >= min_hidden and hidden >= min_share * (hidden + len(managed)):
                log.info("index %s: compacting (%d deleted entries)", name, hidden)
                done[name] = self.rebuild(name)
        return done

    # --- persistence ------------------------------------------------------------------

    def save_dirty(self) -> int:
        saved = 0
        for managed in list(self._open.values()):
            if managed.dirty:
                # Under the swap lock: a rebuild renames the directory and swaps the
                # index object; a save racing it would write the old graph into the
                # new directory, or into one renamed away.
                with managed.swap_lock:
                    managed.dirty = False
                    try:
                        managed.index.save()
                        self._write_meta(managed)
                        saved += 1
                    except Exception:
                        managed.dirty = True
                        log.exception("index %s: save failed", managed.name)
        return saved

    def close(self) -> None:
        self.save_dirty()
        for managed in self._open.values():
            with contextlib.suppress(Exception):
                managed.index.close()
        self._open.clear()

    def close_index(self, name: str) -> None:
        """Save and close an open index (retired by a model upgrade); it stays on disk."""
        with self._lock:
            managed = self._open.pop(name, None)
        if managed is None:
            return
        with managed.swap_lock:
            try:
                managed.index.save()
                self._write_meta(managed)
            finally:
                managed.index.close()

    def remove(self, name: str) -> None:
        """Delete an index's directory (and forget it); its catalog entries go too."""
        with self._lock:
            self._open.pop(name, None)
            path = self.root / name
            if path.exists():
                doomed = self.root / f".{name}.deleted-{uuid.uuid4().hex[:8]}"
                path.rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)
