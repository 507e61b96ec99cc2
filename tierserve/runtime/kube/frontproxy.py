"""Who is asking an aggregated API server, and may they: the front-proxy check and
delegated authorization.

kube-apiserver proxies a request for an aggregated API over TLS with its front-proxy
client certificate (``--proxy-client-cert-file``) and the caller in ``X-Remote-User``
and ``X-Remote-Group`` headers. Those headers are believed only from a client
certificate signed by the requestheader client CA whose common name is one of the
allowed names (when any are configured); otherwise the request is refused:

* no client certificate, or no user header: 401;
* a certificate of another CA: the TLS handshake fails (``CERT_OPTIONAL`` verifies any
  certificate presented);
* a front-proxy certificate of a name not allowed: 403.

The CA and allowed names come from flags or, as aggregated servers read them, from the
ConfigMap kube-apiserver publishes (``kube-system/extension-apiserver-authentication``).
Then the user is authorised for what it asks with a SubjectAccessReview (the
``system:auth-delegator`` role), cached briefly: the same check kube-apiserver made
before proxying, so a caller holding the front proxy's key still gets only its rights.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

from tierserve.errors import FieldError, TierserveError, ValidationError
from tierserve.runtime.kube.client import KubeClient

USER_HEADER = "X-Remote-User"
GROUP_HEADER = "X-Remote-Group"
AUTH_CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclass(frozen=True)
class FrontProxyTLS:
    """The server's certificate and what the front-proxy check trusts."""

    cert_file: str
    key_file: str
    requestheader_ca: str | None = None
    """A PEM file; None: ``ca_data`` (read from the cluster, see ``front_proxy_from``)."""
    allowed_names: tuple[str, ...] = ()
    ca_data: str | None = None

    def context(self) -> ssl.SSLContext:
        for flag, value in (
            ("--tls-cert", self.cert_file),
            ("--tls-key", self.key_file),
            ("--requestheader-client-ca", self.requestheader_ca),
        ):
            if value is not None and not Path(value).is_file():
                raise ValidationError("", [FieldError(flag, f"{value!r} is not a readable file")])
        if self.requestheader_ca is None and not self.ca_data:
            what = "is required (or readable kube-system/extension-apiserver-authentication)"
            raise ValidationError("", [FieldError("--requestheader-client-ca", what)])
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as exc:
            what = f"cannot load the certificate or key: {exc}"
            raise ValidationError("", [FieldError("--tls-cert", what)]) from exc
        try:
            if self.requestheader_ca is not None:
                ctx.load_verify_locations(self.requestheader_ca)
            else:
                ctx.load_verify_locations(cadata=self.ca_data)
        except ssl.SSLError as exc:
            what = f"cannot load the CA: {exc}"
            raise ValidationError("", [FieldError("--requestheader-client-ca", what)]) from exc
        # optional at the handshake (probes have no certificate); API requests check it
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


async def front_proxy_from(kube: KubeClient, tls: FrontProxyTLS) -> FrontProxyTLS:
    """``tls`` with the front proxy's CA and allowed names from the ConfigMap
    kube-apiserver publishes where flags did not give them."""
    if tls.requestheader_ca is not None:
        return tls
    try:
        data = (await kube.get(AUTH_CONFIGMAP)).get("data") or {}
    except TierserveError as exc:
        what = f"not given, and cannot read {AUTH_CONFIGMAP}: {exc}"
        raise ValidationError("", [FieldError("--requestheader-client-ca", what)]) from exc
    ca = data.get("requestheader-client-ca-file")
    if not ca:
        what = "not given, and the cluster publishes none (kube-apiserver has no aggregation layer)"
        raise ValidationError("", [FieldError("--requestheader-client-ca", what)])
    names = tls.allowed_names
    if not names:
        try:
            names = tuple(json.loads(data.get("requestheader-allowed-names") or "[]"))
        except ValueError:
            names = ()
    return dataclasses.replace(tls, ca_data=ca, allowed_names=names)


def client_name(request: web.Request) -> str | None:
    """The verified client certificate's common name, or None without one."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return None
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


USER_KEY = web.RequestKey("user", User)
"""Where the front-proxy check leaves the caller on the request."""


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str
    message: str


def front_proxy_user(request: web.Request, allowed_names: tuple[str, ...]) -> User | Refusal:
    """The caller the front proxy vouches for, or why the request is refused."""
    name = client_name(request)
    if name is None:
        return Refusal(
            401, "Unauthorized",
            "a client certificate signed by the requestheader client CA is required "
            "(requests come through the kube-apiserver's front proxy)",
        )  # fmt: skip
    if allowed_names and name not in allowed_names:
        return Refusal(
            403, "Forbidden",
            f"client certificate {name!r} is not one of the requestheader allowed names "
            f"({', '.join(allowed_names)})",
        )  # fmt: skip
    user = request.headers.get(USER_HEADER)
    if not user:
        return Refusal(401, "Unauthorized", f"no {USER_HEADER} header from the front proxy")
    groups = tuple(g for h in request.headers.getall(GROUP_HEADER, []) for g in h.split(",") if g)
    return User(user, groups)


@dataclass(frozen=True)
class Access:
    """What a request does, as Kubernetes' authorizers see it (``resourceAttributes``)."""

    group: str
    version: str
    namespace: str
    resource: str
    name: str
    subresource: str
    verb: str = "get"


class Authorizer(Protocol):
    async def allowed(self, user: User, access: Access) -> tuple[bool, str]:
        """(allowed, the authorizer's reason)."""
        ...


class SubjectAccessReviews:
    """Ask the API server (``SubjectAccessReview``); answers are kept ``ttl_s`` (the HPA
    asks the same question every sync)."""

    def __init__(
        self, kube: KubeClient, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kube = kube
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[tuple[User, Access], tuple[float, bool, str]] = {}

    async def allowed(self, user: User, access: Access) -> tuple[bool, str]:
        now = self.clock()
        key = (user, access)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.name,
                "groups": list(user.groups),
                "resourceAttributes": dataclasses.asdict(access),
            },
        }
        status = (await self.kube.create(SAR_PATH, review)).get("status") or {}
        answer = bool(status.get("allowed")), str(status.get("reason") or "")
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = (now + self.ttl_s, *answer)
        return answer


__all__ = [
    "AUTH_CONFIGMAP",
    "GROUP_HEADER",
    "USER_HEADER",
    "USER_KEY",
    "Access",
    "Authorizer",
    "FrontProxyTLS",
    "Refusal",
    "SubjectAccessReviews",
    "User",
    "client_name",
    "front_proxy_from",
    "front_proxy_user",
]
