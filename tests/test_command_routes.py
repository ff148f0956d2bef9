"""A command route's answer (``http/routes.py``): a view's JSON written as it is, anything else
still encoded as FastAPI encodes it, and an answer with a model of its own serialised by it."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from typing import ClassVar

import httpx
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from contracts.events import Command
from services.runtime.http.auth import Principal, Role
from services.runtime.http.routes import CommandRoute, add_command_routes


class Note(Command):
    command_type: ClassVar[str] = "test.Note"
    text: str


class Answer(BaseModel):
    text: str


class Handlers:
    async def note(self, command: Note, principal: Principal, **_: object) -> SimpleNamespace:
        return SimpleNamespace(text=command.text, at=dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC))


async def caller() -> Principal:
    return Principal(sub="committee-1", name="工委", roles=[Role.committee], jurisdiction="331081")


def client(**routes: CommandRoute) -> httpx.AsyncClient:
    router = APIRouter()
    for route in routes.values():
        view = route.view or (lambda r: {"text": r.text, "at": r.at.isoformat()})
        add_command_routes(router, [route], handlers=Handlers, caller=caller, view=view)
    app = FastAPI()
    app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_answers_as_json_whatever_the_view_gives():
    routes = {
        "json": CommandRoute("/json", Note, "note", "记", status_code=201),
        "objects": CommandRoute(
            "/objects",
            Note,
            "note",
            "记",
            view=lambda r: {"text": r.text, "at": r.at, "id": uuid.UUID(int=1), "tags": {"甲"}},
        ),
        "model": CommandRoute(
            "/model", Note, "note", "记", answer=Answer, view=lambda r: {"text": r.text, "hidden": "不应返回"}
        ),
    }
    async with client(**routes) as http:
        await answers(http)


async def answers(http: httpx.AsyncClient) -> None:

    plain = await http.post("/json", json={"text": "道路破损"})
    assert plain.status_code == 201
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == {"text": "道路破损", "at": "2026-11-28T09:30:00+00:00"}

    encoded = await http.post("/objects", json={"text": "道路破损"})  # datetimes, UUIDs, sets: FastAPI's encoder
    assert encoded.status_code == 200
    assert encoded.json() == {
        "text": "道路破损",
        "at": "2026-11-28T09:30:00+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
        "tags": ["甲"],
    }

    modelled = await http.post("/model", json={"text": "道路破损"})  # the answer's model decides what is shown
    assert modelled.status_code == 200
    assert modelled.json() == {"text": "道路破损"}
