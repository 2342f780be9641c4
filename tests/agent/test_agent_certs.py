"""The agent's certificate: made in the pod, signed by the control plane,
renewed at half-life.

``CertificateManager`` is driven with a fake CA client, an injected clock,
jitter and wait, so that renewal times and back-off are exact and no test
sleeps. The fake only replaces the transport: it signs the real CSR with a
real ``mizzen.ca`` authority. The real client (``CaClient``) is tested
separately below against a real grpc.aio TLS server running the real
``CertificateService``, and end to end by the e2e tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mizzen.agent.bootstrap import CONTROL_PLANE_NAME
from mizzen.agent.certs import (
    GRACE_RATIO,
    JITTER_RATIO,
    RETRY_MAX_S,
    RETRY_MIN_S,
    CaClient,
    CertificateError,
    CertificateManager,
    Issued,
    _wait,
)
from mizzen.agent.sds import SecretStore
from mizzen.ca import (
    CertificateAuthority,
    PodClaims,
    TokenSigner,
    generate_key,
    make_csr,
    self_signed_root,
    spiffe_id,
)
from mizzen.ca.service import CertificateService, PodRecord
from mizzen.xds.protocol import TYPE_SECRET

T0 = 1_800_000_000.0  # the fake clock's start, seconds since the epoch
IDENTITY = spiffe_id("shop", "reviews")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    authority, _ = self_signed_root("cluster.local", datetime.fromtimestamp(T0 - 60, UTC))
    return authority


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeClient:
    """Stands in for ``CaClient``'s transport: signs with a real CA at the
    fake clock's time, or fails as scripted."""

    def __init__(self, ca: CertificateAuthority, clock: Clock) -> None:
        self.ca = ca
        self.clock = clock
        self.failures: list[Exception] = []  # raised first, in order
        self.calls: list[int] = []  # ttl_s of every call
        self.wrong_key = False

    async def create_certificate(self, csr_pem: bytes, ttl_s: int) -> list[str]:
        self.calls.append(ttl_s)
        if self.failures:
            raise self.failures.pop(0)
        if self.wrong_key:
            csr_pem = make_csr(generate_key(), IDENTITY)
        now = datetime.fromtimestamp(self.clock(), UTC)
        issued = self.ca.sign_csr(csr_pem, IDENTITY, timedelta(seconds=ttl_s), now)
        return list(issued.chain_pem)


class Waits:
    """An injected ``wait``: records each delay, moves the clock, and stops
    (as if ``stop`` were set meanwhile) once ``stop_after`` waits happened."""

    def __init__(self, clock: Clock, stop_after: int = 1000) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, stop: asyncio.Event, seconds: float) -> bool:
        self.delays.append(seconds)
        self.clock.now += seconds
        if len(self.delays) >= self.stop_after:
            stop.set()
        return stop.is_set()


def manager(
    ca: CertificateAuthority,
    *,
    ttl_s: float = 3600,
    jitter: float = 0.5,
    stop_after: int = 1000,
) -> tuple[CertificateManager, FakeClient, Clock, Waits, SecretStore]:
    clock = Clock()
    client = FakeClient(ca, clock)
    waits = Waits(clock, stop_after)
    store = SecretStore()
    m = CertificateManager(
        client,  # type: ignore[arg-type]
        IDENTITY,
        ttl_s,
        store,
        ca.root_pem,
        clock=clock,
        jitter=lambda: jitter,
        wait=waits,
    )
    return m, client, clock, waits, store


# -- refresh ---------------------------------------------------------------------------


def test_refresh_installs_key_and_chain(ca: CertificateAuthority) -> None:
    m, client, _, _, store = manager(ca, ttl_s=7200.4)
    issued = asyncio.run(m.refresh())
    assert client.calls == [7200]
    assert m.current == issued
    assert issued.received_at == T0
    assert issued.not_after == T0 + 7200
    secrets = store.resources()[TYPE_SECRET]
    default = secrets["default"].tls_certificate
    (leaf,) = x509.load_pem_x509_certificates(default.certificate_chain.inline_bytes)
    assert f"{leaf.serial_number:X}".zfill(len(issued.serial)) == issued.serial
    key = serialization.load_pem_private_key(default.private_key.inline_bytes, None)
    assert key.public_key() == leaf.public_key()
    assert secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes == ca.root_pem.encode()
    assert store.version == 1


