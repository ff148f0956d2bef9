"""The web pages' settings: where the level's services are, and how sessions are kept.

Every field can be set from the environment as ``DUBAN_<FIELD>`` (``DUBAN_INTAKE_URL``…);
``duban up`` sets them for each level.
"""

from __future__ import annotations

from pydantic import Field

from services.runtime.settings import Settings


class WebSettings(Settings):
    """Settings of one level's 工作台 (web pages)."""

    intake_url: str = "http://127.0.0.1:8100"
    tracking_url: str = "http://127.0.0.1:8200"
    evaluation_url: str = "http://127.0.0.1:8300"
    notify_url: str = "http://127.0.0.1:8400"
    directory_url: str = "http://127.0.0.1:8500"
    #: The directory as browsers reach it, when not as this server does (sign-in redirects).
    directory_public_url: str | None = None
    #: How long a signed-in session lasts without being used.
    web_session_ttl_s: int = Field(default=8 * 3600, ge=60)
    #: Mark the session cookie Secure (set when the pages are served over TLS).
    cookie_secure: bool = False
    #: How long a page waits for the read models to show what was just done.
    read_your_writes_s: float = Field(default=3.0, ge=0)
