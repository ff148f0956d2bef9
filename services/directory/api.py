"""The directory's HTTP API (名册与登录): the people and organisations of this level, roster
imports, and signing in.

Lists show mobiles masked (``138****5678``) to everyone but administrators; the export (XLSX)
is for administrators only; mobiles are never logged. Sign-in answers with duban's own tokens
(``signin.py``); ``/.well-known/jwks.json`` is what every service verifies them with.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Form, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.directory import (
    ORG_KIND_NAMES,
    PERSON_KIND_NAMES,
    ChangePerson,
    DisablePerson,
    EnablePerson,
    EnrollOrg,
    EnrollPerson,
    OrgKind,
    PersonKind,
)
from contracts.intake import ID_PATTERN
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.http import exports
from services.runtime.http.app import Provided, error_body, service_app, service_router
from services.runtime.http.auth import STAFF, Principal, Role
from services.runtime.http.routes import CommandRoute, add_command_routes
from services.runtime.http.spreadsheets import ImportRefused, upload_body, uploaded_file
from services.runtime.read import people as directory

from . import projections
from .domain import PersonRecord
from .handlers import DirectoryHandlers
from .keys import KeyRing
from .settings import DirectorySettings
from .signin import TO_WEB, SignIn, SignInRefused

TITLE = "duban directory 名册与登录"

PERSON_ID = {"person_id": "人员编号"}
PersonId = Path(pattern=ID_PATTERN, description="人员编号")

COMMANDS = [
    CommandRoute("/orgs", EnrollOrg, "enroll_org", "登记单位、联络站、代表小组、工委或界别", ("orgs",), 201),
    CommandRoute("/people", EnrollPerson, "enroll_person", "登记人员", ("people",), 201),
]
PERSON_COMMANDS = [
    CommandRoute("/people/change", ChangePerson, "change_person", "修改人员信息（整条记录）", ("people",)),
    CommandRoute("/people/{person_id}/disable", DisablePerson, "disable", "停用人员", ("people",), ids=PERSON_ID),
    CommandRoute("/people/{person_id}/enable", EnablePerson, "enable", "启用人员", ("people",), ids=PERSON_ID),
]


class DevSignIn(BaseModel):
    person_id: str = Field(pattern=ID_PATTERN, description="名册中的人员编号")


class Exchange(BaseModel):
    code: str = Field(min_length=10, max_length=200)


class Refresh(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


def person_view(person: dict[str, Any], *, full: bool) -> dict[str, Any]:
    """A person as lists show them: the mobile masked unless ``full`` (administrators)."""
    view = {k: v for k, v in person.items() if k != "updated_at"}
    view["kind_name"] = PERSON_KIND_NAMES.get(PersonKind(person["kind"]), person["kind"]) if person["kind"] else None
    if not full:
        view["mobile"] = directory.mask_mobile(person.get("mobile"))
    return view


def record_view(record: PersonRecord) -> dict[str, Any]:
    assert record.person is not None
    return {"person": record.person.model_dump(mode="json"), "active": record.active}


def _redirect_uri(settings: DirectorySettings, request: Request) -> str:
    base = settings.public_url or str(request.base_url)
    return f"{base.rstrip('/')}/auth/callback"


def create_api(
    settings: DirectorySettings,
    *,
    handlers: Provided[DirectoryHandlers],
    engine: Provided[AsyncEngine],
    signin: Provided[SignIn] | None = None,
) -> Any:
    here, get_handlers, get_engine, caller, router = service_router(
        settings, handlers=handlers, engine=engine, not_found="人员不存在"
    )

    def get_signin() -> SignIn:
        if signin is not None:
            return signin() if callable(signin) else signin
        return SignIn(settings, get_engine(), KeyRing(settings.keys_file()))

    def reader(principal: Principal) -> bool:
        """Staff and leaders read the directory; administrators see it whole."""
        if not principal.has(*STAFF, Role.leader, Role.operator, Role.liaison_station):
            raise NotAllowed("无权查看名册")
        return principal.has(Role.admin)

    add_command_routes(router, COMMANDS, handlers=get_handlers, caller=caller, view=_view)
    add_command_routes(router, PERSON_COMMANDS, handlers=get_handlers, caller=caller, view=_view)

    @router.get("/people", tags=["people"], summary="人员名册")
    async def list_people(
        kind: PersonKind | None = None,
        org: str | None = Query(default=None, pattern=ID_PATTERN, description="所属组织编号（代表小组、联络站、单位）"),
        q: str | None = Query(default=None, max_length=64, description="按姓名或证号查找"),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        full = reader(principal)
        rows = await directory.list_people(get_engine(), kind=kind.value if kind else None, org=org, text=q)
        return {"items": [person_view(p, full=full) for p in rows], "total": len(rows)}

    @router.get("/people/export", tags=["people"], summary="导出名册（XLSX，仅系统管理员）")
    async def export(principal: Principal = Depends(caller)) -> Response:
        if not principal.has(Role.admin):
            raise NotAllowed("仅系统管理员可以导出名册")
        return Response(
            await _export(get_engine()),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="roster-{here}.xlsx"'},
        )

    @router.get("/people/{person_id}", tags=["people"], summary="人员详情")
    async def person(person_id: str = PersonId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        if principal.id != person_id:
            full = reader(principal)
        else:
            full = True
        found = await directory.find_person(get_engine(), person_id)
        if found is None:
            raise DomainError(f"人员 {person_id} 不在本级名册中", field="person_id", code="not_found")
        return {"person": person_view(found, full=full)}

    @router.get("/orgs", tags=["orgs"], summary="单位、联络站、代表小组、工委、界别")
    async def list_orgs(kind: OrgKind | None = None, principal: Principal = Depends(caller)) -> dict[str, Any]:
        rows = await directory.list_orgs(get_engine(), kind=kind.value if kind else None)
        for row in rows:
            row["kind_name"] = ORG_KIND_NAMES.get(OrgKind(row["kind"]), row["kind"])
        return {"items": rows}

    @router.post(
        "/rosters/import",
        tags=["people"],
        summary="导入名册（XLSX / CSV，仅系统管理员）",
        openapi_extra=upload_body(
            "XLSX 或 CSV；列：姓名、性别、证号、身份、代表层级、所属代表团/界别、联络站、所在单位、手机、邮箱"
        ),
    )
    async def import_roster(request: Request, principal: Principal = Depends(caller)) -> Any:
        get_handlers()._admin(principal, "导入名册")
        try:
            data, name = await uploaded_file(request)
            return await get_handlers().import_roster(data, name, principal)
        except ImportRefused as err:
            return JSONResponse(error_body(err.code, err.message, "file"), err.status)

    @router.get("/rosters/imports", tags=["people"], summary="名册导入记录")
    async def imports(principal: Principal = Depends(caller)) -> dict[str, Any]:
        reader(principal)
        return {"items": await projections.list_imports(get_engine())}

    # -- signing in ----------------------------------------------------------------------------
    @router.get("/.well-known/jwks.json", tags=["sign-in"], summary="令牌公钥（JWKS）")
    async def jwks() -> dict[str, Any]:
        return get_signin().ring.jwks()

    @router.get("/auth/login", tags=["sign-in"], summary="通过统一身份认证登录")
    async def login(
        request: Request, to: str | None = Query(default=None, pattern="^web$", description="web：登录后回到工作台")
    ) -> Any:
        try:
            url = await get_signin().begin(_redirect_uri(settings, request), to_web=to == "web")
            return RedirectResponse(url, status_code=302)
        except SignInRefused as err:
            return JSONResponse(error_body(err.code, err.message), err.status)

    @router.get("/auth/callback", tags=["sign-in"], summary="统一身份认证回调")
    async def callback(
        request: Request,
        code: str | None = Query(default=None, max_length=2000),
        state: str | None = Query(default=None, max_length=200),
        error: str | None = Query(default=None, max_length=200),
    ) -> Any:
        if error or not code or not state:
            return JSONResponse(error_body("not_authenticated", "统一身份认证未通过，请重新登录"), 401)
        try:
            tokens = await get_signin().finish(code, state, _redirect_uri(settings, request))
            if state.startswith(TO_WEB) and settings.web_url:
                return RedirectResponse(await get_signin().code_for_web(tokens), status_code=302)
            return tokens
        except SignInRefused as err:
            if state.startswith(TO_WEB) and settings.web_url:
                return RedirectResponse(f"{settings.web_url.rstrip('/')}/login?error={quote(err.message)}", 302)
            return JSONResponse(error_body(err.code, err.message), err.status)

    @router.post("/auth/exchange", tags=["sign-in"], summary="工作台以一次性凭据换取令牌")
    async def exchange(body: Exchange) -> Any:
        try:
            return await get_signin().exchange(body.code)
        except SignInRefused as err:
            return JSONResponse(error_body(err.code, err.message, "code"), err.status)

    @router.post("/auth/refresh", tags=["sign-in"], summary="续期访问令牌")
    async def refresh(body: Refresh) -> Any:
        try:
            return await get_signin().refresh(body.refresh_token)
        except SignInRefused as err:
            return JSONResponse(error_body(err.code, err.message), err.status)

    @router.post("/auth/logout", tags=["sign-in"], summary="退出登录", status_code=204)
    async def logout(body: Refresh) -> Response:
        await get_signin().sign_out(body.refresh_token)
        return Response(status_code=204)

    @router.get("/auth/dev/people", tags=["sign-in"], summary="开发环境：可选择登录的人员")
    async def dev_people() -> Any:
        if not settings.dev_signin:
            return JSONResponse(error_body("not_found", "仅开发环境可选择人员登录"), 404)
        rows = await directory.list_people(get_engine())
        return {"items": [person_view(p, full=False) for p in rows if p["active"]]}

    @router.post("/auth/dev/token", tags=["sign-in"], summary="开发环境：以名册中的人员登录")
    async def dev_token(body: DevSignIn) -> Any:
        if not settings.dev_signin:
            return JSONResponse(error_body("not_found", "仅开发环境可选择人员登录"), 404)
        try:
            signin_ = get_signin()
            return await signin_.open_session(await signin_.enabled_person(body.person_id))
        except SignInRefused as err:
            return JSONResponse(error_body(err.code, err.message, "person_id"), err.status)

    @router.post("/oauth/token", tags=["sign-in"], summary="服务账号令牌（client credentials）")
    async def service_token(
        grant_type: str = Form(max_length=64),
        client_id: str = Form(max_length=128),
        client_secret: str = Form(max_length=256),
    ) -> Any:
        if grant_type != "client_credentials":
            return JSONResponse(error_body("unsupported_grant_type", "仅支持 client_credentials", "grant_type"), 400)
        try:
            return get_signin().client_credentials(client_id, client_secret)
        except SignInRefused as err:
            return JSONResponse(error_body(err.code, err.message, "client_id"), err.status)

    return service_app(TITLE, settings, router, max_body=6 * 1024 * 1024, description=__doc__ or "")


def _view(result: Any) -> Any:
    if isinstance(result, PersonRecord):
        return record_view(result)
    return result.model_dump(mode="json")


async def _export(engine: AsyncEngine) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "名册"
    exports.append(sheet, ["人员编号", "姓名", "性别", "证号", "身份", "代表层级", "所属组织", "手机", "邮箱", "状态"])
    orgs = {o["id"]: o["name"] for o in await directory.list_orgs(engine)}
    for p in await directory.list_people(engine):
        exports.append(
            sheet,
            [
                p["id"],
                p["name"],
                p["gender"],
                p["credential_no"],
                PERSON_KIND_NAMES.get(PersonKind(p["kind"]), p["kind"]),
                p["congress"],
                "、".join(orgs.get(o, o) for o in p["orgs"] or []),
                p["mobile"],
                p["email"],
                "在册" if p["active"] else "已停用",
            ],
        )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
