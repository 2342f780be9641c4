"""Bookinfo details: facts about a book. ``GET /details/<id>``, ``GET /health``."""

from __future__ import annotations

from bookinfo_http import POD_NAME, Request, Response, health, serve


def details(request: Request) -> Response:
    book_id = int(request.params[0])
    return Response(
        body={
            "id": book_id,
            "author": "William Shakespeare",
            "year": 1595,
            "type": "paperback",
            "pages": 208,
            "publisher": "Mizzen Press",
            "language": "English",
            "pod": POD_NAME,
        }
    )


if __name__ == "__main__":
    serve("details", [(r"/details/(\d+)", details), (r"/health", health)])
