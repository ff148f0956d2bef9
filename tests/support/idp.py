"""A real OpenID Connect identity provider for tests, built on Authlib's Flask server classes.

Authorization code flow only, with PKCE S256 required, ``state`` and ``nonce`` required and the
``openid`` scope required; ID tokens signed RS256 with a key published at ``/jwks`` (with a
``kid``). There is no login form: the test says who the user is with :meth:`IdentityProvider.sign_in_as`
and every valid authorization request is then granted at once::

    with IdentityProvider(client_id="duban", client_secret="s3cret", redirect_uris=[callback]) as idp:
        idp.sign_in_as({"sub": "u-1", "phone_number": "13800000001", "name": "张三"})
        ...  # discovery at f"{idp.issuer}/.well-known/openid-configuration"

Every answer carries ``X-Outside-Duban`` (its refusals are the provider's, not duban's).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, InvalidScopeError, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo, UserInfoEndpoint
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, Response, jsonify, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

from tests.support.chinese_errors import OUTSIDE

DEFAULT_SCOPES = ("openid", "profile", "phone")
TOKEN_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]
CODE_TTL_S = 600
TOKEN_TTL_S = 3600


# -- models ------------------------------------------------------------------------------------
@dataclass
class User:
    """A signed-in user: their claims, ``sub`` included."""

    claims: dict[str, Any]

    def get_user_id(self) -> str:
        return str(self.claims["sub"])


@dataclass
class Client(ClientMixin):
    """The one confidential client the provider knows."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scopes: tuple[str, ...]
    client_metadata: dict[str, Any] = field(default_factory=dict)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in TOKEN_AUTH_METHODS if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    """An issued code, single use, bound to the client, redirect URI, nonce and PKCE challenge."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def is_expired(self) -> bool:
        return time.time() > self.auth_time + CODE_TTL_S

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class Token(TokenMixin):
    """An issued bearer access token."""

    access_token: str
    client: Client
    user: User
    scope: str
    expires_in: int
    issued_at: int = field(default_factory=lambda: int(time.time()))
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        return self.client


# -- grant and extensions ----------------------------------------------------------------------
class CodeGrant(grants.AuthorizationCodeGrant):
    """The authorization code grant over the provider's in-memory store."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    idp: IdentityProvider  # set on the per-provider subclass

    def save_authorization_code(self, code: str, request) -> AuthorizationCode:
        data = request.payload.data
        item = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
            scope=request.scope,
            user=request.user,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )
        self.idp._codes[code] = item
        if item.nonce:
            self.idp._nonces.add(item.nonce)
        return item

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        item = self.idp._codes.get(code)
        if item is None or item.client_id != client.get_client_id() or item.is_expired():
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.idp._codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
        return authorization_code.user


class RequireOpenIdAndState:
    """Extension: an authorization request must ask for ``openid`` and carry a ``state``."""

    def __call__(self, grant: grants.AuthorizationCodeGrant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    @staticmethod
    def validate(grant: grants.AuthorizationCodeGrant, redirect_uri: str) -> None:
        if "openid" not in (grant.request.payload.scope or "").split():
            raise InvalidScopeError("The 'openid' scope is required.")
        if not grant.request.payload.state:
            raise InvalidRequestError("Missing 'state' in request.")


class S256Challenge(CodeChallenge):
    """PKCE, required for every client, with S256 only."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: grants.AuthorizationCodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE with S256 is required.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be 'S256'.")
        super().validate_code_challenge(grant, redirect_uri)


class IdTokens(OpenIDCode):
    """Extension: the ID token, signed RS256 with the provider's key, with all the user's claims."""

    def __init__(self, idp: IdentityProvider) -> None:
        super().__init__(require_nonce=True)
        self.idp = idp

    def resolve_client_private_key(self, client: Client) -> KeySet:
        return self.idp._keys

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.idp.issuer, "aud": client.get_client_id()}

    def exists_nonce(self, nonce: str, request) -> bool:
        return nonce in self.idp._nonces

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(user.claims)


class UserInfoClaims(UserInfoEndpoint):
    """``/userinfo``: the claims of the bearer token's user."""

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(user.claims)


# -- the provider ------------------------------------------------------------------------------
class IdentityProvider:
    """An OpenID Connect provider on 127.0.0.1 (a free port), served from a background thread."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str],
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
    ) -> None:
        self.client = Client(client_id, client_secret, list(redirect_uris), tuple(scopes))
        #: paths requested, in order (``/authorize``, ``/token``…)
        self.requests: list[str] = []
        self.user: User | None = None
        self._codes: dict[str, AuthorizationCode] = {}
        self._tokens: dict[str, Token] = {}
        self._nonces: set[str] = set()
        key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"})
        self._keys = KeySet([key])
        self.app = self._make_app()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-idp", daemon=True
        )
        self._thread.start()

    # -- what tests use ------------------------------------------------------------------------
    def sign_in_as(self, claims: Mapping[str, Any]) -> None:
        """Approve the next authorization requests for the user with these claims (``sub`` required)."""
        if not claims.get("sub"):
            raise ValueError("the user's claims need a 'sub'")
        self.user = User(dict(claims))

    def sign_out(self) -> None:
        """No user any more: authorization requests get 403."""
        self.user = None

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWK set (as served at ``jwks_uri``)."""
        return self._keys.as_dict(private=False)

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
            "scopes_supported": list(self.client.scopes),
            "claims_supported": ["iss", "aud", "sub", "nonce", "exp", "iat", "auth_time", "name", "phone_number"],
        }

    def stop(self) -> None:
        """Shut the server down (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._server.server_close()

    def __enter__(self) -> IdentityProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the Flask app -------------------------------------------------------------------------
    def _save_token(self, token: dict[str, Any], oauth_request) -> None:
        self._tokens[token["access_token"]] = Token(
            access_token=token["access_token"],
            client=oauth_request.client,
            user=oauth_request.user,
            scope=token.get("scope", ""),
            expires_in=int(token["expires_in"]),
        )

    def _make_app(self) -> Flask:
        app = Flask("test-idp")
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": TOKEN_TTL_S}
        app.config["OAUTH2_SCOPES_SUPPORTED"] = list(self.client.scopes)

        def query_client(client_id: str) -> Client | None:
            return self.client if client_id == self.client.client_id else None

        server = AuthorizationServer(app, query_client=query_client, save_token=self._save_token)
        grant = type("ProviderCodeGrant", (CodeGrant,), {"idp": self})
        server.register_grant(grant, [RequireOpenIdAndState(), S256Challenge(required=True), IdTokens(self)])

        tokens = self._tokens

        class Bearer(BearerTokenValidator):
            def authenticate_token(self, token_string: str) -> Token | None:
                return tokens.get(token_string)

        protector = ResourceProtector()
        protector.register_token_validator(Bearer())
        server.register_endpoint(UserInfoClaims(resource_protector=protector))

        @app.before_request
        def record() -> None:
            self.requests.append(request.path)

        @app.after_request
        def mark_outside(response: Response) -> Response:
            response.headers.update(OUTSIDE)
            return response

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(self.metadata())

        @app.get("/jwks")
        def jwks():
            return jsonify(self.jwks)

        @app.get("/authorize")
        def authorize():
            user = self.user
            try:
                consent = server.get_consent_grant(end_user=user)
            except OAuth2Error as error:
                return server.handle_error_response(request, error)
            if user is None:
                text = "No user is signed in at the test identity provider (call sign_in_as).\n"
                return Response(text, status=403, mimetype="text/plain")
            return server.create_authorization_response(grant_user=user, grant=consent)

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo():
            return server.create_endpoint_response("userinfo")

        return app
