"""Signing in for real: OpenID Connect (authorization code with PKCE) against an identity provider
the test starts on 127.0.0.1 (Authlib's server classes, ``tests/support/idp.py``), the person
found in the directory, duban's own RS256 token naming them with the directory's roles, and two
services verifying it against the directory's JWKS over HTTP. Tokens with the wrong audience,
expired, signed by another key or of a disabled person are refused (401); a rotated key is
picked up by the services without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

from contracts.directory import DisablePerson, EnrollOrg, EnrollPerson, Org, Person
from services.directory.api import create_api as directory_api
from services.directory.app import DirectoryService
from services.directory.keys import rotate
from services.directory.settings import DirectorySettings
from services.intake.api import create_api as intake_api
from services.intake.app import IntakeService
from services.intake.commands_nats import handle_command
from services.runtime.http.auth import Principal, Role
from services.runtime.service import operated
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.runtime.tools.ports import free_port
from services.tracking.api import create_api as tracking_api
from services.tracking.app import TrackingService
from services.web.app import create_app as create_web
from services.web.settings import WebSettings
from tests.support.idp import IdentityProvider
from tests.support.waiting import eventually

WENLING = "331081"
MOBILE = "13906760001"
ADMIN = Principal(sub="admin-331081", roles=[Role.admin], jurisdiction=WENLING)


class Served:
    """An app on a real port of 127.0.0.1, in the test's event loop."""

    def __init__(self, app, port: int, lifespan: str = "off") -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan=lifespan)
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Served:
        self.task = asyncio.create_task(self.server.serve())
        await eventually(self._started, timeout=10)
        return self

    async def _started(self) -> bool:
        return self.server.started

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@pytest.fixture
async def system(tmp_path):
    """温岭市's directory (served over HTTP), intake and tracking verifying its tokens, the IdP."""
    nats = EmbeddedNats(tmp_path / "nats").start()
    port = free_port()
    directory_url = f"http://127.0.0.1:{port}"
    with IdentityProvider(
        client_id="duban-wenling", client_secret="s3cret", redirect_uris=[f"{directory_url}/auth/callback"]
    ) as idp:
        common = {"jurisdiction": WENLING, "nats_url": nats.url, "data_dir": tmp_path / "data", "dev_signin": False}
        directory = DirectoryService(
            DirectorySettings(
                **common,
                oidc_issuer=idp.issuer,
                oidc_client_id="duban-wenling",
                oidc_client_secret="s3cret",
                oidc_claim="phone_number",
                oidc_match="mobile",
                public_url=directory_url,
            )
        )
        verifying = Settings(**common, jwks_url=f"{directory_url}/.well-known/jwks.json")
        intake, tracking = IntakeService(verifying), TrackingService(verifying)
        started = []
        try:
            for service in (directory, intake, tracking):
                await service.start(**({"sweep": False} if service is tracking else {}))
                started.append(service)
            api = directory_api(directory.settings, handlers=directory.handlers, engine=directory.engine)
            async with Served(operated(api, directory), port):
                apps = {
                    "intake": operated(
                        intake_api(intake.settings, handlers=intake.handlers, engine=intake.engine), intake
                    ),
                    "tracking": operated(
                        tracking_api(tracking.settings, handlers=tracking.handlers, engine=tracking.engine), tracking
                    ),
                }
                yield idp, directory, directory_url, {"intake": intake, "tracking": tracking}, apps
        finally:
            for service in reversed(started):
                await service.stop()
            nats.stop()


async def call(app, path: str, token: str) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as http:
        return (await http.get(path, headers={"Authorization": f"Bearer {token}"})).status_code


PATHS = {"intake": "/matters", "tracking": "/cases"}


async def both(apps, token: str) -> set[int]:
    return {await call(app, PATHS[name], token) for name, app in apps.items()}


async def sign_in(directory_url: str) -> httpx.Response:
    """The browser's path: duban → the identity provider → back to duban's callback."""
    async with httpx.AsyncClient(timeout=10) as browser:
        to_idp = await browser.get(f"{directory_url}/auth/login")
        assert to_idp.status_code == 302, to_idp.text
        query = parse_qs(urlparse(to_idp.headers["location"]).query)
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"] and query["nonce"]
        back = await browser.get(to_idp.headers["location"])
        assert back.status_code == 302, back.text
        assert back.headers["location"].startswith(f"{directory_url}/auth/callback?")
        return await browser.get(back.headers["location"])


