"""Readiness logic (pure) and the health server over loopback."""

from __future__ import annotations

import asyncio

import pytest

from mizzen.agent.health import (
    HealthServer,
    Readiness,
    ReadinessMonitor,
    check_envoy,
    evaluate,
    fixed_admin,
    http_get,
    parse_admin_address,
    parse_http_response,
    parse_stats,
    respond,
)

CDS = "cluster_manager.cds.update_success"
LDS = "listener_manager.lds.update_success"


def test_parse_stats_skips_non_counters() -> None:
    text = f'{CDS}: 2\n{LDS}: 0\nsome.histogram: P0(nan,nan) P25(nan,nan)\nx.text: "hi"\n'
    assert parse_stats(text) == {CDS: 2, LDS: 0}


@pytest.mark.parametrize(
    ("state", "stats", "ready", "reason"),
    [
        ("LIVE", {CDS: 1, LDS: 1}, True, "ready"),
        ("LIVE", {CDS: 3, LDS: 0}, False, "no LDS received from xDS yet"),
        ("LIVE", {}, False, "no CDS and LDS received from xDS yet"),
        ("PRE_INITIALIZING", {}, False, "Envoy is PRE_INITIALIZING: no CDS and LDS"),
        ("INITIALIZING", {CDS: 1}, False, "Envoy is INITIALIZING: no LDS"),
        ("DRAINING", {CDS: 1, LDS: 1}, False, "Envoy is DRAINING"),
    ],
)
def test_evaluate(state: str, stats: dict[str, int], ready: bool, reason: str) -> None:
    got = evaluate(state, stats)
    assert got.ready is ready
    assert got.reason.startswith(reason)


def test_parse_http_response_plain_and_chunked() -> None:
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nLIVE"
    assert parse_http_response(plain) == (200, b"LIVE")
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    )
    assert parse_http_response(chunked) == (200, b"hello world")
    with pytest.raises(ConnectionError):
        parse_http_response(b"garbage")


def test_parse_admin_address() -> None:
    assert parse_admin_address("127.0.0.1:40123\n") == ("127.0.0.1", 40123)
    assert parse_admin_address("[::1]:15000") == ("::1", 15000)
    assert parse_admin_address("") is None


def test_respond() -> None:
    not_ready = Readiness(False, "no CDS received from xDS yet")
    assert respond("GET", "/healthz/ready", Readiness(True, "ready")).startswith(b"HTTP/1.1 200")
    r = respond("GET", "/healthz/ready?x=1", not_ready)
    assert r.startswith(b"HTTP/1.1 503")
    assert r.endswith(b"not ready: no CDS received from xDS yet\n")
    assert respond("GET", "/nope", not_ready).startswith(b"HTTP/1.1 404")
    assert respond("POST", "/healthz/ready", not_ready).startswith(b"HTTP/1.1 405")


def test_server_follows_the_monitor_over_loopback() -> None:
    async def scenario() -> None:
        results = [Readiness(False, "waiting"), Readiness(True, "ready")]

        async def check() -> Readiness:
            return results[0] if len(results) == 1 else results.pop(0)

        monitor = ReadinessMonitor(check, fast_interval_s=0.01, slow_interval_s=0.01)
        server = HealthServer(monitor)
        port = await server.start("127.0.0.1", 0)
        try:
            status, body = await http_get("127.0.0.1", port, "/healthz/ready")
            assert (status, body) == (503, b"not ready: Envoy admin not reachable yet\n")
            task = asyncio.create_task(monitor.run())
            deadline = asyncio.get_running_loop().time() + 5
            while (await http_get("127.0.0.1", port, "/healthz/ready"))[0] != 200:
                assert asyncio.get_running_loop().time() < deadline, "never became ready"
                await asyncio.sleep(0.01)
            task.cancel()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_check_envoy_without_admin_is_not_ready() -> None:
    async def scenario() -> Readiness:
        # Port 1 on loopback is closed: the agent must say so, not crash.
        return await check_envoy(fixed_admin("127.0.0.1", 1))

    got = asyncio.run(scenario())
    assert not got.ready
    assert "not reachable" in got.reason
