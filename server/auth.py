"""Who is calling, and may they do this.

Authentication: a bearer token in the `authorization` metadata, checked
against the hashes in the credentials table (ledger/storage/credentials.py),
or, over mutual TLS, the verified client certificate: its URI subject
alternative names if it has any of ours (`urn:medsettle:institution:
H44010100001`, `urn:medsettle:operator:<name>`), else its common name
(`H44010100001`, `operator:<name>`); DNS names are hosts, never callers.
A certificate naming two different callers is refused (UNAUTHENTICATED).
No credential, or an unknown or revoked one: UNAUTHENTICATED. Over mutual
TLS a token, when sent, must name the caller the certificate names (same
role and institution); otherwise PERMISSION_DENIED. A certificate that
names no caller only authenticates the channel, and the token decides.

Authorization: an institution settles, reverses, reads and reconciles only
for its own fixmedins_code; an operator reads across institutions and
settles nothing. Otherwise PERMISSION_DENIED, decided before the request is
validated, so a caller learns nothing about another institution's data.

Health checking and reflection stay open: only the SettlementService is
guarded. The hot path is one SHA-256 and a dict lookup; the table is
reloaded every CACHE_TTL_S, so issue-then-revoke rotation needs no restart.
An unknown token is looked up by its hash in the database at once, so a
credential issued while the server runs works on its first call; those
look-ups are rate-limited (MISS_LOOKUPS_PER_S, a token bucket), so a flood
of guessed tokens costs the database at most that many indexed reads a
second, and a token not looked up for that reason is refused with a
message saying that it is known after the next reload.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from medsettle.ledger.settlement.validation import CODE
from medsettle.ledger.storage.credentials import Credential, CredentialStore, Role, token_sha256
from medsettle.server.logs import get_logger
from medsettle.server.status import ERROR_DOMAIN, rich_status, undecodable
from medsettle.v1 import settlement_pb2 as pb

CACHE_TTL_S = 5.0  # a revoked token stops working within this time; a new one is known after it at the latest
MISS_LOOKUPS_PER_S = 20.0  # unknown tokens looked up in the database per second (and at once, as a burst)
GUARDED_PREFIX = "/medsettle.v1.SettlementService/"
OPERATOR_CN_PREFIX = "operator:"
NOT_YOUR_INSTITUTION = "NOT_YOUR_INSTITUTION"
UNAUTHENTICATED_REASON = "UNAUTHENTICATED"

log = get_logger("medsettle.server.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    fixmedins_code: str  # "" for an operator
    via: str  # "token:<cred_id>" or "mtls"


# The caller of the RPC being served; set by the interceptor for the RPC's task.
CURRENT_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def principal_of(credential: Credential) -> Principal:
    return Principal(credential.role, credential.fixmedins_code, f"token:{credential.cred_id}")


def principal_of_certificate(common_name: str) -> Principal | None:
    """The identity a verified client certificate names, if it names one."""
    if common_name.startswith(OPERATOR_CN_PREFIX) and len(common_name) > len(OPERATOR_CN_PREFIX):
        return Principal(Role.OPERATOR, "", "mtls")
    if CODE.match(common_name):
        return Principal(Role.INSTITUTION, common_name, "mtls")
    return None


class LookupBudget:
    """A token bucket: `rate_per_s` look-ups a second, as many (at least one) at once."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate_per_s = rate_per_s
        self._burst = max(1.0, rate_per_s)
        self._clock = clock
        self._tokens = self._burst
        self._refilled_at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self._rate_per_s)
        self._refilled_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class NotLookedUp(Exception):
    """An unknown token was not looked up in the database: the look-up budget is spent."""


