"""Bookinfo product page: aggregates details and reviews as JSON.

Routes: ``GET /productpage``, ``GET /health``, ``GET /login?user=<name>``,
``GET /logout``, ``GET /static/<file>``.

The user is the ``end-user`` request header, else the ``user`` cookie set by
``/login``; it is forwarded as ``end-user`` (with the trace headers) to
``$DETAILS_URL`` and ``$REVIEWS_URL`` (defaults: the mesh names
``http://details:9080`` and ``http://reviews:9080``). A failing upstream turns
into an ``{"error": ...}`` for that part; the page itself stays 200.
"""

from __future__ import annotations

import os
from http.cookies import CookieError, SimpleCookie
from typing import Any

from bookinfo_http import (
    POD_NAME,
    Request,
    Response,
    UpstreamError,
    env_float,
    get_json,
    health,
    propagated,
    serve,
)

DETAILS_URL = os.environ.get("DETAILS_URL", "http://details:9080").rstrip("/")
REVIEWS_URL = os.environ.get("REVIEWS_URL", "http://reviews:9080").rstrip("/")
TIMEOUT = env_float("UPSTREAM_TIMEOUT", 3.0)

PRODUCT = {
    "id": 0,
    "title": "The Comedy of Errors",
    "summary": "Two sets of identical twins, separated at birth, meet again in Ephesus.",
}
STYLE = b"body { font-family: sans-serif; }\n"


def current_user(request: Request) -> str | None:
    user = request.headers.get("end-user")
    if user:
        return user
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(request.headers.get("cookie") or "")
    except CookieError:
        return None
    morsel = cookies.get("user")
    return morsel.value if morsel and morsel.value else None


def fetch(url: str, headers: dict[str, str]) -> dict[str, Any]:
    try:
        data = get_json(url, headers, TIMEOUT)
    except UpstreamError as exc:
        return {"error": str(exc)}
    return data if isinstance(data, dict) else {"error": f"{url}: not a JSON object"}


def productpage(request: Request) -> Response:
    user = current_user(request)
    headers = propagated(request.headers)
    if user:
        headers["end-user"] = user
    book = PRODUCT["id"]
    details = fetch(f"{DETAILS_URL}/details/{book}", headers)
    reviews = fetch(f"{REVIEWS_URL}/reviews/{book}", headers)
    return Response(
        body={
            "product": PRODUCT,
            "details": details,
            "reviews": reviews,
            "reviews_version": reviews.get("version"),
            "user": user,
            "pod": POD_NAME,
        }
    )


def login(request: Request) -> Response:
    user = (request.query.get("user") or [""])[0]
    if not user.isalnum():
        return Response(400, {"error": "login needs ?user=<letters and digits>"})
    return Response(body={"user": user}, headers={"Set-Cookie": f"user={user}; Path=/"})


def logout(_: Request) -> Response:
    return Response(body={"user": None}, headers={"Set-Cookie": "user=; Path=/; Max-Age=0"})


def static(request: Request) -> Response:
    if request.params[0] == "bookinfo.css":
        return Response(body=STYLE, content_type="text/css")
    return Response(404, {"error": f"no static file {request.params[0]}"})


if __name__ == "__main__":
    serve(
        "productpage",
        [
            (r"/productpage", productpage),
            (r"/health", health),
            (r"/login", login),
            (r"/logout", logout),
            (r"/static/(.+)", static),
        ],
    )
