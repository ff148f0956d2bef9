"""Signing in: the government's identity provider (OpenID Connect, authorization code with PKCE:
Authlib's OAuth 2 parameters and PKCE, joserfc for the ID token), the person found in the
directory, and duban's own tokens for them.

1. ``begin`` sends the browser to the identity provider with a fresh ``state``, ``nonce`` and
   PKCE verifier (kept in ``directory_pending_signins`` for ten minutes).
2. ``finish`` takes the code back, exchanges it with the verifier, checks the ID token (its
   signature against the provider's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``), reads the
   configured claim (``DUBAN_OIDC_CLAIM``, e.g. ``phone_number``) and finds the one enabled
   person of this level's directory whose field (``DUBAN_OIDC_MATCH``) holds it.
3. It answers with an access token (``keys.py``, at most 15 minutes) and a refresh token for
   the session (``DUBAN_SESSION_TTL_S``); ``refresh`` renews the access token while the person
   is still enabled. A person disabled or removed cannot sign in and gets no new token.

Development (``DUBAN_DEV_SIGNIN=true`` only) signs in by choosing a person of the directory.
Other systems get service-account tokens (client credentials) with the ``system`` role.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from datetime import timedelta
from typing import Any

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.envelope import utcnow
from services.runtime.read import people as directory

from .keys import KeyRing, access_token
from .projections import pending_signins, signin_codes, signin_sessions
from .settings import DirectorySettings

log = logging.getLogger("duban.directory.signin")

PENDING_TTL = timedelta(minutes=10)
#: A sign-in begun at the 工作台 goes back there; its ``state`` starts so.
TO_WEB = "w."
#: How long the 工作台 has to exchange a one-time code for the sign-in's tokens.
CODE_TTL = timedelta(seconds=60)


class SignInRefused(Exception):
    """Sign-in or a token refused (HTTP 401, or 400/404 where ``status`` says); ``message`` in
    Chinese."""

    def __init__(self, message: str, *, status: int = 401, code: str = "not_authenticated") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignIn:
    """Sign-in and tokens of one level's directory."""

    def __init__(self, settings: DirectorySettings, engine: AsyncEngine, ring: KeyRing) -> None:
        self.settings = settings
        self.engine = engine
        self.ring = ring
        self.here = settings.jurisdiction
        self._provider: dict[str, Any] | None = None

    # -- tokens --------------------------------------------------------------------------------
    async def token_for(self, person: dict[str, Any]) -> dict[str, Any]:
        """The access token of an enabled person of the directory."""
        known_units = {o["id"] for o in await directory.list_orgs(self.engine, kind="unit")}
        units = [o for o in person["orgs"] or [] if o in known_units]
        token, ttl = access_token(
            self.ring,
            jurisdiction=self.here,
            subject=person["id"],
            name=person["name"],
            roles=list(person["roles"] or []),
            audience=self.settings.token_audience,
            issuer=self.settings.token_issuer,
            unit=units[0] if "unit" in (person["roles"] or []) and units else None,
            body=person.get("body"),
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "person_id": person["id"]}

    async def enabled_person(self, person_id: str) -> dict[str, Any]:
        person = await directory.find_person(self.engine, person_id)
        if person is None:
            raise SignInRefused(f"人员 {person_id} 不在本级名册中")
        if not person["active"]:
            raise SignInRefused(f"{person['name']}（{person_id}）已停用，不能登录")
        return person

    async def open_session(self, person: dict[str, Any]) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(signin_sessions).values(
                    id=_digest(refresh),
                    person_id=person["id"],
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.settings.session_ttl_s),
                    revoked=False,
                )
            )
        log.info("signed in", extra={"person_id": person["id"]})
        tokens = await self.token_for(person)
        return {**tokens, "refresh_token": refresh, "session_expires_in": self.settings.session_ttl_s}

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(signin_sessions).where(signin_sessions.c.id == _digest(refresh_token)))
            ).first()
        if row is None or row.revoked or row.expires_at <= utcnow():
            raise SignInRefused("登录已过期，请重新登录")
        return await self.token_for(await self.enabled_person(row.person_id))

    async def sign_out(self, refresh_token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(signin_sessions).where(signin_sessions.c.id == _digest(refresh_token)).values(revoked=True)
            )

    # -- the identity provider ----------------------------------------------------------------
    def configured(self) -> bool:
        s = self.settings
        return bool(s.oidc_issuer and s.oidc_client_id and s.oidc_client_secret)

    async def provider(self) -> dict[str, Any]:
        if self._provider is None:
            url = f"{self.settings.oidc_issuer.rstrip('/')}/.well-known/openid-configuration"  # type: ignore[union-attr]
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    answer = await http.get(url)
                    answer.raise_for_status()
                    self._provider = answer.json()
            except (httpx.HTTPError, ValueError) as err:
                log.warning("identity provider discovery failed", extra={"url": url, "error": repr(err)})
                message = "统一身份认证平台暂时无法访问，请稍后重试"
                raise SignInRefused(message, status=503, code="unavailable") from None
        return self._provider

    async def begin(self, redirect_uri: str, *, to_web: bool = False) -> str:
        """The identity provider's authorization URL to send the browser to; with ``to_web``
        the sign-in returns to the 工作台 (``DUBAN_WEB_URL``) with a one-time code."""
        if not self.configured():
            raise SignInRefused("未配置统一身份认证平台（DUBAN_OIDC_ISSUER）", status=404, code="not_found")
        if to_web and not self.settings.web_url:
            raise SignInRefused("未配置工作台地址（DUBAN_WEB_URL）", status=404, code="not_found")
        provider = await self.provider()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(64)
        state = TO_WEB + state if to_web else state
        url = prepare_grant_uri(
            provider["authorization_endpoint"],
            self.settings.oidc_client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=self.settings.oidc_scope,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(delete(pending_signins).where(pending_signins.c.created_at < now - PENDING_TTL))
            await conn.execute(
                insert(pending_signins).values(state=state, code_verifier=verifier, nonce=nonce, created_at=now)
            )
        return url

    async def finish(self, code: str, state: str, redirect_uri: str) -> dict[str, Any]:
        """The person signed in by the identity provider's answer, with their tokens."""
        async with self.engine.begin() as conn:
            pending = (await conn.execute(select(pending_signins).where(pending_signins.c.state == state))).first()
            await conn.execute(delete(pending_signins).where(pending_signins.c.state == state))
        if pending is None or pending.created_at < utcnow() - PENDING_TTL:
            raise SignInRefused("登录请求已失效，请重新登录", status=400, code="invalid_state")
        provider = await self.provider()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(
                    provider["token_endpoint"],
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": redirect_uri,
                        "code_verifier": pending.code_verifier,
                    },
                    auth=(self.settings.oidc_client_id or "", self.settings.oidc_client_secret or ""),
                    headers={"Accept": "application/json"},
                )
                answer.raise_for_status()
                token = answer.json()
            claims = await self._id_claims(token.get("id_token"), provider, pending.nonce)
        except (httpx.HTTPError, JoseError, ValueError, KeyError) as err:
            log.warning("sign-in refused by the identity provider", extra={"error": repr(err)})
            raise SignInRefused("统一身份认证未通过，请重新登录") from None
        value = claims.get(self.settings.oidc_claim)
        if not value:
            raise SignInRefused(f"统一身份认证未提供 {self.settings.oidc_claim}，无法对应到名册中的人员")
        found = [p for p in await directory.find_by(self.engine, self.settings.oidc_match, str(value)) if p["active"]]
        if len(found) != 1:
            log.info("no single enabled person for the signed-in user", extra={"matches": len(found)})
            raise SignInRefused("名册中没有与该账号对应的在册人员，或其已停用：请联系本级人大管理员")
        return await self.open_session(found[0])

    async def _id_claims(self, id_token: str | None, provider: dict[str, Any], nonce: str) -> dict[str, Any]:
        if not id_token:
            raise ValueError("no id_token in the token response")
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(provider["jwks_uri"])
            answer.raise_for_status()
        decoded = jose_jwt.decode(id_token, KeySet.import_key_set(answer.json()), algorithms=["RS256"])
        jose_jwt.JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True, "value": provider["issuer"]},
            aud={"essential": True, "value": self.settings.oidc_client_id},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(decoded.claims)
        return dict(decoded.claims)

    # -- the 工作台's sign-ins -------------------------------------------------------------------
    async def code_for_web(self, tokens: dict[str, Any]) -> str:
        """Where the browser goes after a sign-in begun at the 工作台: its ``/auth/done`` with a
        one-time code the 工作台 exchanges for the tokens (which never pass through the browser)."""
        code = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(delete(signin_codes).where(signin_codes.c.created_at < now - CODE_TTL))
            await conn.execute(insert(signin_codes).values(id=_digest(code), tokens=json.dumps(tokens), created_at=now))
        return f"{(self.settings.web_url or '').rstrip('/')}/auth/done?code={code}"

    async def exchange(self, code: str) -> dict[str, Any]:
        """The tokens of a one-time code, once, within a minute."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(signin_codes).where(signin_codes.c.id == _digest(code)))).first()
            await conn.execute(delete(signin_codes).where(signin_codes.c.id == _digest(code)))
        if row is None or row.created_at < utcnow() - CODE_TTL:
            raise SignInRefused("登录凭据已失效，请重新登录", status=400, code="invalid_code")
        return json.loads(row.tokens)

    # -- service accounts ---------------------------------------------------------------------
    def client_credentials(self, client_id: str, client_secret: str) -> dict[str, Any]:
        """A service account's token (the ``system`` role and the subjects it may use)."""
        accounts: dict[str, Any] = {}
        if self.settings.service_accounts_file is not None:
            accounts = json.loads(self.settings.service_accounts_file.read_text(encoding="utf-8"))
        account = accounts.get(client_id)
        given = hashlib.sha256(client_secret.encode()).hexdigest()
        if account is None or not hmac.compare_digest(given, account.get("secret_sha256", "")):
            raise SignInRefused("客户端编号或密钥不正确", code="invalid_client")
        token, ttl = access_token(
            self.ring,
            jurisdiction=self.here,
            subject=f"client-{client_id}",
            name=account.get("name", client_id),
            roles=["system"],
            audience=self.settings.token_audience,
            issuer=self.settings.token_issuer,
            subjects=list(account.get("subjects", [])),
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}
