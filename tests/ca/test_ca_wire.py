"""Istio's certificate messages, hand-encoded, checked against protobuf itself.

The oracle is a message class built at test time from a
``FileDescriptorProto`` that describes Istio's ``ca.proto`` messages, so
protobuf's own encoder and parser judge ours in both directions.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2

from mizzen.ca import wire

_F = descriptor_pb2.FieldDescriptorProto


def _istio_messages() -> tuple[type[Any], type[Any]]:
    pool = descriptor_pool.DescriptorPool()
    struct_file = descriptor_pb2.FileDescriptorProto()
    struct_pb2.DESCRIPTOR.CopyToProto(struct_file)
    pool.Add(struct_file)
    ca = descriptor_pb2.FileDescriptorProto(
        name="security/proto/istioca.proto",
        package="istio.v1.auth",
        syntax="proto3",
        dependency=["google/protobuf/struct.proto"],
    )
    request = ca.message_type.add(name="IstioCertificateRequest")
    request.field.add(name="csr", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    request.field.add(
        name="validity_duration", number=3, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL
    )
    request.field.add(
        name="metadata",
        number=4,
        type=_F.TYPE_MESSAGE,
        type_name=".google.protobuf.Struct",
        label=_F.LABEL_OPTIONAL,
    )
    response = ca.message_type.add(name="IstioCertificateResponse")
    response.field.add(name="cert_chain", number=1, type=_F.TYPE_STRING, label=_F.LABEL_REPEATED)
    pool.Add(ca)
    return (
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("istio.v1.auth.IstioCertificateRequest")
        ),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("istio.v1.auth.IstioCertificateResponse")
        ),
    )


Request, Response = _istio_messages()

CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\u00e9\n-----END CERTIFICATE REQUEST-----\n"
LONG = "x" * 70_000  # a length that needs a three-byte varint


def test_names_are_istios() -> None:
    assert wire.PATH == "/istio.v1.auth.IstioCertificateService/CreateCertificate"


@pytest.mark.parametrize("seconds", [1, 3600, 86400, 2**31, 2**63 - 1, -1, -86400, -(2**63)])
@pytest.mark.parametrize("csr", [CSR, LONG, "a"])
def test_request_matches_protobuf(csr: str, seconds: int) -> None:
    ours = wire.encode_request(csr, seconds)
    # Byte for byte what protobuf writes (fields in number order) ...
    assert ours == Request(csr=csr, validity_duration=seconds).SerializeToString()
    # ... and what protobuf reads back.
    parsed = Request.FromString(ours)
    assert (parsed.csr, parsed.validity_duration) == (csr, seconds)
    assert wire.decode_request(ours) == (csr, seconds)


def test_request_with_zero_validity_parses_the_same() -> None:
    # proto3 leaves a zero out; we write it: both parse to the same message.
    ours = wire.encode_request(CSR, 0)
    assert Request.FromString(ours) == Request(csr=CSR)
    assert wire.decode_request(Request(csr=CSR).SerializeToString()) == (CSR, 0)


def test_decode_request_from_protobuf_skips_metadata_and_unknown_fields() -> None:
    message = Request(csr=CSR, validity_duration=-5)
    message.metadata.update({"CertSigner": "istio", "n": 3, "nested": {"a": [1, "b", True]}})
    data = message.SerializeToString()
    assert wire.decode_request(data) == (CSR, -5)
    # Unknown fields of every wire type, before and after the known ones.
    unknown = (
        bytes([0x10, 0x96, 0x01])  # field 2, varint 150
        + bytes([0x29]) + (7).to_bytes(8, "little")  # field 5, fixed64
        + bytes([0x35]) + (9).to_bytes(4, "little")  # field 6, fixed32
        + bytes([0x3A, 0x03]) + b"abc"  # field 7, length-delimited
        + bytes([0xF8, 0xFF, 0xFF, 0xFF, 0x0F, 0x01])  # field 2**29 - 1, varint
    )  # fmt: skip
    assert wire.decode_request(unknown + data + unknown) == (CSR, -5)
    # protobuf agrees that these bytes are a valid request.
    assert Request.FromString(unknown + data + unknown).csr == CSR


def test_decode_request_last_value_wins_like_protobuf() -> None:
    data = wire.encode_request("first", 10) + wire.encode_request("second", 20)
    parsed = Request.FromString(data)
    assert wire.decode_request(data) == (parsed.csr, parsed.validity_duration) == ("second", 20)


def test_empty_request_is_empty_fields() -> None:
    assert wire.decode_request(b"") == ("", 0)


@pytest.mark.parametrize(
    "chain", [[], ["leaf"], [CSR, LONG, "root\n"], ["", "x"], ["\u00fc" * 200] * 3]
)
def test_response_matches_protobuf(chain: list[str]) -> None:
    ours = wire.encode_response(chain)
    assert ours == Response(cert_chain=chain).SerializeToString()
    assert list(Response.FromString(ours).cert_chain) == chain
    assert wire.decode_response(ours) == chain
    assert wire.encode_response(tuple(chain)) == ours


def test_decode_response_skips_unknown_fields() -> None:
    data = Response(cert_chain=["a", "b"]).SerializeToString()
    assert wire.decode_response(b"\x10\x01" + data + b"\x1a\x01z") == ["a", "b"]


def _broken_prefixes(data: bytes, *whole: bytes) -> list[bytes]:
    """Every strict prefix of ``data`` that cuts a field in half (``whole``:
    the prefixes that end on a field boundary, valid messages themselves)."""
    return [data[:n] for n in range(1, len(data)) if data[:n] not in whole]


_REQUEST = wire.encode_request("abc", -7)
_RESPONSE = wire.encode_response(["ab", "cd"])


@pytest.mark.parametrize("data", _broken_prefixes(_REQUEST, _REQUEST[:5]))
def test_truncated_request_raises(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_request(data)
    # protobuf refuses the same bytes.
    with pytest.raises(Exception, match=r"(?i)truncated|error parsing"):
        Request.FromString(data)


@pytest.mark.parametrize("data", _broken_prefixes(_RESPONSE, wire.encode_response(["ab"])))
def test_truncated_response_raises(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_response(data)
    with pytest.raises(Exception, match=r"(?i)truncated|error parsing"):
        Response.FromString(data)


def test_overlong_varint_keeps_64_bits_like_protobuf() -> None:
    # Ten bytes can carry 70 bits; protobuf keeps the low 64.
    data = b"\x18" + b"\xff" * 9 + b"\x7f"
    assert wire.decode_request(data) == ("", Request.FromString(data).validity_duration) == ("", -1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x05ab", "truncated length-delimited"),
        (b"\x0a\xff\xff\xff\xff\x0f", "truncated length-delimited"),
        (b"\x18", "truncated or overlong varint"),
        (b"\x18" + b"\xff" * 10 + b"\x01", "truncated or overlong varint"),
        (b"\x29\x00\x00", "truncated fixed-width"),
        (b"\x00\x01", "field number 0"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x08\x01", "csr must be a string"),
        (b"\x0a\x02\xff\xfe", "csr is not UTF-8"),
    ],
)
def test_malformed_request_says_why(data: bytes, message: str) -> None:
    with pytest.raises(wire.WireError, match=message):
        wire.decode_request(data)


def test_malformed_response_says_why() -> None:
    with pytest.raises(wire.WireError, match="cert_chain must be a string"):
        wire.decode_response(b"\x08\x01")
    with pytest.raises(wire.WireError, match="cert_chain is not UTF-8"):
        wire.decode_response(b"\x0a\x01\xff")


def test_wire_error_is_a_value_error() -> None:
    assert issubclass(wire.WireError, ValueError)
