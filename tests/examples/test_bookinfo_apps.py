"""The Bookinfo apps as real processes on 127.0.0.1: aggregation, versions,
header propagation, degradation, keep-alive and SIGTERM."""

from __future__ import annotations

import http.client
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

TRACE = {
    "x-request-id": "req-1234",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "x-b3-sampled": "1",
}


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port that accepts connections but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def chain(run_app: Any, version: str) -> Any:
    """ratings <- reviews(version) <- productpage -> details; returns productpage."""
    ratings = run_app("ratings")
    reviews = run_app("reviews", VERSION=version, RATINGS_URL=ratings.url)
    details = run_app("details")
    return run_app("productpage", DETAILS_URL=details.url, REVIEWS_URL=reviews.url)


def test_every_app_is_healthy(run_app: Any) -> None:
    for name in ("details", "ratings", "reviews", "productpage"):
        status, headers, body = run_app(name).get("/health")
        assert (status, body) == (200, {"status": "ok"}), name
        assert headers["content-type"] == "application/json"


def test_productpage_aggregates_details_reviews_and_ratings(run_app: Any) -> None:
    page = chain(run_app, "v2")
    status, _, body = page.get("/productpage")
    assert status == 200
    assert body["product"]["title"] == "The Comedy of Errors"
    assert body["details"]["author"] == "William Shakespeare"
    assert body["reviews_version"] == "v2"
    ratings = [review["rating"] for review in body["reviews"]["reviews"]]
    assert ratings == [{"stars": 5, "color": "black"}, {"stars": 3, "color": "black"}]
    assert body["user"] is None
    assert "end-user" not in body["reviews"]["ratings_seen"]


def test_end_user_and_trace_headers_reach_ratings(run_app: Any) -> None:
    page = chain(run_app, "v2")
    status, _, body = page.get("/productpage", {"end-user": "jason", **TRACE})
    assert status == 200
    assert body["user"] == "jason"
    assert body["reviews"]["ratings_seen"] == {"end-user": "jason", **TRACE}


def test_login_cookie_becomes_end_user(run_app: Any) -> None:
    page = chain(run_app, "v2")
    status, headers, body = page.get("/login?user=jason")
    assert (status, body) == (200, {"user": "jason"})
    assert headers["set-cookie"].startswith("user=jason;")
    _, _, body = page.get("/productpage", {"cookie": "user=jason"})
    assert body["user"] == "jason"
    assert body["reviews"]["ratings_seen"]["end-user"] == "jason"
    assert page.get("/login?user=")[0] == 400


@pytest.mark.parametrize(("version", "color"), [("v1", None), ("v2", "black"), ("v3", "red")])
def test_reviews_versions(run_app: Any, version: str, color: str | None) -> None:
    ratings = run_app("ratings")
    reviews = run_app("reviews", VERSION=version, RATINGS_URL=ratings.url)
    status, _, body = reviews.get("/reviews/0", {"end-user": "jason"})
    assert status == 200
    assert body["version"] == version
    for review in body["reviews"]:
        if color is None:
            assert "rating" not in review
        else:
            assert review["rating"]["color"] == color
            assert review["rating"]["stars"] in (3, 5)
    if color:
        assert body["ratings_seen"] == {"end-user": "jason"}


def test_productpage_degrades_when_upstreams_fail(run_app: Any, dead_port: int) -> None:
    reviews = run_app("reviews", VERSION="v3", RATINGS_URL=f"http://127.0.0.1:{dead_port}")
    page = run_app(
        "productpage", DETAILS_URL=f"http://127.0.0.1:{dead_port}", REVIEWS_URL=reviews.url
    )
    status, _, body = page.get("/productpage")
    assert status == 200
    assert "error" in body["details"]
    assert body["reviews_version"] == "v3"
    assert all("unavailable" in r["rating"]["error"] for r in body["reviews"]["reviews"])

    page_no_reviews = run_app("productpage", REVIEWS_URL=f"http://127.0.0.1:{dead_port}")
    status, _, body = page_no_reviews.get("/productpage")
    assert status == 200
    assert "error" in body["reviews"]
    assert body["reviews_version"] is None


def test_upstream_timeout_is_short(run_app: Any, black_hole: int, dead_port: int) -> None:
    page = run_app(
        "productpage",
        DETAILS_URL=f"http://127.0.0.1:{black_hole}",
        REVIEWS_URL=f"http://127.0.0.1:{dead_port}",
        UPSTREAM_TIMEOUT="0.3",
    )
    began = time.monotonic()
    status, _, body = page.get("/productpage")
    assert status == 200
    assert "timed out" in body["details"]["error"]
    assert time.monotonic() - began < 3


def test_unknown_path_is_404(run_app: Any) -> None:
    details = run_app("details")
    assert details.get("/nope")[0] == 404
    assert details.get("/details/abc")[0] == 404
    assert details.get("/details/7")[2]["id"] == 7


def test_keep_alive_with_content_length(run_app: Any) -> None:
    ratings = run_app("ratings")
    conn = http.client.HTTPConnection("127.0.0.1", ratings.port, timeout=5)
    try:
        conn.request("GET", "/ratings/0")
        first = conn.getresponse()
        body = first.read()
        assert first.version == 11
        assert int(first.getheader("Content-Length", "-1")) == len(body)
        sock = conn.sock
        assert sock is not None  # the server did not close the connection
        conn.request("GET", "/health")
        second = conn.getresponse()
        assert second.status == 200
        second.read()
        assert conn.sock is sock  # same TCP connection reused
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["details", "ratings", "reviews", "productpage"])
def test_sigterm_exits_quickly(run_app: Any, name: str) -> None:
    app = run_app(name)
    # An idle keep-alive connection must not hold the process up.
    idle = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    idle.request("GET", "/health")
    idle.getresponse().read()
    began = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=5) == 0
    assert time.monotonic() - began < 2
    idle.close()
