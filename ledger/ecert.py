"""The e-insurance certificate (医保电子凭证): a signed, short-lived token
that identifies a person instead of a card number.

Token: ``MSEC1.<payload>.<signature>``, payload = base64url of a JSON object
{"psn": psn_no, "iat": issued (Unix s), "exp": expiry (Unix s), "nonce": 32
hex}, signature = base64url HMAC-SHA256(key, "MSEC1.<payload>"). The key is
per deployment (MEDSETTLE_ECERT_KEY: hex, at least 32 bytes; or
MEDSETTLE_ECERT_KEY_FILE: a file holding it). Verification checks the
signature (constant time), the bounds and the expiry; the settlement writer
refuses a nonce it has seen (replay). Tokens are never logged or stored:
only the nonce is kept.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

PREFIX = "MSEC1"
# Checked before any splitting, decoding or HMAC work. The longest token
# `issue` makes (30-character psn_no, a year-9999 timestamp) is 212 characters.
MAX_TOKEN_CHARS = 512
MAX_TTL_S = 600  # a certificate lives at most ten minutes
DEFAULT_TTL_S = 300
CLOCK_SKEW_S = 30  # an issuer's clock may run this far ahead
MIN_KEY_BYTES = 32
KEY_ENV = "MEDSETTLE_ECERT_KEY"
KEY_FILE_ENV = "MEDSETTLE_ECERT_KEY_FILE"
PSN_NO = re.compile(r"^[A-Za-z0-9]{1,30}\Z")
NONCE = re.compile(r"^[0-9a-f]{32}\Z")


class EcertError(ValueError):
    """A token that does not identify anyone; the message never repeats it."""


@dataclass(frozen=True, slots=True)
class EcertClaims:
    psn_no: str
    issued_s: int
    expires_s: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, signed: str) -> str:
    return _b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())


def parse_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise EcertError("the e-cert key must be hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise EcertError(f"the e-cert key must be at least {MIN_KEY_BYTES} bytes")
    return key


def key_from_env(env: Mapping[str, str] = os.environ) -> bytes | None:
    """The deployment's signing key, or None when e-certs are not accepted."""
    if env.get(KEY_ENV):
        return parse_key(env[KEY_ENV])
    if env.get(KEY_FILE_ENV):
        return parse_key(Path(env[KEY_FILE_ENV]).read_text("ascii"))
    return None


def issue(key: bytes, psn_no: str, now: dt.datetime, ttl_s: int = DEFAULT_TTL_S, nonce: str | None = None) -> str:
    if not PSN_NO.match(psn_no):
        raise EcertError("psn_no must be 1-30 letters or digits")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise EcertError(f"ttl must be 1..{MAX_TTL_S} seconds")
    if nonce is not None and not NONCE.match(nonce):
        raise EcertError("nonce must be 32 lowercase hex digits")
    issued = int(now.timestamp())
    claims = {"psn": psn_no, "iat": issued, "exp": issued + ttl_s, "nonce": nonce or secrets.token_hex(16)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signed = f"{PREFIX}.{payload}"
    return f"{signed}.{_sign(key, signed)}"


def verify(key: bytes, token: str, now: dt.datetime) -> EcertClaims:
    """The claims of a genuine, unexpired token; EcertError otherwise."""
    if len(token) > MAX_TOKEN_CHARS:
        raise EcertError(f"longer than {MAX_TOKEN_CHARS} characters")
    if not token.isascii():  # a token is base64url and dots; compare_digest refuses other text with TypeError
        raise EcertError("not an e-insurance certificate token (characters outside ASCII)")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise EcertError(f"not an e-insurance certificate token ({PREFIX})")
    if not hmac.compare_digest(_sign(key, f"{parts[0]}.{parts[1]}"), parts[2]):
        raise EcertError("signature does not verify")
    try:
        claims = json.loads(_unb64(parts[1]))
        psn_no, issued, expires, nonce = claims["psn"], claims["iat"], claims["exp"], claims["nonce"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise EcertError("payload is not readable") from None
    if not (isinstance(psn_no, str) and PSN_NO.match(psn_no) and isinstance(nonce, str) and NONCE.match(nonce)
            and isinstance(issued, int) and isinstance(expires, int) and 0 < expires - issued <= MAX_TTL_S):
        raise EcertError("payload out of bounds")
    now_s = now.timestamp()
    if issued > now_s + CLOCK_SKEW_S:
        raise EcertError("issued in the future")
    if now_s >= expires:
        raise EcertError("expired")
    return EcertClaims(psn_no, issued, expires, nonce)