def test_every_refresh_makes_a_new_key(ca: CertificateAuthority) -> None:
    m, _, _, _, store = manager(ca)

    def key_bytes() -> bytes:
        data: bytes = store.resources()[TYPE_SECRET][
            "default"
        ].tls_certificate.private_key.inline_bytes
        return data

    async def twice() -> tuple[bytes, bytes]:
        await m.refresh()
        first = key_bytes()
        await m.refresh()
        return first, key_bytes()

    first, second = asyncio.run(twice())
    assert first != second
    assert store.version == 2


def test_a_certificate_for_another_key_is_refused(ca: CertificateAuthority) -> None:
    m, client, _, _, store = manager(ca)
    client.wrong_key = True
    with pytest.raises(CertificateError, match="not for the key this agent made"):
        asyncio.run(m.refresh())
    assert not store.ready and m.current is None


# -- renew_at -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jitter", "ratio"), [(0.0, GRACE_RATIO - JITTER_RATIO), (0.5, 0.5), (1.0, 0.51)]
)
def test_renew_at_is_half_way_from_receipt_with_jitter_bounds(
    ca: CertificateAuthority, jitter: float, ratio: float
) -> None:
    m, *_ = manager(ca, jitter=jitter)
    issued = Issued(("x",), "01", not_after=T0 + 10_000, received_at=T0 + 2_000)
    assert m.renew_at(issued) == pytest.approx(T0 + 2_000 + 8_000 * ratio)
    assert GRACE_RATIO == 0.5 and JITTER_RATIO == 0.01


def test_renew_at_of_an_expired_certificate_is_now(ca: CertificateAuthority) -> None:
    m, *_ = manager(ca)
    issued = Issued(("x",), "01", not_after=T0 - 5, received_at=T0)
    assert m.renew_at(issued) == T0


# -- obtain ---------------------------------------------------------------------------------


def test_obtain_retries_with_back_off(ca: CertificateAuthority) -> None:
    m, client, _, waits, store = manager(ca)
    client.failures = [
        CertificateError("UNAVAILABLE"),
        CertificateError("PERMISSION_DENIED"),
        OSError("no route"),
        ValueError("garbage PEM"),
    ]
    issued = asyncio.run(m.obtain(asyncio.Event()))
    assert issued is not None and issued == m.current and store.ready
    assert waits.delays == [RETRY_MIN_S, 2 * RETRY_MIN_S, 4 * RETRY_MIN_S, 8 * RETRY_MIN_S]
    assert len(client.calls) == 5


def test_obtain_back_off_is_capped(ca: CertificateAuthority) -> None:
    m, client, _, waits, _ = manager(ca)
    client.failures = [CertificateError("down")] * 8
    assert asyncio.run(m.obtain(asyncio.Event())) is not None
    assert waits.delays == [1.0, 2.0, 4.0, 8.0, 16.0, RETRY_MAX_S, RETRY_MAX_S, RETRY_MAX_S]


def test_obtain_stops_when_stop_is_set(ca: CertificateAuthority) -> None:
    m, client, _, waits, store = manager(ca, stop_after=3)
    client.failures = [CertificateError("down")] * 10
    assert asyncio.run(m.obtain(asyncio.Event())) is None
    assert len(waits.delays) == 3 and len(client.calls) == 3
    assert not store.ready


def test_obtain_with_stop_already_set_does_nothing(ca: CertificateAuthority) -> None:
    m, client, *_ = manager(ca)
    stop = asyncio.Event()
    stop.set()
    assert asyncio.run(m.obtain(stop)) is None
    assert client.calls == []


