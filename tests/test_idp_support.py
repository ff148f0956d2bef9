"""The tests' identity provider (``tests/support/idp.py``) against a real OpenID Connect client:
Authlib's ``AsyncOAuth2Client`` with PKCE S256, and the ID token checked with joserfc (as the
directory checks it; Authlib's own ``authlib.jose`` is deprecated for it)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.idp import IdentityProvider

CLIENT_ID = "duban"
CLIENT_SECRET = "s3cret"
CALLBACK = "http://127.0.0.1:8123/auth/callback"
USER = {"sub": "u-1", "phone_number": "13800000001", "name": "张三"}


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK]) as provider:
        yield provider


def client(**kwargs) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scope="openid profile phone",
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
        **kwargs,
    )


async def discover(idp: IdentityProvider) -> dict:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{idp.issuer}/.well-known/openid-configuration")
    assert answer.status_code == 200
    return answer.json()


async def follow(url: str) -> httpx.Response:
    """The browser's one step to the authorization endpoint (its redirect not followed)."""
    async with httpx.AsyncClient(follow_redirects=False) as http:
        return await http.get(url)


def callback_params(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def authorized_code(idp: IdentityProvider, verifier: str, nonce: str = "n-0") -> str:
    """A code for ``verifier`` through the client's own authorization URL."""
    provider = await discover(idp)
    async with client() as oauth:
        url, state = oauth.create_authorization_url(
            provider["authorization_endpoint"], state="s-0", nonce=nonce, code_verifier=verifier
        )
    params = callback_params(await follow(url))
    assert params["state"] == state
    return params["code"]


async def test_discovery_describes_the_provider(idp):
    provider = await discover(idp)
    assert provider["issuer"] == idp.issuer
    assert provider["authorization_endpoint"] == f"{idp.issuer}/authorize"
    assert provider["token_endpoint"] == f"{idp.issuer}/token"
    assert provider["userinfo_endpoint"] == f"{idp.issuer}/userinfo"
    assert provider["response_types_supported"] == ["code"]
    assert provider["code_challenge_methods_supported"] == ["S256"]
    assert provider["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(provider["token_endpoint_auth_methods_supported"]) == {"client_secret_post", "client_secret_basic"}
    assert provider["scopes_supported"] == ["openid", "profile", "phone"]
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(provider["jwks_uri"])).json()
    assert [key["kty"] for key in jwks["keys"]] == ["RSA"]
    assert all(key["kid"] for key in jwks["keys"])
    assert not any("d" in key for key in jwks["keys"])  # no private half


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
async def test_sign_in_with_pkce_gives_a_valid_id_token(idp, auth_method):
    idp.sign_in_as(USER)
    provider = await discover(idp)
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)

    async with client(token_endpoint_auth_method=auth_method) as oauth:
        url, _ = oauth.create_authorization_url(
            provider["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        query = parse_qs(urlsplit(url).query)
        assert query["code_challenge"] == [create_s256_code_challenge(verifier)]
        assert query["code_challenge_method"] == ["S256"]

        params = callback_params(await follow(url))
        assert params["state"] == state
        token = await oauth.fetch_token(provider["token_endpoint"], code=params["code"], code_verifier=verifier)

    assert token["token_type"].lower() == "bearer"
    assert token["access_token"] and token["expires_in"] > 0

    async with httpx.AsyncClient() as http:
        jwks = (await http.get(provider["jwks_uri"])).json()
    decoded = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": idp.issuer},
        aud={"essential": True, "value": CLIENT_ID},
        exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    ).validate(decoded.claims)
    assert decoded.header["kid"] in {key["kid"] for key in jwks["keys"]}
    claims = decoded.claims
    assert claims["sub"] == "u-1"
    assert claims["phone_number"] == "13800000001"
    assert claims["name"] == "张三"
    assert claims["iat"] <= claims["exp"]

    async with httpx.AsyncClient() as http:
        info = await http.get(
            provider["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        anonymous = await http.get(provider["userinfo_endpoint"])
    assert info.status_code == 200
    assert info.json() == USER
    assert anonymous.status_code == 401

    assert idp.requests.count("/authorize") == 1
    assert idp.requests.count("/token") == 1
    assert "/userinfo" in idp.requests


async def test_a_wrong_code_verifier_is_refused(idp):
    idp.sign_in_as(USER)
    verifier = secrets.token_urlsafe(48)
    code = await authorized_code(idp, verifier)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}

    async with httpx.AsyncClient(auth=(CLIENT_ID, CLIENT_SECRET)) as http:
        wrong = await http.post(f"{idp.issuer}/token", data={**form, "code_verifier": secrets.token_urlsafe(48)})
        missing = await http.post(f"{idp.issuer}/token", data=form)
        right = await http.post(f"{idp.issuer}/token", data={**form, "code_verifier": verifier})
        again = await http.post(f"{idp.issuer}/token", data={**form, "code_verifier": verifier})

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    assert right.status_code == 200, right.text  # the refusals were the verifier's, not the code's
    assert "id_token" in right.json()
    assert again.status_code == 400  # a code is used once
    assert again.json()["error"] == "invalid_grant"


async def test_a_wrong_client_secret_is_refused(idp):
    idp.sign_in_as(USER)
    verifier = secrets.token_urlsafe(48)
    code = await authorized_code(idp, verifier)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier}
    async with httpx.AsyncClient(auth=(CLIENT_ID, "wrong")) as http:
        answer = await http.post(f"{idp.issuer}/token", data=form)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def authorization_request(idp: IdentityProvider, **changes: str | None) -> str:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": CALLBACK,
        "scope": "openid profile phone",
        "state": "s-1",
        "nonce": "n-1",
        "code_challenge": create_s256_code_challenge(secrets.token_urlsafe(48)),
        "code_challenge_method": "S256",
    }
    params.update(changes)
    query = {k: v for k, v in params.items() if v is not None}
    return str(httpx.URL(f"{idp.issuer}/authorize", params=query))


