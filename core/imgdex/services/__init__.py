"""Model services: the wire protocol (`protocol`), the client of one service (`client`),
routing with failover (`router`), the manager of every service (`manager`) and the
``imgdex serve-model`` app (`server`, imported on its own: it pulls in Litestar)."""

from imgdex.services.client import IN_PROCESS, RateLimiter, ServiceClient, base_url
from imgdex.services.manager import RoutedEmbedderSlot, ServiceInfo, ServiceManager
from imgdex.services.router import NoModelService, RoutingEmbedder, ServiceTarget

__all__ = [
    "IN_PROCESS",
    "NoModelService",
    "RateLimiter",
    "RoutedEmbedderSlot",
    "RoutingEmbedder",
    "ServiceClient",
    "ServiceInfo",
    "ServiceManager",
    "ServiceTarget",
    "base_url",
]
