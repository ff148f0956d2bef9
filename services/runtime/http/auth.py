"""Identities: bearer JWTs whose claims give the principal, name, roles and jurisdiction.

HS256 with a configured secret on the embedded default (``DUBAN_JWT_SECRET``); RS256 with a
configured public key in production (``DUBAN_JWT_PUBLIC_KEY``, PEM). Every command carries the
actor it came from; handlers check roles and the jurisdiction scope.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import ClassVar

import jwt
from pydantic import BaseModel, Field, ValidationError

from contracts.envelope import Actor
from services.runtime.es.aggregate import NotAllowed
from services.runtime.settings import Settings


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

    model_config = {"populate_by_name": True}

    def has(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)

    def actor(self, *preferred: Role) -> Actor:
        """The actor recorded on events: the first of ``preferred`` roles the principal holds."""
        role = next((r for r in preferred if r in self.roles), self.roles[0])
        return Actor(principal_id=self.id, role=role.value, name=self.name or None, jurisdiction=self.jurisdiction)


def decode_token(token: str, settings: Settings) -> Principal:
    try:
        if settings.jwt_public_key:
            claims = jwt.decode(token, settings.jwt_public_key, algorithms=["RS256"], options={"require": ["exp"]})
        else:
            claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"], options={"require": ["exp"]})
        return Principal.model_validate(claims)
    except (jwt.PyJWTError, ValidationError) as err:
        raise NotAuthenticated(f"invalid token: {type(err).__name__}") from None


def issue_token(
    principal_id: str, roles: list[str], jurisdiction: str, *, name: str = "", secret: str, ttl_s: int = 30 * 86400
) -> str:
    """A development token (HS256), as ``duban up`` writes into ``.duban/run.json``."""
    now = int(time.time())
    claims = {"sub": principal_id, "name": name, "roles": roles, "jurisdiction": jurisdiction, "iat": now}
    claims["exp"] = now + ttl_s
    return jwt.encode(claims, secret, algorithm="HS256")


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
