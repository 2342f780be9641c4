"""Bookinfo reviews. ``GET /reviews/<id>``, ``GET /health``.

``VERSION`` (env) picks the behaviour: v1 shows no stars; v2 (black stars) and
v3 (red stars) call ``$RATINGS_URL/ratings/<id>`` (default ``http://ratings:9080``),
forwarding the propagated headers. If ratings fails, the reviews are still
returned, each with a ``rating.error``.
"""

from __future__ import annotations

import os
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

VERSION = os.environ.get("VERSION", "v1")
RATINGS_URL = os.environ.get("RATINGS_URL", "http://ratings:9080").rstrip("/")
TIMEOUT = env_float("UPSTREAM_TIMEOUT", 2.5)
STAR_COLOR = {"v2": "black", "v3": "red"}

REVIEWS = (
    ("reviewer-1", "A fast, silly farce; two pairs of twins and not one sensible person."),
    ("reviewer-2", "Funny, if you can keep track of which Dromio is which."),
)


def reviews(request: Request) -> Response:
    book_id = request.params[0]
    body: dict[str, Any] = {"id": int(book_id), "version": VERSION, "pod": POD_NAME}
    items: list[dict[str, Any]] = [{"reviewer": who, "text": text} for who, text in REVIEWS]
    color = STAR_COLOR.get(VERSION)
    if color:
        try:
            data = get_json(
                f"{RATINGS_URL}/ratings/{book_id}", propagated(request.headers), TIMEOUT
            )
            stars: dict[str, int] = data.get("ratings", {})
            for item in items:
                item["rating"] = {"stars": stars.get(item["reviewer"]), "color": color}
            body["ratings_seen"] = data.get("seen", {})
        except UpstreamError as exc:
            for item in items:
                item["rating"] = {"error": f"ratings service is unavailable ({exc})"}
    body["reviews"] = items
    return Response(body=body)


if __name__ == "__main__":
    serve(f"reviews-{VERSION}", [(r"/reviews/(\d+)", reviews), (r"/health", health)])
