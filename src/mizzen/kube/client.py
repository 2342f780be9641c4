"""A small asyncio client for the Kubernetes API (adapter: IO only).

Built on aiohttp rather than a generated client (kubernetes_asyncio, kr8s,
lightkube): what Mizzen must get exactly right is list+watch (resource
versions, bookmarks, 410 Gone, back-off), and those are a few lines over
raw HTTP that the tests can see, where generated clients hide them behind
their own retry loops. aiohttp also serves the admission webhooks, so one
dependency covers both directions. Objects stay plain dicts, as the API
sends them; typed views live in the layers that read them.

Credentials come from a kubeconfig (client certificates, as the local
cluster's components use) or from the pod's service-account token, re-read
on every request because the kubelet's role rotates it.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    """The API server refused a request (status code and its message)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token_file: str | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path | str) -> Credentials:
        raw = yaml.safe_load(Path(path).read_text())
        current = raw.get("current-context")
        context = next(c["context"] for c in raw["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in raw["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in raw["users"] if u["name"] == context["user"])
        return cls(
            server=cluster["server"],
            ca_file=cluster.get("certificate-authority"),
            cert_file=user.get("client-certificate"),
            key_file=user.get("client-key"),
            token_file=user.get("tokenFile"),
        )

    @classmethod
    def in_cluster(cls, directory: Path = IN_CLUSTER_DIR) -> Credentials:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        return cls(
            server=f"https://{host}:{port}",
            ca_file=str(directory / "ca.crt"),
            token_file=str(directory / "token"),
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def headers(self) -> dict[str, str]:
        if not self.token_file:
            return {}
        return {"Authorization": f"Bearer {Path(self.token_file).read_text().strip()}"}


def resource_path(
    api_version: str, plural: str, namespace: str | None = None, name: str | None = None
) -> str:
    """/api/v1/namespaces/ns/pods/name, /apis/apps/v1/deployments, ..."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


class KubeClient:
    """One HTTP session to one API server. Use ``async with``."""

    def __init__(self, credentials: Credentials, *, user_agent: str = "mizzen") -> None:
        self.credentials = credentials
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        connector = aiohttp.TCPConnector(ssl=self.credentials.ssl_context(), limit=32)
        self._session = aiohttp.ClientSession(
            self.credentials.server,
            connector=connector,
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            # No proxy from the environment may see API traffic.
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeClient used outside `async with`")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {**self.credentials.headers(), "Content-Type": content_type}
        async with self.session.request(
            method,
            path,
            data=data,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _error(resp.status, text)
            return json.loads(text) if text else None

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Any, **params: str) -> Any:
        return await self.request("POST", path, body=body, params=params or None)

    async def replace(self, path: str, body: Any) -> Any:
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: Any) -> Any:
        return await self.request(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )

    async def delete(self, path: str, body: Any = None) -> Any:
        return await self.request("DELETE", path, body=body)

    async def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300, **params: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type": ..., "object": ...}``) after resource_version.

        Bookmarks are asked for so that a quiet resource still advances the
        resume point. The stream ends when the server closes it; an ERROR
        event (410 Gone after compaction) is yielded for the caller to relist.
        """
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            **params,
        }
        async with self.session.get(
            f"{path}?{urlencode(query)}",
            headers=self.credentials.headers(),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.text())
            # Split lines ourselves: an event (a large CRD, say) may exceed
            # the line limit of aiohttp's own readline.
            pending = b""
            async for chunk in resp.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)


def _error(status: int, text: str) -> KubeError:
    try:
        body = json.loads(text)
        return KubeError(status, str(body.get("reason", "")), str(body.get("message", text)))
    except (ValueError, AttributeError):
        return KubeError(status, "", text.strip()[:500])
