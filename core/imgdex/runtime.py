"""The composition root: builds every part of a library on one data directory, wires
them together, and closes them in order. It does nothing else; each part is used
directly by whoever needs it (the API through `imgdex.api.deps`, the CLI, tests).
"""

from __future__ import annotations

import threading

from imgdex import datalock
from imgdex.blobs import BlobStore, LocalBlobStore
from imgdex.budget import UploadBudget
from imgdex.catalog import Catalog
from imgdex.config import Config
from imgdex.files import make_private
from imgdex.index import IndexManager
from imgdex.jobs.handlers import Handlers
from imgdex.jobs.worker import Enricher
from imgdex.memory import tune_allocator
from imgdex.ops.deletion import Deletion
from imgdex.ops.descriptions import Descriptions
from imgdex.ops.duplicates import DuplicateFinder, Duplicates
from imgdex.ops.images import ImageReader
from imgdex.ops.indexes import IndexAdmin
from imgdex.ops.ingest import Ingest
from imgdex.ops.locks import ImageLocks
from imgdex.ops.search import Searcher
from imgdex.ops.similar import Similar
from imgdex.ops.trash import Trash
from imgdex.ops.vectors import VectorWriter
from imgdex.plugins import PluginHost
from imgdex.pools import Pools, Wakeup
from imgdex.registry import Registry
from imgdex.reports import Reports
from imgdex.services import ServiceManager
from imgdex.staging import Spooling

__all__ = ["Runtime"]


class Runtime:
    """Everything a library runs on, opened on `config.data_path` (which it locks)."""

    def __init__(self, config: Config, host: PluginHost) -> None:
        tune_allocator()  # before the thread pools create malloc arenas
        self.config = config
        self.host = host
        # One writer per data directory, for as long as this runtime is open.
        self._data_lock = datalock.acquire(config.data_path)
        try:
            self._open(config, host)
        except BaseException:
            self._data_lock.release()
            raise

    def _open(self, config: Config, host: PluginHost) -> None:
        data = config.data_path
        make_private(data, config.storage)
        self.blobs: BlobStore = LocalBlobStore(data / "storage")
        self.catalog = Catalog(data / "imgdex.db")
        backend = host.backend(config.index.backend)
        backend.configure(config.index)
        self.indexes = IndexManager(data / "vector_index", backend, self.catalog, self.blobs)
        self.wakeup = Wakeup()
        self.services = ServiceManager(config, self.indexes, self.wakeup.ring)
        self.registry = Registry(
            config, host, self.catalog, self.indexes, self.services, self.wakeup.ring
        )
        # Request-path calls plus the background workers' batches (worker.concurrency).
        concurrency = config.worker.concurrency
        model_threads = len(self.registry.embedders) + len(self.registry.describers)
        model_threads += sum(concurrency.get(name, 1) for name in host.records)
        self.pools = Pools(model_threads)
        server = config.server
        self.uploads = UploadBudget(server.uploads_in_flight_bytes, server.upload_wait)
        # How upload bodies are read: large ones staged next to the stored files.
        self.spooling = Spooling(self.blobs.staging, server.upload_spool_bytes, self.uploads)
        # Held by whatever reads or writes one image's files and rows as a whole.
        self.locks = locks = ImageLocks()
        # Set once start-up storage recovery has finished (or failed); uploads do not
        # wait for it, since it takes each image's lock before touching it.
        self.recovered = threading.Event()
        catalog, blobs, registry, pools = self.catalog, self.blobs, self.registry, self.pools
        self.vectors = VectorWriter(catalog, blobs, self.indexes)
        self.images = ImageReader(catalog, blobs, pools)
        self.ingest = Ingest(
            config.images,
            catalog,
            blobs,
            registry,
            self.vectors,
            pools,
            locks,
            self.wakeup,
            self.spooling,
        )
        self.descriptions = Descriptions(
            catalog, blobs, registry, self.vectors, pools, locks, self.wakeup
        )
        self.deletion = Deletion(catalog, blobs, self.vectors, pools, locks)
        self.searcher = Searcher(config, registry, catalog, pools, self.spooling)
        self.reports = Reports(data, host, registry, catalog, self.indexes, self.services)
        self.index_admin = IndexAdmin(registry, self.indexes, blobs, pools)
        handlers = Handlers(
            config.images, catalog, blobs, self.vectors, self.descriptions, self.wakeup, locks
        )
        self.trash = Trash(
            catalog,
            blobs,
            registry,
            self.vectors,
            self.deletion,
            self.images,
            pools,
            locks,
            self.wakeup,
        )
        self.similar = Similar(registry, catalog, blobs, pools, self.searcher)
        self.duplicates = Duplicates(config, catalog, self.deletion, pools)
        # Near-duplicates of new (and, once, of older) images; the app runs it periodically.
        self.duplicate_finder = DuplicateFinder(config, registry, catalog, blobs, self.indexes)
        self.worker = Enricher(
            config.worker,
            registry,
            catalog,
            blobs,
            self.indexes,
            pools,
            self.wakeup,
            handlers,
            trash_days=config.storage.trash_days,
            purge_trash=self.trash.purge,
        )

    def close(self) -> None:
        self.pools.close()
        self.services.close()
        self.registry.close()
        self.indexes.close()
        self.catalog.close()
        self._data_lock.release()