def test_unforeseen_errors_are_logged_and_retried(
    ca: CertificateAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug must not end renewals silently (the certificate would expire
    under a running Envoy): it is logged with its traceback, and retried."""
    m, client, *_ = manager(ca)
    client.failures = [KeyError("a bug")]
    issued = asyncio.run(m.obtain(asyncio.Event()))
    assert issued is not None and len(client.calls) == 2
    assert "unexpected error renewing the certificate" in caplog.text
    assert "KeyError: 'a bug'" in caplog.text


# -- run ----------------------------------------------------------------------------------


def test_run_renews_at_half_life(ca: CertificateAuthority) -> None:
    m, client, clock, waits, store = manager(ca, ttl_s=3600, jitter=1.0, stop_after=4)
    asyncio.run(m.run(asyncio.Event()))
    # First certificate at T0; each renewal 51 % (jitter at its maximum)
    # of the lifetime after the previous one was received.
    assert waits.delays == pytest.approx([3600 * 0.51] * 4)
    assert len(client.calls) == 4  # the first, then one per renewal (the last wait stops)
    assert store.version == 4
    assert m.current is not None
    assert m.current.received_at == pytest.approx(T0 + 3 * 3600 * 0.51)
    assert clock.now == pytest.approx(T0 + 4 * 3600 * 0.51)


def test_run_retries_a_failed_renewal_while_the_certificate_is_good(
    ca: CertificateAuthority,
) -> None:
    m, client, _, waits, store = manager(ca, ttl_s=1000, jitter=0.5, stop_after=4)

    async def main() -> None:
        stop = asyncio.Event()
        await m.obtain(stop)
        client.failures = [CertificateError("control plane down")] * 2
        await m.run(stop)

    asyncio.run(main())
    # Renewal due at 500 s; two failures back off 1 s then 2 s; the third
    # attempt works and the next renewal is half of *its* lifetime later.
    assert waits.delays == pytest.approx([500.0, 1.0, 2.0, 500.0])
    assert store.version == 2


def test_run_with_an_overdue_certificate_renews_at_once(ca: CertificateAuthority) -> None:
    m, _, clock, waits, _ = manager(ca, ttl_s=100, stop_after=1)

    async def main() -> None:
        stop = asyncio.Event()
        await m.obtain(stop)
        clock.now += 1000  # asleep past expiry (a suspended machine)
        before = m.current
        await m.run(stop)
        assert m.current is not before

    asyncio.run(main())
    assert waits.delays == pytest.approx([50.0])  # the renewed one's half-life


def test_run_returns_when_stopped_before_the_first_certificate(
    ca: CertificateAuthority,
) -> None:
    m, client, _, waits, _ = manager(ca, stop_after=2)
    client.failures = [CertificateError("down")] * 10
    asyncio.run(m.run(asyncio.Event()))
    assert waits.delays == [1.0, 2.0]
    assert m.current is None


def test_real_wait_returns_early_on_stop() -> None:
    """The default wait, with real time: a stop set from another task ends
    a long wait at once; a short wait simply times out."""

    async def main() -> None:
        stop = asyncio.Event()
        assert await _wait(stop, 0.01) is False
        asyncio.get_running_loop().call_soon(stop.set)
        assert await asyncio.wait_for(_wait(stop, 3600), 10) is True

    asyncio.run(main())


# -- CaClient against a real TLS server ---------------------------------------------------


TD = "cluster.local"
TOKEN_KEY = b"k" * 32
CLAIMS = PodClaims("shop", "reviews-v1-0", "uid-1", "reviews")


def _server_credentials(
    authority: CertificateAuthority, names: list[str]
) -> grpc.ServerCredentials:
    now = datetime.now(UTC)
    key_pem, cert = authority.issue_server_cert(names, ["127.0.0.1"], timedelta(hours=1), now)
    chain = "".join(cert.chain_pem[:-1]).encode()
    return grpc.ssl_server_credentials([(key_pem, chain)])


class CaServer:
    """A grpc.aio server with TLS serving the real ``CertificateService``."""

    def __init__(self, authority: CertificateAuthority, names: list[str]) -> None:
        self.authority = authority
        self.names = names
        self.server: grpc.aio.Server | None = None
        self.address = ""

    async def __aenter__(self) -> CaServer:
        service = CertificateService(
            self.authority,
            TokenSigner(TOKEN_KEY),
            lambda ns, pod: (
                PodRecord("uid-1", "reviews") if (ns, pod) == ("shop", "reviews-v1-0") else None
            ),
            TD,
            # This server terminates TLS itself (no front): every call is secure.
            secure_transport=lambda peer: True,
        )
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((service.handler(),))
        port = self.server.add_secure_port(
            "127.0.0.1:0", _server_credentials(self.authority, self.names)
        )
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        await self.server.stop(None)


def _csr() -> bytes:
    return make_csr(generate_key(), spiffe_id("shop", "reviews", TD))


@pytest.fixture(scope="module")
def root_ca() -> CertificateAuthority:
    authority, _ = self_signed_root(TD, datetime.now(UTC))
    return authority


@pytest.fixture
def unique() -> Iterator[str]:
    yield uuid.uuid4().hex


def test_ca_client_gets_a_chain_over_verified_tls(root_ca: CertificateAuthority) -> None:
    async def main() -> list[str]:
        async with CaServer(root_ca, [CONTROL_PLANE_NAME]) as server:
            client = CaClient(
                server.address, root_ca.root_pem.encode(), TokenSigner(TOKEN_KEY).issue(CLAIMS)
            )
            return await client.create_certificate(_csr(), 600)

    chain = asyncio.run(main())
    leaf, root = (x509.load_pem_x509_certificate(c.encode()) for c in chain)
    assert root == root_ca.root_certs[0]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == timedelta(seconds=600) + timedelta(minutes=2)  # backdated 2 min
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [str(IDENTITY)]


def test_ca_client_checks_the_server_name(root_ca: CertificateAuthority) -> None:
    """Same root, same IP SAN, but not istiod's name: refused."""

    async def main() -> None:
        async with CaServer(root_ca, ["evil.example"]) as server:
            client = CaClient(
                server.address, root_ca.root_pem.encode(), TokenSigner(TOKEN_KEY).issue(CLAIMS)
            )
            with pytest.raises(CertificateError, match="UNAVAILABLE"):
                await client.create_certificate(_csr(), 600)

    asyncio.run(main())


def test_ca_client_checks_the_server_root(root_ca: CertificateAuthority) -> None:
    other, _ = self_signed_root(TD, datetime.now(UTC))

    async def main() -> None:
        async with CaServer(other, [CONTROL_PLANE_NAME]) as server:
            client = CaClient(
                server.address, root_ca.root_pem.encode(), TokenSigner(TOKEN_KEY).issue(CLAIMS)
            )
            with pytest.raises(CertificateError, match="UNAVAILABLE"):
                await client.create_certificate(_csr(), 600)

    asyncio.run(main())


def test_ca_client_sends_the_token(root_ca: CertificateAuthority) -> None:
    """A token the service cannot verify is refused, so the token is what
    the service judged: it was sent."""

    async def main() -> None:
        async with CaServer(root_ca, [CONTROL_PLANE_NAME]) as server:
            bad = CaClient(
                server.address, root_ca.root_pem.encode(), TokenSigner(b"x" * 32).issue(CLAIMS)
            )
            with pytest.raises(CertificateError) as info:
                await bad.create_certificate(_csr(), 600)
            message = str(info.value)
            assert f"the control plane at {server.address} refused the CSR" in message
            assert "UNAUTHENTICATED: bad pod credential" in message
            gone = CaClient(
                server.address,
                root_ca.root_pem.encode(),
                TokenSigner(TOKEN_KEY).issue(PodClaims("shop", "ghost-0", "uid-9", "reviews")),
            )
            with pytest.raises(CertificateError, match=r"UNAUTHENTICATED.*ghost-0"):
                await gone.create_certificate(_csr(), 600)

    asyncio.run(main())


def test_ca_client_unreachable_is_a_certificate_error(
    root_ca: CertificateAuthority, unique: str
) -> None:
    client = CaClient(f"unix-abstract:mizzen-test-{unique}", root_ca.root_pem.encode(), "t")
    with pytest.raises(CertificateError, match="UNAVAILABLE"):
        asyncio.run(client.create_certificate(_csr(), 600))
