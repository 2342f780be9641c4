"""Errors of the certificate authority.

Every message is one line that names the file or field at fault and says what
to do about it; none ever holds key material::

    CaError             unusable CA files, expired signing certificate, IO errors
     └── CsrRejected    a certificate request the CA refuses, and why

Token checks raise ``mizzen.ca.tokens.TokenError`` (not a CaError: a bad token
is a refused caller, not a broken CA).
"""

from __future__ import annotations


class CaError(Exception):
    """The CA cannot do what was asked; the message says what to fix."""


class CsrRejected(CaError):
    """A CSR (or its requested lifetime) that the CA refuses to sign."""
