"""The keys the directory signs its tokens with, and the tokens themselves.

The keys of a level live in one file (``DUBAN_SIGNING_KEYS_FILE``, default
``<data dir>/<jurisdiction>/directory/signing-keys.json``, created on first use, readable by its
owner only): RS256 private keys with their ``kid``, the newest signing. ``duban keys rotate``
adds a new one; the directory reads the file again when it changes, so a rotation needs no
restart, and its JWKS (``/.well-known/jwks.json``) lists the older keys too until the tokens
they signed have expired (the last ``KEEP`` keys are kept). Services fetch the JWKS again when a
token names a key they do not know.

Access tokens name a person of the directory (``sub``), their name, the roles the directory
gives them, their unit for unit staff, the level (``jurisdiction``), ``iss``
(``duban-directory:<jurisdiction>``), ``aud`` (``duban``) and expire within
``ACCESS_TOKEN_MAX_S`` (15 minutes). A service account's token carries the ``system`` role and
the subjects it may publish to.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ACCESS_TOKEN_MAX_S = 15 * 60
#: Keys kept in the file (and the JWKS) after a rotation.
KEEP = 3


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: str
    created_at: int

    def private_key(self) -> Any:
        return serialization.load_pem_private_key(self.private_pem.encode(), password=None)

    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key().public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}


def new_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(kid=uuid.uuid4().hex[:16], private_pem=pem, created_at=int(time.time()))


def _write(path: Path, keys: list[SigningKey]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    data = json.dumps({"keys": [k.__dict__ for k in keys]}, indent=2)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(data)
    temporary.replace(path)


def rotate(path: Path) -> SigningKey:
    """Add a new signing key to the file (it signs from now on); keep the last ``KEEP``."""
    keys = KeyRing(path).keys() if path.exists() else []
    added = new_key()
    _write(path, [*keys, added][-KEEP:])
    return added


class KeyRing:
    """The key file, read again whenever it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._keys: list[SigningKey] = []

    def keys(self) -> list[SigningKey]:
        if not self.path.exists():
            _write(self.path, [new_key()])
        stat = self.path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._stamp:
            data = json.loads(self.path.read_text())
            self._keys = [SigningKey(**k) for k in data["keys"]]
            if not self._keys:
                raise ValueError(f"no signing key in {self.path}")
            self._stamp = stamp
        return self._keys

    def current(self) -> SigningKey:
        return self.keys()[-1]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys()]}

    def sign(self, claims: dict[str, Any]) -> str:
        key = self.current()
        return jwt.encode(claims, key.private_key(), algorithm="RS256", headers={"kid": key.kid})


def issuer_of(jurisdiction: str) -> str:
    return f"duban-directory:{jurisdiction}"


def access_token(
    ring: KeyRing,
    *,
    jurisdiction: str,
    subject: str,
    name: str,
    roles: list[str],
    audience: str,
    ttl_s: int = ACCESS_TOKEN_MAX_S,
    issuer: str | None = None,
    **extra: Any,
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds (at most 15 minutes)."""
    ttl_s = min(ttl_s, ACCESS_TOKEN_MAX_S)
    now = int(time.time())
    claims = {
        "iss": issuer or issuer_of(jurisdiction),
        "aud": audience,
        "sub": subject,
        "name": name,
        "roles": roles,
        "jurisdiction": jurisdiction,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
        **{k: v for k, v in extra.items() if v is not None},
    }
    return ring.sign(claims), ttl_s
