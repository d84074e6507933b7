"""`AuditMiddleware`: admin actions that succeeded go to the audit log.

Logins, keys and users are audited where they happen (`imgdex.auth.service`); the
actions of other controllers (plugins, services, indexes, jobs, hard deletes) are
recognised here by method and path once they answered 2xx, so those controllers need
no audit code of their own.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

import anyio.to_thread
from litestar.enums import ScopeType

from imgdex.auth.middleware import PRINCIPAL_KEY
from imgdex.auth.policy import Principal

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AuditMiddleware", "audited_action"]

log = logging.getLogger("imgdex.audit")

_RULES = [
    ("POST", re.compile(r"^/api/admin/plugins/([^/]+)/(enable|disable)$"), "plugin_{1}d"),
    ("POST", re.compile(r"^/api/admin/services/([^/]+)/(enable|disable)$"), "service_{1}d"),
    ("POST", re.compile(r"^/api/admin/indexes/([^/]+)/rebuild$"), "index_rebuilt"),
    ("DELETE", re.compile(r"^/api/admin/indexes/([^/]+)$"), "index_removed"),
    ("POST", re.compile(r"^/api/admin/jobs/(retry|pause|resume)$"), "jobs_{0}"),
]
_IMAGE = re.compile(r"^/api/images/([^/]+)$")


def audited_action(method: str, path: str, query: bytes) -> tuple[str, str] | None:
    """``(action, target)`` when this request is an audited admin action."""
    for verb, pattern, action in _RULES:
        if method == verb and (m := pattern.match(path)):
            return action.format(*m.groups()), m.group(1)
    if method == "DELETE" and (m := _IMAGE.match(path)):
        params = dict(parse_qsl(query.decode("latin-1")))
        if params.get("hard", "").lower() in ("true", "1", "yes", "on"):
            return "image_hard_deleted", m.group(1)
    return None


class AuditMiddleware:
    """Writes one audit row per successful audited action (after the response)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        found = audited_action(scope["method"], scope["path"], scope.get("query_string", b""))
        if found is None:
            await self.app(scope, receive, send)
            return
        status = 0

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, wrapped)
        if 200 <= status < 300:
            principal = cast(dict[str, Any], scope).get(PRINCIPAL_KEY)
            actor = principal.name if isinstance(principal, Principal) else None
            peer = scope.get("client")
            client = peer[0] if peer else None
            store = scope["litestar_app"].state.auth.store
            action, target = found
            try:
                await anyio.to_thread.run_sync(
                    lambda: store.audit(action, actor=actor, target=target, client=client)
                )
            except Exception:  # the action happened; a lost audit row must not fail it
                log.exception("could not write the audit row of %s %s", action, target)
