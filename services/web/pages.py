"""The 工作台's pages: rendered on the server (Jinja2), each form with its CSRF token, every
refusal of a service shown in Chinese beside what caused it.

The pages hold no state of their own beyond sessions (``sessions.py``): every read and every
action is a call to the level's services with the signed-in person's token (``client.py``), so
who may do what is decided where it always was.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from contracts.bodies import Body
from contracts.jurisdictions import Jurisdiction, NoSuchOrgan, Organ, default_registry
from contracts.tracking import CASE_KIND_NAMES

from . import texts
from .client import Refused, Services, SignedOut
from .sessions import Session, Sessions
from .settings import WebSettings

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters["zh_date"] = texts.zh_date
TEMPLATES.env.globals.update(
    role_names=texts.ROLE_NAMES,
    cppcc_role_names=texts.CPPCC_ROLE_NAMES,
    case_status_names=texts.CASE_STATUS_NAMES,
    rating_names=texts.RATING_NAMES,
    reply_class_names=texts.REPLY_CLASS_NAMES,
)
LOGIN_CSRF = "duban_login_csrf"  # the sign-in form's double-submit token (SameSite=Strict)
#: Cases on one page of the 督办清单.
PAGE_SIZE = 100
LISTS = {"problems": "问题清单", "suggestions": "建议清单", "supervision": "督办清单", "results": "成果清单"}


class NeedsSignIn(Exception):
    """No session (or it ended): to the sign-in page."""


class BadForm(Exception):
    """A form posted without its CSRF token (HTTP 403)."""


def co_signers_of(text: str) -> list[dict[str, str]] | None:
    """附议人 as typed: ``姓名:编号`` separated by 、 or ；; None when one is not so written."""
    found = []
    for part in filter(None, (p.strip() for p in re.split(r"[、;；,，\n]", text))):
        match = re.fullmatch(r"(?P<name>[^:：]+)[:：](?P<id>[^:：]+)", part)
        if match is None:
            return None
        found.append({"name": match["name"].strip(), "id": match["id"].strip()})
    return found


def unit_of(value: str) -> dict[str, str]:
    """A unit chosen in the 交办 form: ``<id>|<name>`` (the directory's units)."""
    unit_id, _, name = value.partition("|")
    return {"id": unit_id, "name": name}


#: Who works for one body (its members, its staff, its stations and leaders): their pages are headed
#: with that body's organ. Units, operators and administrators work for both.
ONE_BODY_ROLES = ("committee", "deputy", "evaluator", "liaison_station", "leader")


def organs_heading(level: Jurisdiction, session: Session | None) -> str:
    """The organ name(s) a page is headed with, from the jurisdiction data: the signed-in person's
    body's (温岭市人大常委会, 政协温岭市委员会, 泽国镇人大主席团) when they work for one body, else the
    level's bodies' (温岭市人大常委会、政协温岭市委员会), as on the sign-in page."""
    if session is not None and session.has(*ONE_BODY_ROLES):
        try:
            return level.organ(Body(session.body or Body.congress)).name
        except (ValueError, NoSuchOrgan):
            pass  # a body this level does not have: headed as the level
    organs: tuple[Organ, ...] = level.organs
    return "、".join(organ.name for organ in organs)


def build_router(settings: WebSettings, sessions: Sessions, services: Services) -> APIRouter:
    router = APIRouter()
    level = default_registry().get(settings.jurisdiction)

    async def unread_of(session: Session) -> int:
        try:
            return len((await services.get(session, "notify", "/inbox", unread=True, limit=500))["items"])
        except (Refused, SignedOut):
            return 0

    async def session_of(request: Request) -> Session:
        """The signed-in person; their unread count is asked for at once, beside the page's reads."""
        session = await sessions.find(request.cookies.get(sessions.cookie))
        if session is None:
            raise NeedsSignIn
        if request.method == "GET":
            request.state.unread = asyncio.create_task(unread_of(session))
        return session

    async def form_of(request: Request, session: Session) -> FormData:
        """The posted form, once its CSRF token is this session's (``BadForm`` otherwise)."""
        form = await request.form()
        given = str(form.get("csrf", ""))
        if not given or not hmac.compare_digest(given, session.csrf):
            raise BadForm
        return form

    async def page(request: Request, template: str, session: Session | None, status: int = 200, **values: Any):
        pending = getattr(request.state, "unread", None)
        unread = await pending if pending is not None else 0
        context = {
            "level": level,
            "organs": organs_heading(level, session),
            "session": session,
            "nav": texts.navigation(session.roles) if session else [],
            "unread": unread,
            "path": request.url.path,
            **values,
        }
        return TEMPLATES.TemplateResponse(request, template, context, status_code=status)

    # -- signing in ------------------------------------------------------------------------
    @router.get("/login", response_class=HTMLResponse)
    async def login(request: Request, error: str | None = None) -> Response:
        people: list[dict[str, Any]] = []
        problem = error
        if settings.dev_signin:
            try:
                people = await services.dev_people()
            except Refused as err:
                problem = err.message
        token = secrets.token_urlsafe(24)
        response = await page(request, "login.html", None, people=people, csrf=token, error=problem)
        response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", secure=settings.cookie_secure)
        return response

    @router.post("/login")
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        expected = request.cookies.get(LOGIN_CSRF, "")
        if not expected or not hmac.compare_digest(str(form.get("csrf", "")), expected):
            raise BadForm
        if not settings.dev_signin:
            return RedirectResponse("/login", status_code=303)
        try:
            tokens = await services.dev_sign_in(str(form.get("person_id", "")))
        except Refused as err:
            return RedirectResponse(f"/login?error={quote(err.message)}", status_code=303)
        return await signed_in(tokens)

    @router.get("/auth/login")
    async def sign_in_with_provider() -> Response:
        """To the directory, which signs in with the identity provider and sends the browser
        back to ``/auth/done`` with a one-time code."""
        return RedirectResponse(f"{services.public_directory_url}/auth/login?to=web", status_code=303)

    @router.get("/auth/done")
    async def signed_in_with_provider(code: str | None = None) -> Response:
        if not code or len(code) > 200:
            return RedirectResponse("/login", status_code=303)
        try:
            tokens = await services.exchange(code)
        except Refused as err:
            return RedirectResponse(f"/login?error={quote(err.message)}", status_code=303)
        return await signed_in(tokens)

    async def signed_in(tokens: dict[str, Any]) -> Response:
        """A session for the tokens the directory answered this server with (never the browser)."""
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        cookie, _ = await sessions.open(claims, tokens)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            sessions.cookie,
            cookie,
            httponly=True,
            samesite="lax",
            secure=settings.cookie_secure,
            max_age=settings.web_session_ttl_s,
        )
        response.delete_cookie(LOGIN_CSRF)
        return response

    @router.post("/logout")
    async def sign_out(request: Request) -> Response:
        session = await session_of(request)
        await form_of(request, session)
        await sessions.close(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(sessions.cookie)
        return response

    @router.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        session = await session_of(request)
        first = texts.navigation(session.roles)[0][0]
        return RedirectResponse(first, status_code=303)

    # -- matters -----------------------------------------------------------------------------
    @router.get("/matters/new", response_class=HTMLResponse)
    async def new_matter(request: Request) -> Response:
        session = await session_of(request)
        return await page(request, "matter_new.html", session, values={}, error=None)

    @router.post("/matters/new", response_class=HTMLResponse)
    async def submit_matter(request: Request) -> Response:
        session = await session_of(request)
        form = await form_of(request, session)
        matter: dict[str, Any] = {
            "kind": form.get("kind") or "problem",
            "title": form.get("title", ""),
            "content": form.get("content", ""),
            "channel": "liaison_station",
            "raised_in": settings.jurisdiction,
            "lead": {"id": session.person_id, "name": session.name},
        }
        if session.has("liaison_station") and form.get("lead_id"):
            matter["lead"] = {"id": form["lead_id"], "name": form.get("lead_name") or form["lead_id"]}
        if form.get("raised_by"):
            matter["raised_by"] = {"name": form["raised_by"], "contact": form.get("contact") or None}
        co_signers = co_signers_of(form.get("co_signers", ""))
        if co_signers is None:
            error = Refused(422, "附议代表的格式应为“姓名:编号”，多人以“、”分隔")
            return await page(request, "matter_new.html", session, 422, values=form, error=error)
        matter["co_signers"] = co_signers
        try:
            created = await services.post(
                session, "intake", "/matters", {"matter": matter}, headers={"Idempotency-Key": form.get("key", "")[:64]}
            )
        except Refused as err:
            return await page(request, "matter_new.html", session, 422, values=form, error=err)
        await services.matter_caught_up(session, created["id"])
        return RedirectResponse(f"/matters/{created['id']}", status_code=303)

    @router.get("/matters", response_class=HTMLResponse)
    async def my_matters(request: Request, q: str | None = None) -> Response:
        session = await session_of(request)
        params: dict[str, Any] = {"limit": 200}
        if session.has("deputy") and not session.has("committee", "admin", "liaison_station"):
            params["lead"] = session.person_id
        if body := session.staff_body():  # staff see their own body's matters (人大 / 政协)
            params["body"] = body
        if q:
            params["q"] = q[:100]
        found = await services.get(session, "intake", "/matters", **params)
        matters = found["items"]
        if "lead" in params:  # a deputy's own few: the deadline of those handled here
            handled = [m for m in matters if m.get("status") == "routed"][:50]
            details = await asyncio.gather(
                *(services.get(session, "tracking", f"/cases/{m['id']}") for m in handled), return_exceptions=True
            )
            for matter, detail in zip(handled, details, strict=True):
                if isinstance(detail, dict):
                    matter["due_on"] = (detail.get("row") or {}).get("due_on")
        return await page(request, "matters.html", session, matters=matters, q=q or "")

    @router.get("/review", response_class=HTMLResponse)
    async def review(request: Request) -> Response:
        session = await session_of(request)
        own = {"body": body} if (body := session.staff_body()) else {}  # a body's staff review its own
        found = await services.get(session, "intake", "/matters", status="submitted", limit=200, **own)
        items = []
        for matter in found["items"]:
            similar = await services.get(session, "intake", f"/matters/{matter['id']}/duplicates")
            items.append({**matter, "duplicates": similar.get("possible_duplicates", [])})
        return await page(request, "review.html", session, matters=items)

    @router.get("/matters/{matter_id}", response_class=HTMLResponse)
    async def matter_page(request: Request, matter_id: str, error: str | None = None) -> Response:
        session = await session_of(request)
        detail = await services.get(session, "intake", f"/matters/{matter_id}")
        duplicates: list[dict[str, Any]] = []
        if session.has("committee", "admin") and detail["matter"].get("status") == "submitted":
            duplicates = (await services.get(session, "intake", f"/matters/{matter_id}/duplicates")).get(
                "possible_duplicates", []
            )
        return await page(
            request,
            "matter.html",
            session,
            matter=detail["matter"],
            history=detail["history"],
            duplicates=duplicates,
            error=error,
        )

    MATTER_ACTIONS = {
        "register": lambda f: None,
        "escalate": lambda f: {"reason": f.get("reason", "")},
        "reject": lambda f: {"reason": f.get("reason", "")},
        "route": lambda f: {"committee": f.get("committee", "")},
        "merge": lambda f: {"into": f.get("into", "")},
        "convert": lambda f: {"to_kind": f.get("to_kind", ""), "reason": f.get("reason", "")},
        "feedback": lambda f: {
            "rating": f.get("rating", ""),
            **({"comment": f["comment"]} if f.get("comment") else {}),
        },
    }

    @router.post("/matters/{matter_id}/{action}", response_class=HTMLResponse)
    async def matter_action(request: Request, matter_id: str, action: str) -> Response:
        session = await session_of(request)
        form = await form_of(request, session)
        body_of = MATTER_ACTIONS.get(action)
        if body_of is None:
            return await page(request, "error.html", session, 404, message="没有这个操作")
        back = form.get("back") if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", form.get("back", "")) else matter_id
        try:
            await services.post(session, "intake", f"/matters/{matter_id}/{action}", body_of(form))
        except Refused as err:
            return RedirectResponse(f"/matters/{back}?error={quote(err.message)}", status_code=303)
        await services.matter_caught_up(session, matter_id)
        if back != matter_id:
            await services.matter_caught_up(session, back)
        return RedirectResponse(f"/matters/{back}", status_code=303)

    # -- cases ---------------------------------------------------------------------------------
    @router.get("/cases", response_class=HTMLResponse)
    async def cases(
        request: Request,
        tab: str | None = None,
        unit: str | None = None,
        committee: str | None = None,
        kind: str | None = None,
        q: str | None = None,
        township: str | None = None,
        plan: str | None = None,
        item: str | None = None,
        page_no: int = Query(default=1, alias="page", ge=1, le=10_000),
    ) -> Response:
        """督办清单 (staff, leaders) or a unit's own cases: overdue red, due within five working
        days amber; filtered by unit, committee, kind; searched by 案由 and 编号; a hundred a page."""
        session = await session_of(request)
        filters = {
            "unit": unit,
            "committee": committee,
            "kind": kind,
            "q": q,
            "township": township,
            "plan": plan,
            "item": item,
        }
        params: dict[str, Any] = {
            "limit": PAGE_SIZE + 1,
            "offset": (page_no - 1) * PAGE_SIZE,
            **{k: v[:100] for k, v in filters.items() if v},
        }
        if body := session.staff_body():  # a body's staff supervise its own cases (人大 / 政协)
            params["body"] = body
        found = (await services.get(session, "tracking", "/cases", **params))["items"]
        more, found = len(found) > PAGE_SIZE, found[:PAGE_SIZE]
        handling = [c for c in found if c.get("status") in ("assigned", "rehandling")]
        tabs = {
            "sign": ("待签收", [c for c in handling if c.get("status") == "assigned" and not c.get("signed_at")]),
            "todo": ("办理中", [c for c in handling if c.get("signed_at") or c.get("status") == "rehandling"]),
            "replied": ("已答复", [c for c in found if c.get("status") in ("replied", "in_review", "closed")]),
            "all": ("全部", found),
        }
        chosen = tab if tab in tabs else ("sign" if session.has("unit") else "all")
        shown = sorted(tabs[chosen][1], key=lambda c: (not c.get("overdue"), not c.get("due_soon")))
        filtered = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
        query = "&".join(filter(None, (filtered, f"tab={chosen}")))
        return await page(
            request,
            "cases.html",
            session,
            tabs=tabs,
            tab=chosen,
            cases=shown,
            filters=filters,
            kinds=CASE_KIND_NAMES,
            townships=default_registry().children_of(settings.jurisdiction),
            page_no=page_no,
            more=more,
            query=query,
            filtered=filtered,
        )

    # -- plans (工作方案) -------------------------------------------------------------------------
    @router.get("/plans", response_class=HTMLResponse)
    async def plans(request: Request, error: str | None = None, done: str | None = None) -> Response:
        session = await session_of(request)
        found = (await services.get(session, "tracking", "/plans"))["items"]
        return await page(request, "plans.html", session, plans=found, error=error, done=done)

    @router.post("/plans/import", response_class=HTMLResponse)
    async def import_plan(request: Request) -> Response:
        """A plan file chosen in the form, passed on to tracking as it came."""
        session = await session_of(request)
        form = await form_of(request, session)
        upload = form.get("file")
        if not hasattr(upload, "read") or not getattr(upload, "filename", ""):
            return RedirectResponse(f"/plans?error={quote('请选择工作方案文件（JSON）或项目表')}", status_code=303)
        content = await upload.read(5 * 1024 * 1024 + 1)
        files = {"file": (upload.filename, content, upload.content_type or "application/octet-stream")}
        params = {k: str(form.get(k, "")).strip()[:200] for k in ("plan_id", "title", "year")}
        params = {k: v for k, v in params.items() if v}
        try:
            answer = (
                await services.call(session, "POST", "tracking", "/plans/import", files=files, params=params)
            ).json()
        except Refused as err:
            return RedirectResponse(f"/plans?error={quote(err.message)}", status_code=303)
        outcome = {"created": "已导入", "revised": "已按文件修订", "unchanged": "与已有方案相同，未作改动"}
        message = f"{outcome.get(answer['result'], answer['result'])}：{answer['items']} 个项目"
        return RedirectResponse(f"/plans/{answer['plan_id']}?done={quote(message)}", status_code=303)

    @router.post("/plans/{plan_id}/duties/{duty}/done", response_class=HTMLResponse)
    async def duty_done(request: Request, plan_id: str, duty: str) -> Response:
        """A duty marked done for a group (its plan received, its summary handed in) by staff."""
        session = await session_of(request)
        form = await form_of(request, session)
        body = {"group_id": str(form.get("group_id") or "") or None, "note": str(form.get("note") or "") or None}
        path = f"/plans/{quote(plan_id)}/duties/{quote(duty)}/done"
        try:
            await services.post(session, "tracking", path, {k: v for k, v in body.items() if v})
        except Refused as err:
            return RedirectResponse(f"/plans/{quote(plan_id)}?done={quote(err.message)}", status_code=303)
        return RedirectResponse(f"/plans/{quote(plan_id)}?done={quote('已登记完成')}#{quote(duty)}", status_code=303)

    @router.post("/plans/{plan_id}/items/{item_id}/milestones/{key}", response_class=HTMLResponse)
    async def milestone(request: Request, plan_id: str, item_id: str, key: str) -> Response:
        """形象进度 of an item's milestone, by staff or a unit responsible for the item (tracking
        decides who may)."""
        session = await session_of(request)
        form = await form_of(request, session)
        body = {"milestone": key, "text": str(form.get("text") or "").strip(), "met": form.get("met") == "true"}
        back = f"/plans/{quote(plan_id)}?item={quote(item_id)}"
        try:
            await services.post(session, "tracking", f"/plans/{quote(plan_id)}/items/{quote(item_id)}/milestones", body)
        except Refused as err:
            return RedirectResponse(f"{back}&done={quote(err.message)}#{quote(item_id)}", status_code=303)
        return RedirectResponse(f"{back}&done={quote('已报送形象进度')}#{quote(item_id)}", status_code=303)

    @router.get("/plans/{plan_id}", response_class=HTMLResponse)
    async def plan_page(request: Request, plan_id: str, done: str | None = None, item: str | None = None) -> Response:
        """A plan: its phases with every duty as it stands (groups behind marked), its items with
        leaders, committees, units, window, milestones (形象进度, with a form for whoever may report
        them), what came in under each and their evaluations; ``item``: the item just reported on,
        whose milestones are shown open."""
        session = await session_of(request)
        plan, duties = await asyncio.gather(
            services.get(session, "tracking", f"/plans/{quote(plan_id)}"),
            services.get(session, "tracking", f"/plans/{quote(plan_id)}/duties"),
        )
        by_duty: dict[str, list[dict[str, Any]]] = {}
        for row in duties["items"]:
            by_duty.setdefault(row["duty"], []).append(row)
        places = {t.code: t.name for t in default_registry().children_of(settings.jurisdiction)}
        places[settings.jurisdiction] = "本级"
        return await page(
            request, "plan.html", session, plan=plan, by_duty=by_duty, places=places, done=done, opened=item
        )

    @router.get("/cases/{case_id}", response_class=HTMLResponse)
    async def case_page(request: Request, case_id: str, error: str | None = None) -> Response:
        session = await session_of(request)
        detail = await services.get(session, "tracking", f"/cases/{case_id}")
        case = detail["case"]
        assigning: dict[str, Any] = {}
        if session.has("committee", "admin") and case.get("status") in ("opened", "returned"):
            assigning["preview"] = await services.get(session, "tracking", f"/cases/{case_id}/assignment-preview")
            assigning["units"] = (await services.get(session, "directory", "/orgs", kind="unit"))["items"]
            assigning["leaders"] = (await services.get(session, "directory", "/people", kind="leader"))["items"]
        return await page(
            request,
            "case.html",
            session,
            case=case,
            row=detail.get("row") or {},
            history=detail["history"],
            error=error,
            assigning=assigning,
        )

    CASE_ACTIONS = {
        "assign": lambda f: {
            "lead_unit": unit_of(f.get("unit", "")),
            "co_units": [unit_of(u) for u in f.getlist("co_units") if u and u != f.get("unit")],
            "committee": f.get("committee", ""),
            **({"leader": f["leader"]} if f.get("leader") else {}),
            "key": f.get("key") == "on",
        },
        "reply": lambda f: {"reply_class": f.get("reply_class", ""), "text": f.get("text", "")},
        "sign": lambda f: None,
        "feedback": lambda f: {"rating": f.get("rating", ""), "submitter_id": f.get("submitter_id") or None},
        "return": lambda f: {"reason": f.get("reason", "")},
        "progress": lambda f: {"text": f.get("text", ""), **({"percent": f["percent"]} if f.get("percent") else {})},
        "extension": lambda f: {"until": f.get("until", ""), "reason": f.get("reason", "")},
        "extension-decision": lambda f: {"grant": f.get("grant") == "yes", "note": f.get("note") or None},
        "co-unit-input": lambda f: {"text": f.get("text", ""), "countersign": f.get("countersign") == "on"},
        "review": lambda f: {"approve": f.get("approve") == "yes", "comment": f.get("comment") or None},
        "close": lambda f: None,
        "urge": lambda f: {"note": f.get("note", "")},
    }

    @router.post("/cases/{case_id}/{action}", response_class=HTMLResponse)
    async def case_action(request: Request, case_id: str, action: str) -> Response:
        session = await session_of(request)
        form = await form_of(request, session)
        body_of = CASE_ACTIONS.get(action)
        if body_of is None:
            return await page(request, "error.html", session, 404, message="没有这个操作")
        try:
            await services.post(session, "tracking", f"/cases/{case_id}/{action}", body_of(form))
        except Refused as err:
            return RedirectResponse(f"/cases/{case_id}?error={quote(err.message)}", status_code=303)
        await services.case_caught_up(session, case_id)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    # -- the four lists and the monthly summary -------------------------------------------------
    async def download(session: Session, path: str, fmt: str, name: str, **params: str) -> Response:
        """A file notify makes (``path?format=fmt``), handed to the browser as ``name.fmt``."""
        answer = await services.call(session, "GET", "notify", path, params={"format": fmt, **params})
        disposition = f"attachment; filename*=UTF-8''{quote(name)}.{fmt}"
        headers = {"Content-Disposition": disposition}
        return Response(answer.content, media_type=answer.headers.get("content-type"), headers=headers)

    @router.get("/lists/{name}.{fmt}")
    async def list_download(request: Request, name: str, fmt: str) -> Response:
        """问题清单、建议清单、督办清单、成果清单 as notify compiles them, CSV or XLSX."""
        session = await session_of(request)
        if name not in LISTS or fmt not in ("csv", "xlsx"):
            return await page(request, "error.html", session, 404, message="没有这张清单")
        own = {"body": body} if (body := session.staff_body()) else {}  # a body's staff: its own matters
        return await download(session, f"/lists/{name}", fmt, LISTS[name], **own)

    @router.get("/summary", response_class=HTMLResponse)
    async def month_summary(request: Request, month: str | None = None) -> Response:
        """一月一小结: this level's table of the month (and its lower levels'), XLSX to download."""
        session = await session_of(request)
        today = date.today()
        chosen = month if month and re.fullmatch(r"\d{4}-\d{2}", month) else f"{today.year}-{today.month:02d}"
        view = await services.get(session, "notify", f"/summaries/{chosen}")
        return await page(request, "summary.html", session, view=view, month=chosen)

    @router.get("/summary/{month}.xlsx")
    async def month_summary_xlsx(request: Request, month: str) -> Response:
        session = await session_of(request)
        if not re.fullmatch(r"\d{4}-\d{2}", month):
            return await page(request, "error.html", session, 404, message="月份格式应为 YYYY-MM")
        return await download(session, f"/summaries/{month}", "xlsx", f"{month}情况汇总表")

    @router.get("/lists", response_class=HTMLResponse)
    async def lists(request: Request) -> Response:
        session = await session_of(request)
        return await page(request, "lists.html", session, lists=LISTS)

    # -- notices -------------------------------------------------------------------------------
    @router.get("/inbox/badge", response_class=HTMLResponse)
    async def inbox_badge(request: Request) -> Response:
        """The unread count alone: htmx refreshes the header's badge with it."""
        await session_of(request)
        unread = await request.state.unread
        return TEMPLATES.TemplateResponse(request, "badge.html", {"unread": unread})

    @router.get("/inbox", response_class=HTMLResponse)
    async def inbox(request: Request) -> Response:
        session = await session_of(request)
        found = await services.get(session, "notify", "/inbox", limit=100)
        return await page(request, "inbox.html", session, notices=found["items"])

    return router
