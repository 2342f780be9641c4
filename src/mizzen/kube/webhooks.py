"""The admission webhooks over HTTPS (adapter: aiohttp in, kube/admission.py
decides).

``/inject`` is the mutating webhook, ``/validate`` the validating one, both
on 15017 as istiod serves them; the API server reaches them through the
``istiod`` Service (port 443) and checks the certificate against the
``caBundle`` the control plane writes into the webhook configurations.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from mizzen.kube.admission import AdmissionError, review_injection, review_validation
from mizzen.kube.inject import InjectOptions

log = logging.getLogger("mizzen.kube.webhooks")

MAX_BODY = 8 * 1024 * 1024

NamespaceLabels = Callable[[str], Mapping[str, str]]


def make_app(options: InjectOptions, namespace_labels: NamespaceLabels) -> web.Application:
    async def decode(request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None

    async def inject(request: web.Request) -> web.Response:
        review = await decode(request)
        inner = review.get("request") if isinstance(review, dict) else None
        namespace = str(inner.get("namespace") or "") if isinstance(inner, dict) else ""
        try:
            answer = review_injection(review, namespace_labels(namespace), options)
        except AdmissionError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response(answer)

    async def validate(request: web.Request) -> web.Response:
        review = await decode(request)
        try:
            answer = review_validation(review)
        except AdmissionError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        response = answer["response"]
        if not response["allowed"]:
            log.info("refused: %s", response["status"]["message"])
        return web.json_response(answer)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/inject", inject)
    app.router.add_post("/inject/{rest:.*}", inject)
    app.router.add_post("/validate", validate)
    app.router.add_post("/validate/{rest:.*}", validate)
    return app


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
