"""Dependencies shared by the controllers: the narrow services of the runtime, each
provided by name (``Provide``), and the admin check."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from imgdex.auth.guards import require
from imgdex.jobs.worker import Enricher
from imgdex.ops.deletion import Deletion
from imgdex.ops.descriptions import Descriptions
from imgdex.ops.images import ImageReader
from imgdex.ops.indexes import IndexAdmin
from imgdex.ops.ingest import Ingest
from imgdex.ops.search import Searcher
from imgdex.pools import Pools
from imgdex.registry import Registry
from imgdex.reports import Reports
from imgdex.runtime import Runtime
from imgdex.services import ServiceManager
from imgdex.staging import Spooling

__all__ = [
    "DeletionDep",
    "DescriptionsDep",
    "ImagesDep",
    "IndexAdminDep",
    "IngestDep",
    "PoolsDep",
    "RegistryDep",
    "ReportsDep",
    "SearcherDep",
    "ServicesDep",
    "SpoolingDep",
    "WorkerDep",
    "admin_guard",
    "dependencies",
]

DeletionDep = NamedDependency[Deletion]
DescriptionsDep = NamedDependency[Descriptions]
ImagesDep = NamedDependency[ImageReader]
IndexAdminDep = NamedDependency[IndexAdmin]
IngestDep = NamedDependency[Ingest]
PoolsDep = NamedDependency[Pools]
RegistryDep = NamedDependency[Registry]
ReportsDep = NamedDependency[Reports]
SearcherDep = NamedDependency[Searcher]
ServicesDep = NamedDependency[ServiceManager]
SpoolingDep = NamedDependency[Spooling]
WorkerDep = NamedDependency[Enricher]


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


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
    """Every dependency the controllers name, for the app."""
    providers = {
        "deletion": provide_deletion,
        "descriptions": provide_descriptions,
        "images": provide_images,
        "index_admin": provide_index_admin,
        "ingest": provide_ingest,
        "pools": provide_pools,
        "registry": provide_registry,
        "reports": provide_reports,
        "searcher": provide_searcher,
        "services": provide_services,
        "spooling": provide_spooling,
        "worker": provide_worker,
    }
    return {name: Provide(fn, sync_to_thread=False) for name, fn in providers.items()}


# Kept for the controllers that import it: the admin scope, from the admin token, an
# admin's session or an admin key.
admin_guard = require("admin")
