"""Mutual TLS, the production transport: the server presents its certificate
and requires a client certificate signed by the configured CA; the client
certificate's common name is the caller's identity (server/auth.py)."""

from __future__ import annotations

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