class CredentialCache:
    """Token hash -> principal, in memory, refreshed from the database.
    `not_looked_up` counts unknown tokens refused without a look-up (the
    budget was spent): those are the calls told to retry."""

    def __init__(self, db_path: str | Path, ttl_s: float = CACHE_TTL_S,
                 miss_lookups_per_s: float = MISS_LOOKUPS_PER_S) -> None:
        self._db_path = str(db_path)
        self._ttl_s = ttl_s
        self._miss_lookups = LookupBudget(miss_lookups_per_s)
        self._by_hash: dict[str, Principal] = {}
        self._loaded_at = float("-inf")
        self._lock: asyncio.Lock | None = None
        self.not_looked_up = 0

    @property
    def ttl_s(self) -> float:
        return self._ttl_s

    def _read(self) -> dict[str, Principal]:
        with CredentialStore(self._db_path, read_only=True) as store:
            return {digest: principal_of(c) for digest, c in store.active_by_hash().items()}

    def _read_one(self, digest: str) -> Principal | None:
        with CredentialStore(self._db_path, read_only=True) as store:
            found = store.active_by_hash(digest)
        return principal_of(found[digest]) if digest in found else None

    async def reload(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        started = time.monotonic()
        async with self._lock:
            if self._loaded_at >= started:  # another call reloaded while this one waited
                return
            try:
                self._by_hash = await asyncio.get_running_loop().run_in_executor(None, self._read)
            except Exception as error:  # keep serving with the last good table
                log.warning("credentials reload failed; keeping the previous table", error=type(error).__name__)
            self._loaded_at = time.monotonic()

    def known(self, token: str) -> Principal | None:
        """The caller a token names if the table is fresh and holds it, at
        once (no reload, no look-up); None means: ask principal()."""
        if time.monotonic() - self._loaded_at > self._ttl_s:
            return None
        return self._by_hash.get(token_sha256(token))

    async def principal(self, token: str) -> Principal | None:
        """The caller a token names, or None (unknown or revoked). Raises
        NotLookedUp for a token that is not in the table and could not be
        looked up (the budget is spent)."""
        # A dict lookup by SHA-256 leaks at most timing about the hash, which
        # tells an attacker nothing about a valid token; no compare_digest needed.
        digest = token_sha256(token)
        if time.monotonic() - self._loaded_at > self._ttl_s:
            await self.reload()
        found = self._by_hash.get(digest)
        if found is not None:
            return found
        if not self._miss_lookups.take():
            self.not_looked_up += 1
            raise NotLookedUp()
        # Kept in the table the look-up started from: a reload meanwhile read the
        # credentials after this look-up did (maybe after a revocation), and wins.
        table = self._by_hash
        try:
            found = await asyncio.get_running_loop().run_in_executor(None, self._read_one, digest)
        except Exception as error:  # as a failed reload: the token stays unknown
            log.warning("credential look-up failed", error=type(error).__name__)
            return None
        if found is not None:
            table[digest] = found  # until the next reload, which reads it again (or not, if revoked)
        return found


def bearer_token(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer <token>` entry (the scheme in any case, as HTTP reads it)."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[:len("Bearer ")].lower() == "bearer ":
            return value[len("Bearer "):].strip() or None
    return None


SAN_URI_PREFIX = "urn:medsettle:"  # a URI subject alternative name that names the caller
SAN_INSTITUTION_PREFIX = "institution:"


def principal_of_san_uri(uri: str) -> Principal | None:
    """The caller a URI subject alternative name names, if it is one of ours."""
    if not uri.startswith(SAN_URI_PREFIX):
        return None
    name = uri[len(SAN_URI_PREFIX):]
    if name.startswith(SAN_INSTITUTION_PREFIX):
        code = name[len(SAN_INSTITUTION_PREFIX):]
        return Principal(Role.INSTITUTION, code, "mtls") if CODE.match(code) else None
    return principal_of_certificate(name) if name.startswith(OPERATOR_CN_PREFIX) else None


class AmbiguousCertificate(Exception):
    """A client certificate names more than one caller: it names none, and the call is refused."""


def principal_of_certificate_names(common_names: Iterable[str], san_uris: Iterable[str]) -> Principal | None:
    """The caller a certificate names: by its `urn:medsettle:` URI SANs if it
    has any (its CN is then a label, e.g. a host name), else by its CN; None
    if it names no caller (it only authenticates the channel). Raises
    AmbiguousCertificate if it names two different callers."""
    ours = [uri for uri in san_uris if uri.startswith(SAN_URI_PREFIX)]
    found = map(principal_of_san_uri, ours) if ours else map(principal_of_certificate, common_names)
    named = {(p.role, p.fixmedins_code): p for p in found if p is not None}
    if len(named) > 1:
        raise AmbiguousCertificate(f"the client certificate names {len(named)} callers")
    return next(iter(named.values()), None)


CERTIFICATE_CACHE_SIZE = 1_024  # parsed client certificates kept (a few per institution)


@functools.lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def certificate_names(pem: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every CN, every URI SAN) of a PEM certificate, read whole by
    cryptography: gRPC's own auth-context view gives only the first CN and
    stops a value at a NUL byte, so "H1\\0evil" would read as "H1"."""
    certificate = x509.load_pem_x509_certificate(pem)
    common_names = tuple(str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return common_names, ()
    return common_names, tuple(names.get_values_for_type(x509.UniformResourceIdentifier))


def principal_of_pem(pem: bytes) -> Principal | None:
    """The caller a verified client certificate (PEM) names; AmbiguousCertificate if two."""
    return principal_of_certificate_names(*certificate_names(pem))


def _certificate_principal(context: grpc.aio.ServicerContext) -> Principal | None:
    """The caller the verified client certificate names (TLS checked it against the CA)."""
    pems = (context.auth_context() or {}).get("x509_pem_cert") or []
    return principal_of_pem(pems[0]) if pems else None


class CallerRefused(Exception):
    """Why a call is refused before authorization: its status code, ErrorInfo reason and message."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str, looked_up: bool = True) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.looked_up = looked_up  # False: an unknown token not looked up (the look-up budget is spent)


UNAUTHENTICATED_MESSAGE = ("missing, unknown or revoked credential: "
                           "send 'authorization: Bearer <token>' or a client certificate")


async def identify_caller(cache: CredentialCache, token: str | None, certified: Principal | None) -> Principal:
    """The caller of a call (gRPC or the HTTP gateway): the token's if one is
    sent, else the client certificate's; CallerRefused if neither names one
    (UNAUTHENTICATED) or they name two (PERMISSION_DENIED)."""
    try:
        principal = await cache.principal(token) if token else certified
    except NotLookedUp:
        raise CallerRefused(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_REASON,
                            "unknown credential: too many unknown tokens to look each up now; a credential issued "
                            f"just now is known within {cache.ttl_s:.0f} s: retry then", looked_up=False) from None
    if principal is None:
        raise CallerRefused(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_REASON, UNAUTHENTICATED_MESSAGE)
    if certified and (principal.role, principal.fixmedins_code) != (certified.role, certified.fixmedins_code):
        raise CallerRefused(grpc.StatusCode.PERMISSION_DENIED, NOT_YOUR_INSTITUTION,
                            "the bearer token names another caller than the client certificate")
    return principal


def credential_state(token: str | None, refused: CallerRefused) -> str:
    """What the log says of a refused credential (never the token)."""
    if not token:
        return "none"
    return "unknown or revoked token" if refused.looked_up else "token not looked up (budget spent)"


def _status(code: grpc.StatusCode, reason: str, message: str) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[info]))


class Gate:
    """Authenticates every SettlementService call, inside its handler (each
    handler is wrapped once, when the server is built: server/metrics.py
    measured(); no interceptor runs per call), then refuses undecodable
    request bytes with INVALID_ARGUMENT. A known token on a fresh table is
    checked at once, without a coroutine; anything else (mutual TLS, a
    reload due, an unknown token) takes the full path. mtls: the channel
    carries verified client certificates (read only then)."""

    def __init__(self, cache: CredentialCache, mtls: bool = False) -> None:
        self._cache = cache
        self._mtls = mtls

    def admits(self, request: Any, context: grpc.aio.ServicerContext) -> bool:
        """True if the call is authenticated at once and its request decodable (the caller is then set)."""
        if self._mtls or isinstance(request, _Undecodable):
            return False
        token = bearer_token(context.invocation_metadata())
        principal = self._cache.known(token) if token else None
        if principal is None:
            return False
        CURRENT_PRINCIPAL.set(principal)
        return True

    async def admit(self, request: Any, context: grpc.aio.ServicerContext, method: str) -> None:
        """The full path: authenticates (aborting UNAUTHENTICATED or
        PERMISSION_DENIED), then refuses an undecodable request."""
        await self._authenticate(bearer_token(context.invocation_metadata()), context, GUARDED_PREFIX + method)
        await _refuse_undecodable(context, request)

    @staticmethod
    def each_decodable(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """A client stream's requests, the stream refused at the first undecodable one."""
        async def each_checked() -> AsyncIterator[Any]:
            async for request in requests:
                await _refuse_undecodable(context, request)
                yield request
        return each_checked()

    async def _authenticate(self, token: str | None, context: grpc.aio.ServicerContext, method: str) -> None:
        try:
            certified = _certificate_principal(context) if self._mtls else None
        except AmbiguousCertificate as error:
            log.warning("client certificate names more than one caller", method=method, peer=context.peer())
            await context.abort_with_status(_status(
                grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_REASON, f"{error}; it must name one"))
        try:
            principal = await identify_caller(self._cache, token, certified)
        except CallerRefused as refused:
            if refused.code is grpc.StatusCode.UNAUTHENTICATED:
                log.warning("unauthenticated", method=method, peer=context.peer(), credential=credential_state(token, refused))
            else:
                log.warning("token and client certificate disagree", method=method, peer=context.peer(),
                            certificate=certified.fixmedins_code if certified else "")
            await context.abort_with_status(_status(refused.code, refused.reason, refused.message))
            raise
        CURRENT_PRINCIPAL.set(principal)


class _Undecodable:
    """Stands for request bytes that are no valid message of the RPC's type."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that never raises: gRPC answers UNKNOWN when one does;
    the gate refuses such bytes with INVALID_ARGUMENT instead, after
    authenticating. None (raw bytes) stays None."""
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:
            return _Undecodable(error)
    return decode


async def _refuse_undecodable(context: grpc.aio.ServicerContext, request: Any) -> None:
    if isinstance(request, _Undecodable):
        await context.abort_with_status(rich_status(undecodable(request.error)))


class Authorizer:
    """Decides, per request, whether the authenticated caller may act for a code.

    required=False only for a server built without authentication (create_server
    without a Gate); `medsettle serve` always requires it."""

    def __init__(self, required: bool) -> None:
        self.required = required

    def denial(self, fixmedins_code: str, write: bool) -> str | None:
        """Why the caller may not act for fixmedins_code ("" = all institutions), or None."""
        principal = CURRENT_PRINCIPAL.get()
        if principal is None:
            return "no authenticated caller" if self.required else None
        if principal.role is Role.OPERATOR:
            if write:
                return "an operator credential reads across institutions but does not settle or reverse"
            return None
        if fixmedins_code != principal.fixmedins_code:
            return "this credential acts only for its own institution"
        return None

    async def require(self, context: grpc.aio.ServicerContext, method: str, fixmedins_code: str, write: bool) -> None:
        denied = self.denial(fixmedins_code, write)
        if denied is not None:
            principal = CURRENT_PRINCIPAL.get()
            log.warning("permission denied", method=method, fixmedins_code=fixmedins_code[:30],
                        caller=principal.fixmedins_code if principal else "", via=principal.via if principal else "")
            await context.abort_with_status(_status(grpc.StatusCode.PERMISSION_DENIED, NOT_YOUR_INSTITUTION, denied))

    def item_denial(self, fixmedins_code: str) -> pb.ItemStatus | None:
        """The same decision as one SettleStream item's status."""
        denied = self.denial(fixmedins_code, write=True)
        if denied is None:
            return None
        return pb.ItemStatus(code=code_pb2.PERMISSION_DENIED, message=denied, reason=NOT_YOUR_INSTITUTION)
