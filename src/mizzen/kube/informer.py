"""List+watch that loses nothing: a local cache of one resource kept equal to
the API server's, with a callback per change.

The rules, as client-go's reflector keeps them:
- list, remember the list's resourceVersion, then watch from it;
- every event and bookmark advances the resume point; a watch that ends
  (server timeout, dropped connection) resumes from there, so nothing between
  is missed;
- a 410 Gone (the resume point was compacted away) means relist: the new list
  is diffed against the cache, so a change made while the watch was down is
  delivered once, as ADDED, MODIFIED or DELETED, and an unchanged object is
  not delivered again;
- errors back off exponentially (0.5 s doubling to 30 s), reset by success.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from mizzen.kube.client import KubeClient, KubeError

log = logging.getLogger("mizzen.kube.informer")

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Called with ("ADDED" | "MODIFIED" | "DELETED", object)."""


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Gone(Exception):
    """The watch's resource version is too old: relist."""


class Informer:
    def __init__(
        self,
        client: KubeClient,
        path: str,
        handler: Handler,
        *,
        params: Mapping[str, str] | None = None,
        kind: str = "",
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.path = path
        self.handler = handler
        self.params = dict(params or {})
        self.kind = kind or path
        self.watch_timeout = watch_timeout
        self.cache: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0  # lists after the first: visible to tests and status

    async def run(self) -> None:
        backoff = 0.5
        listed = False
        while True:
            try:
                if not listed:
                    await self._list()
                    listed = True
                # Returns when the server ends the watch; a dropped one raises.
                # Either way the next watch resumes from resource_version.
                await self._watch()
                backoff = 0.5
            except Gone:
                log.info(
                    "%s: resource version %s expired, relisting", self.kind, self.resource_version
                )
                self.relists += 1
                listed = False
            except (KubeError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                where = f"watch from {self.resource_version}" if listed else "list"
                log.warning("%s: %s failed: %s; retrying in %.1f s", self.kind, where, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)

    async def _list(self) -> None:
        items: list[dict[str, Any]] = []
        params = {**self.params, "limit": "500"}
        while True:
            page = await self.client.get(self.path, **params)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            params["continue"] = token
        self.resource_version = str(page["metadata"]["resourceVersion"])
        fresh = {object_key(o): o for o in items}
        for key in [k for k in self.cache if k not in fresh]:
            await self._deliver("DELETED", self.cache.pop(key))
        for key, obj in fresh.items():
            old = self.cache.get(key)
            if old is None or _rv(old) != _rv(obj):
                self.cache[key] = obj
                await self._deliver("ADDED" if old is None else "MODIFIED", obj)
        self.synced.set()

    async def _watch(self) -> None:
        try:
            await self._watch_once()
        except KubeError as exc:
            if exc.status == 410:
                raise Gone() from None
            raise

    async def _watch_once(self) -> None:
        async for event in self.client.watch(
            self.path, self.resource_version, timeout_seconds=self.watch_timeout, **self.params
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone()
                raise KubeError(
                    int(obj.get("code", 500)), str(obj.get("reason")), str(obj.get("message"))
                )
            self.resource_version = _rv(obj) or self.resource_version
            if kind == "BOOKMARK":
                continue
            key = object_key(obj)
            if kind == "DELETED":
                if self.cache.pop(key, None) is not None:
                    await self._deliver("DELETED", obj)
                continue
            old = self.cache.get(key)
            if old is not None and _rv(old) == _rv(obj):
                continue
            self.cache[key] = obj
            await self._deliver("ADDED" if old is None else "MODIFIED", obj)

    async def _deliver(self, kind: str, obj: dict[str, Any]) -> None:
        try:
            await self.handler(kind, obj)
        except Exception:
            # One bad object must not stop the stream for every other one.
            log.exception("%s: handling %s %s failed", self.kind, kind, object_key(obj))
