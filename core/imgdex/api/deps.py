"""Dependencies shared by the controllers: the narrow services of the runtime, each
provided by name (``Provide``), and the admin check."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from imgdex.auth.guards import require
from imgdex.catalog import Catalog
from imgdex.jobs.worker import Enricher
from imgdex.ops.deletion import Deletion
from imgdex.ops.descriptions import Descriptions
from imgdex.ops.duplicates import Duplicates
from imgdex.ops.images import ImageReader
from imgdex.ops.indexes import IndexAdmin
from imgdex.ops.ingest import Ingest
from imgdex.ops.search import Searcher
from imgdex.ops.similar import Similar
from imgdex.ops.trash import Trash
from imgdex.pools import Pools
from imgdex.registry import Registry
from imgdex.reports import Reports
from imgdex.runtime import Runtime
from imgdex.services import ServiceManager
from imgdex.staging import Spooling

__all__ = [
    "CatalogDep",
    "DeletionDep",
    "DescriptionsDep",
    "DuplicatesDep",
    "ImagesDep",
    "IndexAdminDep",
    "IngestDep",
    "PoolsDep",
    "RegistryDep",
    "ReportsDep",
    "SearcherDep",
    "ServicesDep",
    "SimilarDep",
    "SpoolingDep",
    "TrashDep",
    "WorkerDep",
    "admin_guard",
    "dependencies",
]

# The organise stores (tags, albums, image edits): `imgdex.organise` and `imgdex.albums`
# are functions of the catalog, run in the I/O pool.
CatalogDep = NamedDependency[Catalog]
DeletionDep = NamedDependency[Deletion]
DescriptionsDep = NamedDependency[Descriptions]
DuplicatesDep = NamedDependency[Duplicates]
ImagesDep = NamedDependency[ImageReader]
IndexAdminDep = NamedDependency[IndexAdmin]
IngestDep = NamedDependency[Ingest]
PoolsDep = NamedDependency[Pools]
RegistryDep = NamedDependency[Registry]
ReportsDep = NamedDependency[Reports]
SearcherDep = NamedDependency[Searcher]
ServicesDep = NamedDependency[ServiceManager]
SimilarDep = NamedDependency[Similar]
SpoolingDep = NamedDependency[Spooling]
TrashDep = NamedDependency[Trash]
WorkerDep = NamedDependency[Enricher]


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def provide_catalog(state: State) -> Catalog:
    return _runtime(state).catalog


def provide_duplicates(state: State) -> Duplicates:
    return _runtime(state).duplicates


def provide_similar(state: State) -> Similar:
    return _runtime(state).similar


def provide_trash(state: State) -> Trash:
    return _runtime(state).trash


def provide_deletion(state: State) -> Deletion:
    return _runtime(state).deletion


def provide_descriptions(state: State) -> Descriptions:
    return _runtime(state).descriptions


def provide_images(state: State) -> ImageReader:
    return _runtime(state).images


def provide_index_admin(state: State) -> IndexAdmin:
    return _runtime(state).index_admin


def provide_ingest(state: State) -> Ingest:
    return _runtime(state).ingest


def provide_pools(state: State) -> Pools:
    return _runtime(state).pools


def provide_registry(state: State) -> Registry:
    return _runtime(state).registry


def provide_reports(state: State) -> Reports:
    return _runtime(state).reports


def provide_searcher(state: State) -> Searcher:
    return _runtime(state).searcher


def provide_services(state: State) -> ServiceManager:
    return _runtime(state).services


def provide_spooling(state: State) -> Spooling:
    return _runtime(state).spooling


def provide_worker(state: State) -> Enricher:
    return _runtime(state).worker


def dependencies() -> dict[str, Provide]:
    """Every dependency the controllers name, for the app.

    No name may be a top-level field of a request body (``images``, ``trash``, ...):
    Litestar answers a body that fails validation on a field named like a dependency
    with a 500, taking it for a broken dependency."""
    providers = {
        "catalog": provide_catalog,
        "deletion": provide_deletion,
        "descriptions": provide_descriptions,
        "duplicates": provide_duplicates,
        "reader": provide_images,
        "index_admin": provide_index_admin,
        "ingest": provide_ingest,
        "pools": provide_pools,
        "registry": provide_registry,
        "reports": provide_reports,
        "searcher": provide_searcher,
        "services": provide_services,
        "similar": provide_similar,
        "spooling": provide_spooling,
        "trash_bin": provide_trash,
        "worker": provide_worker,
    }
    return {name: Provide(fn, sync_to_thread=False) for name, fn in providers.items()}


# Kept for the controllers that import it: the admin scope, from the admin token, an
# admin's session or an admin key.
admin_guard = require("admin")
