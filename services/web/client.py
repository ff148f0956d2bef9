"""The level's services as the pages call them: over HTTP, with the signed-in person's token, so
every rule and refusal stays where it is. A refusal comes back as :class:`Refused` with the
service's Chinese message and the field it names, for the page to show beside that field."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from .sessions import Session, Sessions
from .settings import WebSettings

log = logging.getLogger("duban.web")


class Refused(Exception):
    """A service said no (or could not answer): ``message`` in Chinese, ``field`` at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class SignedOut(Exception):
    """The session has no valid token any more: sign in again."""


def refusal_of(answer: httpx.Response) -> Refused:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, dict):
        errors = detail.get("errors") or []
        field = detail.get("field") or (errors[0].get("field") if errors else None)
        return Refused(answer.status_code, str(detail.get("message") or "请求未被受理"), field)
    if isinstance(detail, list) and detail:
        first = detail[0]
        return Refused(answer.status_code, str(first.get("message") or "请求未被受理"), first.get("field"))
    return Refused(answer.status_code, f"服务暂时无法处理（{answer.status_code}）")


class Services:
    """One level's services, called for one session at a time."""

    def __init__(self, settings: WebSettings, sessions: Sessions) -> None:
        self.settings = settings
        self.sessions = sessions
        self.urls = {
            "intake": settings.intake_url,
            "tracking": settings.tracking_url,
            "evaluation": settings.evaluation_url,
            "notify": settings.notify_url,
            "directory": settings.directory_url,
        }
        #: The directory as the browser reaches it (production sign-in goes through it).
        self.public_directory_url = (settings.directory_public_url or settings.directory_url).rstrip("/")
        self.http = httpx.AsyncClient(timeout=15)

    async def close(self) -> None:
        await self.http.aclose()

    async def _token(self, session: Session) -> str:
        if session.access_expires - time.time() > 60:
            return session.access_token
        if not session.refresh_token:
            raise SignedOut
        answer = await self.http.post(
            f"{self.urls['directory']}/auth/refresh", json={"refresh_token": session.refresh_token}
        )
        if answer.status_code != 200:
            raise SignedOut
        return (await self.sessions.renewed(session, answer.json())).access_token

    async def call(self, session: Session, method: str, service: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self._token(session)}", **kwargs.pop("headers", {})}
        try:
            answer = await self.http.request(method, f"{self.urls[service]}{path}", headers=headers, **kwargs)
        except httpx.HTTPError as err:
            log.warning("service unreachable", extra={"service": service, "error": repr(err)})
            raise Refused(503, "服务暂时无法访问，请稍后重试") from None
        if answer.status_code == 401:
            raise SignedOut
        if answer.status_code >= 400:
            raise refusal_of(answer)
        return answer

    async def get(self, session: Session, service: str, path: str, **params: Any) -> Any:
        return (await self.call(session, "GET", service, path, params=params)).json()

    async def post(self, session: Session, service: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        answer = await self.call(session, "POST", service, path, json=body, **kwargs)
        return answer.json() if answer.content else None

    async def matter_caught_up(self, session: Session, matter_id: str) -> dict[str, Any]:
        """The matter's page data once the read models have reached everything just done: no
        list or page missing what was just done."""
        return await self._read_until(
            session, "intake", f"/matters/{matter_id}", lambda d: d.get("source") == "read_model"
        )

    async def case_caught_up(self, session: Session, case_id: str) -> dict[str, Any]:
        """The case's page data once tracking's read models hold every event of it: its list row
        and history then show what was just done."""
        return await self._read_until(
            session,
            "tracking",
            f"/cases/{case_id}",
            lambda d: ((d.get("row") or {}).get("version") or 0) >= (d["case"].get("sequence") or 0),
        )

    async def _read_until(
        self, session: Session, service: str, path: str, caught_up: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """``path`` read again until ``caught_up``, at most ``read_your_writes_s``."""
        deadline = time.monotonic() + self.settings.read_your_writes_s
        while True:
            detail = await self.get(session, service, path)
            if caught_up(detail) or time.monotonic() > deadline:
                return detail
            await asyncio.sleep(0.05)

    # -- signing in (development) ------------------------------------------------------------
    async def dev_people(self) -> list[dict[str, Any]]:
        return (await self._directory("GET", "/auth/dev/people"))["items"]

    async def exchange(self, code: str) -> dict[str, Any]:
        """The tokens of a sign-in through the identity provider, for its one-time code."""
        return await self._directory("POST", "/auth/exchange", json={"code": code})

    async def dev_sign_in(self, person_id: str) -> dict[str, Any]:
        return await self._directory("POST", "/auth/dev/token", json={"person_id": person_id})

    async def _directory(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A sign-in call to the directory (no person's token yet): its JSON, or ``Refused``."""
        answer = await self.http.request(method, f"{self.urls['directory']}{path}", **kwargs)
        if answer.status_code != 200:
            raise refusal_of(answer)
        return answer.json()
