"""The directory's settings: the runtime's, plus its signing keys, the identity provider it
signs people in with, the service accounts of other systems and the people loaded at start.

Every field can be set from the environment as ``DUBAN_<FIELD>`` (``DUBAN_OIDC_ISSUER``…).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.runtime.settings import Settings


class DirectorySettings(Settings):
    """Settings of one level's directory service."""

    #: The file of the keys tokens are signed with (``keys.py``; default in the data dir).
    signing_keys_file: Path | None = None
    #: The government's identity provider (OpenID Connect): its issuer URL (discovery at
    #: ``<issuer>/.well-known/openid-configuration``) and duban's client there.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scope: str = "openid profile phone"
    #: Which claim of the identity provider finds the person, and in which field of the directory.
    oidc_claim: str = "phone_number"
    oidc_match: str = Field(default="mobile", pattern=r"^(mobile|identity|email|id)$")
    #: This directory's public base URL (the redirect URI is ``<public_url>/auth/callback``);
    #: by default the URL the browser used.
    public_url: str | None = None
    #: The level's 工作台 (``services/web``): a sign-in begun there returns there with a
    #: one-time code (``<web_url>/auth/done``), never to any other address.
    web_url: str | None = None
    #: How long a sign-in lasts: its refresh token renews access tokens until then.
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    #: Other systems that call duban (OAuth2 client credentials): a JSON file
    #: ``{"<client_id>": {"secret_sha256": "...", "name": "...", "subjects": ["..."]}}``.
    service_accounts_file: Path | None = None
    #: People and organisations enrolled at start, idempotently (``duban up`` gives its demo's).
    seed_file: Path | None = None

    def keys_file(self) -> Path:
        return self.signing_keys_file or self.data_dir / self.jurisdiction / "directory" / "signing-keys.json"
