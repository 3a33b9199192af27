"""Bearer-key authentication: keys are compared by their sha256, never stored or logged in clear.

A tenant is allowed a set of deployments (``["*"]`` = all) and may have its own policy per
deployment. Without tenants in the config, authentication is off and every caller is the
anonymous tenant allowed everything (the default for a local ``guard serve``).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from guard.serve.config import ServeConfig, hash_key


@dataclass(frozen=True)
class Tenant:
    name: str
    deployments: frozenset[str]
    policies: dict[str, str] = field(default_factory=dict)

    def allows(self, deployment: str) -> bool:
        return "*" in self.deployments or deployment in self.deployments


ANONYMOUS = Tenant("anonymous", frozenset({"*"}))


class AuthError(Exception):
    """``status`` 401 (no or unknown key) or 403 (key valid, not allowed)."""

    def __init__(self, status: int, message: str, reason: str):
        super().__init__(message)
        self.status = status
        self.reason = reason


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class KeyRing:
    def __init__(self, config: ServeConfig):
        self.enabled = config.auth_enabled
        self._tenants: dict[str, Tenant] = {}
        for t in config.tenants:
            tenant = Tenant(t.name, frozenset(t.deployments), dict(t.policies))
            for h in t.keys:
                self._tenants[h] = tenant
        self._admin = list(config.admin_keys)

    def tenant(self, authorization: str | None) -> Tenant:
        """The caller's tenant, or :class:`AuthError` 401. The message never echoes the key."""
        if not self.enabled:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is None:
            raise AuthError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing")
        tenant = self._tenants.get(hash_key(token))
        if tenant is None:
            raise AuthError(401, "invalid API key", "invalid")
        return tenant

    def check_admin(self, authorization: str | None) -> None:
        if not self._admin:
            raise AuthError(
                403,
                "no admin key is configured (set admin_keys in the serve config); reload with SIGHUP instead",
                "no_admin_key",
            )
        token = bearer_token(authorization)
        if token is None:
            raise AuthError(401, "missing admin key: send 'Authorization: Bearer <admin key>'", "missing")
        digest = hash_key(token)
        if not any(hmac.compare_digest(digest, h) for h in self._admin):
            raise AuthError(403, "this key is not an admin key", "not_admin")


def new_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return "gk_" + secrets.token_urlsafe(32)
