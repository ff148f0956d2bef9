"""Identities: bearer JWTs whose claims give the principal, name, roles and jurisdiction.

The level's directory issues them (``services/directory``): RS256, short-lived, with ``iss``
(``duban-directory:<jurisdiction>``) and ``aud`` (``duban``), naming a person of its directory
and the roles it gives them; every service verifies them against the directory's JWKS
(``DUBAN_JWKS_URL``), cached, fetched again when a token names a key it does not know (a
rotated key is picked up without a restart). A token of a person the directory has disabled
is refused as soon as the service's projection of the directory knows it (``read/people.py``).

Development only (``DUBAN_DEV_SIGNIN=true``, which ``duban up`` sets and production does not):
HS256 tokens signed with ``DUBAN_JWT_SECRET`` are also accepted, as the tests and scripts mint
them. ``DUBAN_JWT_PUBLIC_KEY`` (PEM) accepts RS256 tokens of one fixed key besides.
Every command carries the actor it came from; handlers check roles and the jurisdiction scope.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, ClassVar

import jwt
from pydantic import BaseModel, Field, ValidationError

from contracts.bodies import BODY_NAMES, Body
from contracts.envelope import Actor
from services.runtime.es.aggregate import NotAllowed
from services.runtime.settings import Settings

log = logging.getLogger("duban.auth")


class Role(StrEnum):
    deputy = "deputy"  # 人大代表 / 政协委员
    liaison_station = "liaison_station"  # 代表联络站
    committee = "committee"  # 工委 / 提案委 / 代表工委 staff
    unit = "unit"  # 承办单位
    leader = "leader"  # 联系领导
    evaluator = "evaluator"
    operator = "operator"
    admin = "admin"
    system = "system"  # another system publishing into duban


class NotAuthenticated(Exception):
    """No token, or a token that is invalid or expired (HTTP 401)."""


class Principal(BaseModel):
    """Who is calling, from the token's claims."""

    id: str = Field(min_length=1, max_length=128, alias="sub")
    name: str = Field(default="", max_length=128)
    roles: list[Role] = Field(min_length=1)
    jurisdiction: str = Field(pattern=r"^\d{6}(\d{3})?$")
    #: The 承办单位 a unit's staff member acts for (the directory's org id); a development token
    #: of a unit names the unit itself as its subject.
    unit: str | None = Field(default=None, max_length=64)
    #: The body (人大 / 政协) whose member or staff the person is: staff act on their own body's
    #: matters only. None: a token from before the bodies, read as the congress's; administrators
    #: and other systems act for both.
    body: Body | None = None
    #: A service account's NATS subjects (``duban.cmd.intake.331081.submit``, wildcards ``*`` and
    #: ``>``): the only command subjects it may use. None: not limited this way (people).
    subjects: list[str] | None = Field(default=None, max_length=100)

    model_config = {"populate_by_name": True}

    def has(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)

    def acts_for(self, body: Body | str) -> bool:
        """Whether this principal may do staff work on, or raise, a matter of ``body``."""
        if self.has(Role.admin, Role.system):
            return True
        return Body(body) is (self.body or Body.congress)

    def may_use(self, subject: str) -> bool:
        """Whether this principal may send commands on ``subject`` (see ``subjects``)."""
        if self.subjects is None:
            return True
        return any(_subject_matches(allowed, subject) for allowed in self.subjects)

    def actor(self, *preferred: Role) -> Actor:
        """The actor recorded on events: the first of ``preferred`` roles the principal holds."""
        role = next((r for r in preferred if r in self.roles), self.roles[0])
        return Actor(principal_id=self.id, role=role.value, name=self.name or None, jurisdiction=self.jurisdiction)


def _subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or (token != "*" and token != given[index]):
            return False
    return len(wanted) == len(given)


