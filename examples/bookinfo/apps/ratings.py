"""Bookinfo ratings: stars per reviewer. ``GET /ratings/<id>``, ``GET /health``.

The response echoes the propagated headers it received under ``"seen"``, so a
caller can check that ``end-user`` and trace headers made it through the chain.
"""

from __future__ import annotations

from bookinfo_http import POD_NAME, Request, Response, health, propagated, serve

STARS = {"reviewer-1": 5, "reviewer-2": 3}


def ratings(request: Request) -> Response:
    seen = propagated(request.headers)
    seen.pop("user-agent", None)
    return Response(
        body={"id": int(request.params[0]), "ratings": STARS, "seen": seen, "pod": POD_NAME}
    )


if __name__ == "__main__":
    serve("ratings", [(r"/ratings/(\d+)", ratings), (r"/health", health)])
