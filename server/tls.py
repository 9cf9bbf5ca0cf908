"""Mutual TLS, the production transport: the server presents its certificate
and requires a client certificate signed by the configured CA; the client
certificate's common name is the caller's identity (server/auth.py)."""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert_pem: bytes  # the server's certificate chain
    key_pem: bytes  # its private key
    client_ca_pem: bytes  # CA that signs client certificates

    @classmethod
    def read(cls, cert: str | Path, key: str | Path, client_ca: str | Path) -> TlsFiles:
        return cls(Path(cert).read_bytes(), Path(key).read_bytes(), Path(client_ca).read_bytes())


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)], root_certificates=tls.client_ca_pem, require_client_auth=True
    )


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """The same mutual TLS for the HTTP gateway: the server's certificate,
    client certificates required and checked against the client CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=tls.client_ca_pem.decode("ascii"))
    context.verify_mode = ssl.CERT_REQUIRED
    # ssl loads a certificate chain only from files: a private directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="medsettle-tls-") as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert.write_bytes(tls.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(tls.key_pem)
        os.chmod(key, 0o600)
        context.load_cert_chain(cert, key)
    return context
