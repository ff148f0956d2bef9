"""Who is signed in: server-side sessions in the web's own database (nothing of the person's
tokens reaches the browser; its cookie holds a random id only, HttpOnly, SameSite=Lax, Secure
over TLS), each with its CSRF token. A session renews its access token with the directory's
refresh token before it expires.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.envelope import utcnow
from services.runtime.read.db import UtcDateTime


def cookie_name(jurisdiction: str) -> str:
    """The session cookie of one level's pages: one name per level, since cookies do not tell
    ports apart (under ``duban up`` every level's pages are on 127.0.0.1)."""
    return f"duban_session_{jurisdiction}"


metadata = MetaData()
sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True, doc="SHA-256 of the cookie's value"),
    Column("person_id", String(64), nullable=False),
    Column("name", String(64)),
    Column("roles", JSON),
    Column("unit", String(64)),
    Column("access_token", Text, nullable=False),
    Column("access_expires", Integer, nullable=False, doc="epoch seconds"),
    Column("refresh_token", Text),
    Column("csrf", String(64), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


@dataclass
class Session:
    id: str
    person_id: str
    name: str
    roles: list[str]
    unit: str | None
    access_token: str
    access_expires: int
    refresh_token: str | None
    csrf: str

    def has(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)

    @property
    def body(self) -> str | None:
        """The body (人大 / 政协) the person's token says they act for; None: both (an administrator,
        a unit) or a token from before the bodies (the congress's)."""
        return jwt.decode(self.access_token, options={"verify_signature": False}).get("body")

    def staff_body(self) -> str | None:
        """The body whose matters a staff member's lists show (their own; an administrator's: all)."""
        if self.has("admin") or not self.has("committee"):
            return None
        return self.body or "congress"


class Sessions:
    def __init__(self, engine: AsyncEngine, ttl_s: int, jurisdiction: str) -> None:
        self.cookie = cookie_name(jurisdiction)
        self.engine = engine
        self.ttl_s = ttl_s

    async def prepare(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def open(self, claims: dict[str, Any], tokens: dict[str, Any]) -> tuple[str, Session]:
        """A new session for the person ``claims`` name; the cookie value to set."""
        cookie = secrets.token_urlsafe(32)
        values = {
            "id": _key(cookie),
            "person_id": claims["sub"],
            "name": claims.get("name") or claims["sub"],
            "roles": list(claims.get("roles") or []),
            "unit": claims.get("unit"),
            "access_token": tokens["access_token"],
            "access_expires": int(time.time()) + int(tokens.get("expires_in", 900)),
            "refresh_token": tokens.get("refresh_token"),
            "csrf": secrets.token_urlsafe(24),
        }
        async with self.engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.expires_at < utcnow()))
            await conn.execute(insert(sessions).values(**values, expires_at=utcnow() + timedelta(seconds=self.ttl_s)))
        return cookie, Session(**values)

    async def find(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.id == _key(cookie)))).first()
        if row is None or row.expires_at < utcnow():
            return None
        values = dict(row._mapping)
        values.pop("expires_at")
        return Session(**values)

    async def renewed(self, session: Session, tokens: dict[str, Any]) -> Session:
        session.access_token = tokens["access_token"]
        session.access_expires = int(time.time()) + int(tokens.get("expires_in", 900))
        async with self.engine.begin() as conn:
            await conn.execute(
                update(sessions)
                .where(sessions.c.id == session.id)
                .values(
                    access_token=session.access_token,
                    access_expires=session.access_expires,
                    expires_at=utcnow() + timedelta(seconds=self.ttl_s),
                )
            )
        return session

    async def close(self, session: Session) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.id == session.id))
