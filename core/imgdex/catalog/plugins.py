"""Plugin-owned state: `plugin_state` (enabled or not) and `index_roles` (model upgrades)."""

from __future__ import annotations

import json
from typing import Any

from imgdex.catalog.dialect import Connection
from imgdex.catalog.engine import Store
from imgdex.catalog.rows import IndexRole

__all__ = ["PluginStore"]


class PluginStore(Store):
    """Plugin switches and index roles. Methods are blocking; call them from worker threads."""

    def plugin_states(self) -> dict[str, bool]:
        """``{plugin: enabled}`` as admins last set them."""
        return {n: bool(e) for n, e in self._read("SELECT name, enabled FROM plugin_state")}

    def set_plugin_state(self, name: str, enabled: bool) -> None:
        """Record that an admin enabled or disabled a plugin."""
        upsert = self.dialect.upsert(
            "name", f"enabled = excluded.enabled, updated_at = {self.dialect.now}"
        )
        with self.engine.transaction() as db:
            db.execute(
                f"INSERT INTO plugin_state (name, enabled) VALUES (?, ?) {upsert}",
                (name, int(enabled)),
            )

    def index_roles(self) -> dict[str, IndexRole]:
        """``{index: role}`` of every index with a recorded role."""
        return {
            name: IndexRole(name, family, plugin, role, json.loads(settings))
            for name, family, plugin, role, settings in self._read(
                "SELECT name, family, plugin, role, settings FROM index_roles"
            )
        }

    def set_index_role(
        self,
        db: Connection,
        name: str,
        role: str,
        *,
        family: str | None = None,
        plugin: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Record an index's role; family, plugin and settings are kept when not given."""
        upsert = self.dialect.upsert(
            "name",
            "role = excluded.role, "
            "family = CASE WHEN ? IS NULL THEN family ELSE excluded.family END, "
            "plugin = CASE WHEN ? IS NULL THEN plugin ELSE excluded.plugin END, "
            "settings = CASE WHEN ? IS NULL THEN settings ELSE excluded.settings END, "
            f"updated_at = {self.dialect.now}",
        )
        db.execute(
            "INSERT INTO index_roles (name, family, plugin, role, settings) "
            f"VALUES (?, ?, ?, ?, ?) {upsert}",
            (
                name,
                family or "",
                plugin or "",
                role,
                json.dumps(settings or {}, sort_keys=True, default=str),
                family,
                plugin,
                None if settings is None else 1,
            ),
        )

    def forget_index(self, db: Connection, name: str) -> int:
        """Remove an index's vector entries, jobs and role; returns the entries removed."""
        db.execute("DELETE FROM jobs WHERE kind != 'describe' AND target = ?", (name,))
        db.execute("DELETE FROM index_roles WHERE name = ?", (name,))
        return int(db.execute("DELETE FROM vector_entries WHERE index_name = ?", (name,)).rowcount)
