"""The certificate authority: SPIFFE identities, CSR signing, pod tokens.

Pure functions over ``cryptography`` objects, with thin file adapters
(``load_plugin``, ``load_or_create``, ``load_or_create_key``, ``write_private``).
"""

from mizzen.ca.authority import (
    BACKDATE,
    DEFAULT_ROOT_TTL,
    DEFAULT_WORKLOAD_CERT_TTL,
    MAX_WORKLOAD_CERT_TTL,
    PLUGIN_FILES,
    CertificateAuthority,
    IssuedCert,
    ca_from_plugin_pem,
    generate_key,
    load_or_create,
    load_plugin,
    make_csr,
    private_key_pem,
    self_signed_root,
)
from mizzen.ca.errors import CaError, CsrRejected
from mizzen.ca.files import write_private, write_public
from mizzen.ca.identity import DEFAULT_TRUST_DOMAIN, SpiffeId, parse_spiffe, spiffe_id
from mizzen.ca.tokens import PodClaims, TokenError, TokenSigner, load_or_create_key

__all__ = [
    "BACKDATE",
    "DEFAULT_ROOT_TTL",
    "DEFAULT_TRUST_DOMAIN",
    "DEFAULT_WORKLOAD_CERT_TTL",
    "MAX_WORKLOAD_CERT_TTL",
    "PLUGIN_FILES",
    "CaError",
    "CertificateAuthority",
    "CsrRejected",
    "IssuedCert",
    "PodClaims",
    "SpiffeId",
    "TokenError",
    "TokenSigner",
    "ca_from_plugin_pem",
    "generate_key",
    "load_or_create",
    "load_or_create_key",
    "load_plugin",
    "make_csr",
    "parse_spiffe",
    "private_key_pem",
    "self_signed_root",
    "spiffe_id",
    "write_private",
    "write_public",
]