async def test_a_complete_authorization_request_is_granted(idp):
    idp.sign_in_as(USER)
    params = callback_params(await follow(authorization_request(idp)))
    assert params["state"] == "s-1"
    assert params["code"]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"nonce": None}, "invalid_request"),
        ({"state": None}, "invalid_request"),
        ({"scope": "profile phone"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
    ids=["no-pkce", "no-challenge", "no-method", "plain", "no-nonce", "no-state", "no-openid", "implicit"],
)
async def test_an_incomplete_authorization_request_is_refused(idp, changes, error):
    idp.sign_in_as(USER)
    params = callback_params(await follow(authorization_request(idp, **changes)))
    assert "code" not in params
    assert params["error"] == error
    if changes.get("state", "s-1"):
        assert params["state"] == "s-1"


async def test_the_client_without_pkce_is_refused(idp):
    idp.sign_in_as(USER)
    provider = await discover(idp)
    async with AsyncOAuth2Client(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="openid", redirect_uri=CALLBACK
    ) as oauth:
        url, _ = oauth.create_authorization_url(provider["authorization_endpoint"], state="s-2", nonce="n-2")
    params = callback_params(await follow(url))
    assert params["error"] == "invalid_request"
    assert "code" not in params


async def test_an_unknown_client_or_redirect_uri_is_not_redirected_to(idp):
    idp.sign_in_as(USER)
    elsewhere = await follow(authorization_request(idp, redirect_uri="http://127.0.0.1:9/elsewhere"))
    stranger = await follow(authorization_request(idp, client_id="stranger"))
    for answer in (elsewhere, stranger):
        assert answer.status_code == 400
        assert "Location" not in answer.headers
    assert stranger.json()["error"] == "invalid_client"


async def test_without_a_signed_in_user_the_provider_answers_403(idp):
    answer = await follow(authorization_request(idp))
    assert answer.status_code == 403
    assert "sign_in_as" in answer.text
    idp.sign_in_as(USER)
    idp.sign_out()
    assert (await follow(authorization_request(idp))).status_code == 403


async def test_stop_shuts_the_server_down():
    with IdentityProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK]) as idp:
        await discover(idp)
    assert idp.requests == ["/.well-known/openid-configuration"]
    with pytest.raises(httpx.ConnectError):
        await discover(idp)
    idp.stop()  # again: nothing to do
