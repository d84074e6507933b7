"""Model services: the wire protocol (`protocol`), the client of one service (`client`),
routing with failover (`routing`, for embedders `router` and describers `describers`),
the routed slots (`slots`), the manager of every service (`manager`) and the
``imgdex serve-model`` app (`server`, imported on its own: it pulls in Litestar)."""

from imgdex.services.client import IN_PROCESS, RateLimiter, ServiceClient, base_url
from imgdex.services.describers import DescriberClient, RoutingDescriber
from imgdex.services.manager import ServiceInfo, ServiceManager
from imgdex.services.router import RoutingEmbedder
from imgdex.services.routing import NoModelService, Router, ServiceTarget
from imgdex.services.slots import RoutedDescriberSlot, RoutedEmbedderSlot

__all__ = [
    "IN_PROCESS",
    "DescriberClient",
    "NoModelService",
    "RateLimiter",
    "RoutedDescriberSlot",
    "RoutedEmbedderSlot",
    "Router",
    "RoutingDescriber",
    "RoutingEmbedder",
    "ServiceClient",
    "ServiceInfo",
    "ServiceManager",
    "ServiceTarget",
    "base_url",
]
