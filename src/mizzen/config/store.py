"""The config store: the last good version of every resource, in memory.

Sources (YAML files, the Kubernetes API) feed ``apply`` and ``delete``; the
store answers what effectively changed so the push pipeline rebuilds only
when something did.

"Last good version keeps serving" holds by construction: the parser
(``mizzen.api``) rejects an invalid document before it becomes a
``Resource``, so a broken edit never reaches ``apply`` and the previous
version of that object stays here untouched.

Identity is ``Resource.key`` (group, kind, namespace, name) with no version:
applying ``networking.istio.io/v1`` VirtualService ``default/x`` replaces the
``v1alpha3`` one of the same name rather than adding a second object.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mizzen.api.resources import Resource, ResourceKey

__all__ = ["ChangeSet", "ConfigStore"]


@dataclass(frozen=True)
class ChangeSet:
    """What one ``apply``/``delete``/``replace`` call changed in the store."""

    added: tuple[ResourceKey, ...] = ()
    updated: tuple[ResourceKey, ...] = ()
    deleted: tuple[ResourceKey, ...] = ()
    # Resources offered that were already stored identically (or deletes of
    # keys that were not stored): reported so callers can log "n unchanged".
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.deleted)

    @property
    def keys(self) -> tuple[ResourceKey, ...]:
        """Every key touched, in the order added, updated, deleted."""
        return self.added + self.updated + self.deleted


class ConfigStore:
    """Holds resources keyed by ``ResourceKey``; not thread-safe by design
    (one owner task mutates it, readers take ``resources()`` snapshots)."""

    def __init__(self) -> None:
        # dict keeps insertion order; replacing a value keeps its slot, which
        # gives "order of first apply" for free.
        self._items: dict[ResourceKey, Resource] = {}
        self._revision = 0

    @property
    def revision(self) -> int:
        """Increments once per call that changed anything."""
        return self._revision

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: ResourceKey) -> Resource | None:
        return self._items.get(key)

    def resources(self) -> tuple[Resource, ...]:
        return tuple(self._items.values())

    def of_kind(self, kind: str) -> tuple[Resource, ...]:
        return tuple(r for k, r in self._items.items() if k.kind == kind)

    def apply(self, resources: Iterable[Resource]) -> ChangeSet:
        return self._finish(self._upsert(resources))

    def delete(self, keys: Iterable[ResourceKey]) -> ChangeSet:
        deleted: dict[ResourceKey, None] = {}
        missing = 0
        for key in keys:
            if self._items.pop(key, None) is None:
                missing += 1
            else:
                deleted[key] = None
        return self._finish(ChangeSet(deleted=tuple(deleted), unchanged=missing))

    def replace(self, resources: Iterable[Resource]) -> ChangeSet:
        """Make the store hold exactly ``resources``: what a source that
        re-reads everything (a directory rescan, a Kubernetes relist) needs.
        One call, one revision."""
        incoming = list(resources)
        wanted = {r.key for r in incoming}
        gone = tuple(k for k in self._items if k not in wanted)
        for key in gone:
            del self._items[key]
        upserted = self._upsert(incoming)
        return self._finish(ChangeSet(upserted.added, upserted.updated, gone, upserted.unchanged))

    def _upsert(self, resources: Iterable[Resource]) -> ChangeSet:
        added: dict[ResourceKey, None] = {}
        updated: dict[ResourceKey, None] = {}
        unchanged = 0
        for resource in resources:
            key = resource.key
            current = self._items.get(key)
            if current is None:
                added[key] = None
            elif current == resource:
                unchanged += 1
                continue
            elif key not in added:
                # A key added earlier in this same batch stays "added".
                updated[key] = None
            self._items[key] = resource
        return ChangeSet(tuple(added), tuple(updated), (), unchanged)

    def _finish(self, changes: ChangeSet) -> ChangeSet:
        if not changes.empty:
            self._revision += 1
        return changes