class TokenVerifier:
    """Checks bearer tokens for one level's services (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = settings.token_issuer or f"duban-directory:{settings.jurisdiction}"
        self.jwks = None
        if settings.jwks_url:
            self.jwks = jwt.PyJWKClient(settings.jwks_url, lifespan=3600, cooldown_duration=1)
        #: Whether a person is disabled in the directory (``read/people.DisabledPeople``), set by
        #: the service that has the directory's projection.
        self.disabled: Callable[[str], Awaitable[bool]] | None = None

    def _claims(self, token: str, key: Any, algorithm: str, *, audience: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"require": ["exp", "iss", "aud"] if audience else ["exp"]}
        if audience:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.settings.token_audience,
                issuer=self.issuer,
                options=options,
                leeway=5,
            )
        return jwt.decode(token, key, algorithms=[algorithm], options=options)

    def verify_known(self, token: str, *, fetched: Any = None) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm == "HS256" and self.settings.dev_signin and self.settings.jwt_secret:
                claims = self._claims(token, self.settings.jwt_secret, "HS256", audience=False)
            elif algorithm == "RS256" and self.jwks is not None and (fetched is not None or header.get("kid")):
                key = fetched or self._cached_key(header.get("kid"))
                if key is None:
                    raise _UnknownKey
                claims = self._claims(token, key, "RS256", audience=True)
            elif algorithm == "RS256" and self.settings.jwt_public_key:
                claims = self._claims(token, self.settings.jwt_public_key, "RS256", audience=False)
            else:
                raise NotAuthenticated(f"token algorithm {algorithm!r} not accepted here")
            return Principal.model_validate(claims)
        except (jwt.PyJWTError, ValidationError) as err:
            raise NotAuthenticated(f"invalid token: {type(err).__name__}") from None

    def _cached_key(self, kid: str | None) -> Any:
        assert self.jwks is not None
        if kid is None:
            return None
        keys = self.jwks.jwk_set_cache.get() if self.jwks.jwk_set_cache is not None else None
        if keys is None:
            return None
        return next((k.key for k in keys.keys if k.key_id == kid), None)

    async def verify(self, token: str) -> Principal:
        """The principal of ``token``; fetches the JWKS (in a thread) when it names a key not
        cached yet; refuses a disabled person."""
        try:
            principal = self.verify_known(token)
        except _UnknownKey:
            assert self.jwks is not None
            try:
                found = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
            except jwt.PyJWTError as err:
                log.warning("token key not found", extra={"error": repr(err)})
                raise NotAuthenticated("unknown signing key") from None
            principal = self.verify_known(token, fetched=found.key)
        if self.disabled is not None and await self.disabled(principal.id):
            raise NotAuthenticated("person disabled in the directory")
        return principal


class _UnknownKey(NotAuthenticated):
    """The token names a key not in the cached JWKS: fetch it (``TokenVerifier.verify``)."""


_VERIFIERS: dict[int, TokenVerifier] = {}


def verifier_for(settings: Settings) -> TokenVerifier:
    """The one verifier of ``settings`` in this process (its JWKS cache shared by HTTP and NATS)."""
    found = _VERIFIERS.get(id(settings))
    if found is None or found.settings is not settings:
        found = _VERIFIERS[id(settings)] = TokenVerifier(settings)
    return found


def issue_token(
    principal_id: str,
    roles: list[str],
    jurisdiction: str,
    *,
    name: str = "",
    secret: str,
    ttl_s: int = 30 * 86400,
    body: str | None = None,
) -> str:
    """A development token (HS256), as ``duban up`` writes into ``.duban/run.json``."""
    now = int(time.time())
    claims = {"sub": principal_id, "name": name, "roles": roles, "jurisdiction": jurisdiction, "iat": now}
    if body is not None:
        claims["body"] = body
    claims["exp"] = now + ttl_s
    return jwt.encode(claims, secret, algorithm="HS256")


def dev_token(jurisdiction: str, role: str, secret: str | None = None, *, body: str | None = None) -> str:
    """The development principal ``<role>-<jurisdiction>`` of one role (HS256, accepted only
    where ``DUBAN_DEV_SIGNIN`` is on): what the demo loader and ``duban up --dev-tokens`` use. Of
    the 政协 (``body="cppcc"``): ``cppcc-<role>-<jurisdiction>``, as the development directory has
    its 提案委 staff (``cppcc-committee-<code>``)."""
    prefix = f"{body}-" if body and body != "congress" else ""
    return issue_token(
        f"{prefix}{role}-{jurisdiction}",
        [role],
        jurisdiction,
        name=f"{prefix}{role}@{jurisdiction}",
        secret=secret or Settings().jwt_secret,
        body=body,
    )


#: Committee staff (工委 / 提案委 / 代表工委) and administrators: who registers, routes, assigns and reports.
STAFF = (Role.committee, Role.admin)


class Guarded:
    """What every service's handlers share about who may act: they act for one level (``here``);
    a principal of another level may touch none of its ``guarded`` records, and only ``STAFF`` do
    the staff's work. Refusals are ``NotAllowed`` (HTTP 403) in Chinese, naming what was refused."""

    here: str
    #: What a principal of another level may not touch (事项, 办理件, 测评…), for the refusal.
    guarded: ClassVar[str] = "数据"

    def _in_scope(self, principal: Principal) -> None:
        if principal.jurisdiction != self.here:
            raise NotAllowed(f"无权操作 {self.here} 的{self.guarded}", field="jurisdiction")

    def _staff(self, principal: Principal, action: str) -> None:
        self._in_scope(principal)
        if not principal.has(*STAFF):
            raise NotAllowed(f"仅工委工作人员可以{action}")

    def _body_staff(self, principal: Principal, body: Body | str, action: str) -> None:
        """Staff act on their own body's records only (人大 / 政协), unless one was transferred."""
        if not principal.acts_for(body):
            name = BODY_NAMES[Body(body)]
            raise NotAllowed(f"该{self.guarded}属于{name}，仅{name}的工作人员可以{action}", field="body")