async def test_oidc_sign_in_gives_a_duban_token_two_services_accept_and_refuse_when_they_must(system):
    idp, directory, directory_url, services, apps = system
    handlers = directory.handlers
    await handlers.enroll_org(EnrollOrg(org=Org(id="unit-water", kind="unit", name="温岭市水务集团")), ADMIN)
    clerk = Person(id="p-clerk", kind="unit_staff", name="林办理", orgs=["unit-water"], mobile=MOBILE)
    await handlers.enroll_person(EnrollPerson(person=clerk), ADMIN)
    await directory.wait_idle()

    # someone the directory does not know is refused at the callback
    idp.sign_in_as({"sub": "u-stranger", "phone_number": "13900000000", "name": "陌生人"})
    refused = await sign_in(directory_url)
    assert refused.status_code == 401 and "名册中没有" in refused.json()["detail"]["message"]

    idp.sign_in_as({"sub": "u-lin", "phone_number": MOBILE, "name": "林办理"})
    signed_in = await sign_in(directory_url)
    assert signed_in.status_code == 200, signed_in.text
    tokens = signed_in.json()
    access = tokens["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["sub"] == "p-clerk" and claims["roles"] == ["unit"] and claims["unit"] == "unit-water"
    assert claims["iss"] == f"duban-directory:{WENLING}" and claims["aud"] == "duban"
    assert claims["exp"] - claims["iat"] <= 15 * 60 and tokens["expires_in"] <= 15 * 60
    assert await both(apps, access) == {200}

    # forged or stale tokens: each refused by both services
    ring = directory.ring
    now = int(time.time())
    good = {k: claims[k] for k in ("iss", "aud", "sub", "name", "roles", "jurisdiction", "unit")}
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(access)["kid"]
    forged = {
        "wrong audience": ring.sign({**good, "aud": "another-system", "iat": now, "exp": now + 600}),
        "expired": ring.sign({**good, "iat": now - 1200, "exp": now - 300}),
        "another key, same kid": jwt.encode({**good, "exp": now + 600}, other_key, "RS256", headers={"kid": kid}),
        "another key, its own kid": jwt.encode(
            {**good, "exp": now + 600}, other_key, "RS256", headers={"kid": uuid.uuid4().hex[:16]}
        ),
        "another issuer": ring.sign({**good, "iss": "duban-directory:331000", "iat": now, "exp": now + 600}),
        "no signature": jwt.encode({**good, "exp": now + 600}, None, "none"),
        "development HS256": jwt.encode({**good, "exp": now + 600}, Settings().jwt_secret, "HS256"),
    }
    for what, token in forged.items():
        assert await both(apps, token) == {401}, what

    # the key rotated: new tokens are signed with the new key, the services take them at once
    added = rotate(directory.settings.keys_file())
    async with httpx.AsyncClient() as http:
        renewed = await http.post(f"{directory_url}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == added.kid
    await asyncio.sleep(1.1)  # the JWKS client's cooldown after the unknown kid above
    assert await both(apps, fresh) == {200}
    assert await both(apps, access) == {200}  # the old key stays in the JWKS until its tokens expire

    # disabled in the directory: its token is refused, no refresh, no sign-in
    await handlers.disable(DisablePerson(person_id="p-clerk", reason="调离承办单位"), ADMIN)
    for service in services.values():
        await service.wait_idle()
    assert await eventually(lambda: _refused(apps, fresh), timeout=10)
    async with httpx.AsyncClient() as http:
        again = await http.post(f"{directory_url}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401 and "已停用" in again.json()["detail"]["message"]
    signed_again = await sign_in(directory_url)
    assert signed_again.status_code == 401


async def _refused(apps, token: str) -> bool:
    return await both(apps, token) == {401}


async def test_service_accounts_get_system_tokens_by_client_credentials(tmp_path, system):
    _, directory, directory_url, services, apps = system

    accounts = tmp_path / "accounts.json"
    secret = "a-long-random-secret"
    accounts.write_text(
        json.dumps(
            {
                "12345-hotline": {
                    "secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
                    "name": "12345热线",
                    "subjects": ["duban.cmd.intake.331081.submit"],
                }
            }
        )
    )
    directory.settings.service_accounts_file = accounts
    async with httpx.AsyncClient() as http:
        form = {"grant_type": "client_credentials", "client_id": "12345-hotline", "client_secret": secret}
        issued = await http.post(f"{directory_url}/oauth/token", data=form)
        wrong = await http.post(f"{directory_url}/oauth/token", data={**form, "client_secret": "guess"})
    assert issued.status_code == 200, issued.text
    claims = jwt.decode(issued.json()["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["system"] and claims["subjects"] == ["duban.cmd.intake.331081.submit"]
    assert await call(apps["intake"], "/matters", issued.json()["access_token"]) == 200
    assert wrong.status_code == 401 and "密钥不正确" in wrong.json()["detail"]["message"]
    # on NATS, the account uses only its subjects
    intake = services["intake"]
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    other = await handle_command(
        intake.handlers, intake.settings, "duban.cmd.intake.331081.register", bearer, b'{"matter_id": "m-1"}'
    )
    assert other["status"] == 403 and "无权使用主题 duban.cmd.intake.331081.register" in other["error"]["message"]
    matter = {
        "kind": "problem",
        "title": "12345热线转来：小区路灯不亮",
        "content": "城东街道某小区路灯损坏已一周。",
        "lead": {"id": "hotline-12345", "name": "12345热线"},
        "channel": "external_system",
        "raised_in": WENLING,
    }
    body = json.dumps({"matter": matter}, ensure_ascii=False).encode()
    allowed = await handle_command(intake.handlers, intake.settings, "duban.cmd.intake.331081.submit", bearer, body)
    assert allowed.get("ok") is True, allowed


async def test_signing_in_at_the_pages_goes_through_the_identity_provider_and_comes_back_signed_in(tmp_path, system):
    idp, directory, directory_url, _, apps = system
    web_port, intake_port = free_port(), free_port()
    directory.settings.web_url = f"http://127.0.0.1:{web_port}"
    staff = Person(id="p-chen", kind="committee_staff", name="陈工委", mobile="13906760002")
    await directory.handlers.enroll_person(EnrollPerson(person=staff), ADMIN)
    await directory.wait_idle()
    idp.sign_in_as({"sub": "u-chen", "phone_number": "13906760002", "name": "陈工委"})
    web = create_web(
        WebSettings(
            jurisdiction=WENLING,
            data_dir=tmp_path / "web",
            dev_signin=False,
            intake_url=f"http://127.0.0.1:{intake_port}",
            directory_url=directory_url,
        )
    )
    async with Served(apps["intake"], intake_port), Served(web, web_port, lifespan="on") as pages:
        async with httpx.AsyncClient(timeout=10) as browser:
            login = await browser.get(f"{pages.url}/login")
            assert "通过统一身份认证登录" in login.text and "选择名册中的人员" not in login.text
            hop = await browser.get(f"{pages.url}/auth/login")
            seen, done = [], None
            while hop.status_code in (302, 303):
                target = hop.headers["location"]
                seen.append(urlparse(target).path)
                done = target if urlparse(target).path == "/auth/done" else done
                hop = await browser.get(target if target.startswith("http") else f"{pages.url}{target}")
            # the pages → the directory → the provider → the directory's callback → the pages
            assert seen[:5] == ["/auth/login", "/authorize", "/auth/callback", "/auth/done", "/"], seen
            assert hop.status_code == 200 and "陈工委（工委）" in hop.text, hop.text[:500]
            assert "access_token" not in str(browser.cookies) and "eyJ" not in str(browser.cookies)
            matters = await browser.get(f"{pages.url}/matters")
            assert matters.status_code == 200 and "全部事项" in matters.text
            # the one-time code was good once: the same link again signs nobody in
            code = parse_qs(urlparse(done).query)["code"][0]
            again = await browser.post(f"{directory_url}/auth/exchange", json={"code": code})
            assert again.status_code == 400 and "已失效" in again.json()["detail"]["message"]
            async with httpx.AsyncClient() as stranger:
                replayed = await stranger.get(done)
            assert replayed.status_code == 303 and replayed.headers["location"].startswith("/login?error=")
