"""Istio's certificate service on the wire: ``istio.v1.auth.IstioCertificateService``.

Only two small messages, so they are encoded here by hand instead of
generating code from Istio's ``ca.proto``:

    IstioCertificateRequest  { string csr = 1; int64 validity_duration = 3;
                               google.protobuf.Struct metadata = 4; }
    IstioCertificateResponse { repeated string cert_chain = 1; }

``validity_duration`` is in seconds. The caller authenticates with
``authorization: Bearer <token>`` in the call's metadata. Unknown fields
are skipped when decoding, as protobuf requires.
"""

from __future__ import annotations

from collections.abc import Iterator

SERVICE = "istio.v1.auth.IstioCertificateService"
METHOD = "CreateCertificate"
PATH = f"/{SERVICE}/{METHOD}"

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """Bytes that are not the message they claim to be."""


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _key(number, _BYTES) + _varint(len(data)) + data


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field of a message."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == _BYTES:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise WireError("truncated length-delimited field")
            value, pos = data[pos : pos + length], pos + length
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
            if pos + size > len(data):
                raise WireError("truncated fixed-width field")
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        yield number, wire_type, value


def _text(value: int | bytes, what: str) -> str:
    if not isinstance(value, bytes):
        raise WireError(f"{what} must be a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{what} is not UTF-8") from None


def encode_request(csr_pem: str, validity_seconds: int) -> bytes:
    return _bytes_field(1, csr_pem.encode()) + _key(3, _VARINT) + _varint(validity_seconds)


def decode_request(data: bytes) -> tuple[str, int]:
    """(CSR PEM, requested validity in seconds, 0 when not given)."""
    csr, validity = "", 0
    for number, wire_type, value in _fields(data):
        if number == 1:
            csr = _text(value, "csr")
        elif number == 3 and wire_type == _VARINT:
            assert isinstance(value, int)
            # A ten-byte varint can carry more than 64 bits: keep the low
            # 64, as protobuf does, then read them as two's complement.
            value &= (1 << 64) - 1
            validity = value - (1 << 64) if value >= 1 << 63 else value
    return csr, validity


def encode_response(chain: list[str] | tuple[str, ...]) -> bytes:
    return b"".join(_bytes_field(1, cert.encode()) for cert in chain)


def decode_response(data: bytes) -> list[str]:
    return [_text(value, "cert_chain") for number, _, value in _fields(data) if number == 1]
