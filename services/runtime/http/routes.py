"""Commands over HTTP, built one way in every service: a table of :class:`CommandRoute`.

Each command of a service is one row: its path (``/cases/{case_id}/reply``), its command model
(``contracts``), the handlers' method that runs it and how its answer is shown. The route takes
the ids in the path and the rest of the command as the JSON body (a command with nothing else
takes no body), checks the caller's token (``http.principal_from_request``) and calls
``method(command, principal)``. A row that creates an aggregate (``creates=True``) also takes an
``Idempotency-Key`` header and passes it on as ``idempotency_key``: the handler creates through
``commands.create_once``, so a retried request finds what the first one made. The same table can
serve the service's NATS command subject (intake's does), so both speak the same commands.

FastAPI reads an endpoint's parameters from its signature; the endpoint of a row is one function
whose ``__signature__`` (PEP 362) lists the row's body model, path ids, key and caller.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Header, Path
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from starlette.responses import JSONResponse

from contracts.events import Command

from .auth import Principal
from .bounds import dates_out_of_range

#: An aggregate id as subjects and KV keys take it.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
IDEMPOTENCY_KEY_MAX = 200

#: The ``Idempotency-Key`` header of a command that creates something.
IdempotencyKey: Any = Header(
    default=None,
    alias="Idempotency-Key",
    max_length=IDEMPOTENCY_KEY_MAX,
    description="重试时使用相同的值，只受理一次",
)


@dataclass(frozen=True)
class CommandRoute:
    """One command of a service's HTTP API (``POST path``, or ``DELETE``)."""

    path: str
    model: type[Command]
    method: str
    summary: str
    tags: tuple[str, ...] = ()
    status_code: int = 200
    #: Creates an aggregate: takes ``Idempotency-Key`` and passes it to the method.
    creates: bool = False
    #: The descriptions of the path's ids, for OpenAPI.
    ids: dict[str, str] = field(default_factory=dict)
    #: The command's name (the route's name, and its NATS subject's last token): by default the
    #: path's last part (``reply``, ``send-down``).
    name: str = ""
    #: The answer's model, when it has one (documented in OpenAPI and serialised by it).
    answer: type[BaseModel] | None = None
    #: How this row's answer is shown, when not as the table's (``add_command_routes(view=)``).
    view: Callable[[Any], Any] | None = None
    #: The HTTP method (``DELETE`` for a command that removes something).
    verb: str = "POST"

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.path.rstrip("/").rsplit("/", 1)[-1])

    @property
    def path_fields(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


def body_model(command: type[BaseModel], *path_fields: str) -> type[BaseModel]:
    """The request body of ``command`` without the fields its path gives."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in command.model_fields.items() if name not in path_fields
    }
    return create_model(
        f"{command.__name__}Body",
        __config__=ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True),
        __doc__=command.__doc__,
        **fields,
    )


def add_command_routes(
    router: APIRouter,
    routes: Sequence[CommandRoute],
    *,
    handlers: Callable[[], Any],
    caller: Callable[..., Awaitable[Principal]],
    view: Callable[[Any], Any],
    check: Callable[[Command], list[dict[str, Any]]] | None = None,
) -> None:
    """Add one ``POST`` route per row of ``routes`` to ``router``. ``handlers()`` gives the
    service's handlers, ``view`` turns what a method returns into the answer, and ``check``
    (optional) finds what the models cannot check alone (answered 422 like pydantic's errors).
    Every command's days and instants are checked within ``bounds``' (2000-01-01..2100-12-31)."""
    for route in routes:
        router.add_api_route(
            route.path,
            _endpoint(route, handlers, caller, route.view or view, check),
            methods=[route.verb],
            status_code=route.status_code,
            summary=route.summary,
            tags=list(route.tags),
            name=route.name,
            description=route.model.__doc__,
            response_model=route.answer,
        )


async def run(route: CommandRoute, handlers: Any, command: Command, principal: Principal, key: str | None) -> Any:
    """Run one command through the handlers' method (checks of roles and scope are theirs);
    what HTTP and NATS command subjects both do."""
    extra = {"idempotency_key": key} if route.creates else {}
    return await getattr(handlers, route.method)(command, principal, **extra)


def _endpoint(
    route: CommandRoute,
    handlers: Callable[[], Any],
    caller: Callable[..., Awaitable[Principal]],
    view: Callable[[Any], Any],
    check: Callable[[Command], list[dict[str, Any]]] | None,
) -> Callable[..., Awaitable[Any]]:
    ids = route.path_fields
    body_type = body_model(route.model, *ids)
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(
            name, keyword, annotation=str, default=Path(pattern=ID_PATTERN, description=route.ids.get(name, name))
        )
        for name in ids
    ]
    if body_type.model_fields:
        parameters.insert(0, inspect.Parameter("body", keyword, annotation=body_type))
    if route.creates:
        parameters.append(inspect.Parameter("idempotency_key", keyword, annotation=str | None, default=IdempotencyKey))
    parameters.append(inspect.Parameter("principal", keyword, annotation=Principal, default=Depends(caller)))

    async def endpoint(**given: Any) -> Any:
        body: BaseModel | None = given.pop("body", None)
        principal = given.pop("principal")
        key = given.pop("idempotency_key", None) or None
        try:
            command = route.model.model_validate({**(body.model_dump() if body else {}), **given})
        except ValidationError as err:  # what the path gave breaks a rule of the command's model
            raise RequestValidationError(
                [{**e, "loc": ("path", *e["loc"])} for e in err.errors(include_input=False, include_url=False)]
            ) from None
        errors = [*dates_out_of_range(command), *(check(command) if check is not None else [])]
        if errors:
            raise RequestValidationError([{**e, "loc": (_part(e["loc"], ids), *e["loc"])} for e in errors])
        shown = view(await run(route, handlers(), command, principal, key))
        shown = await shown if inspect.isawaitable(shown) else shown
        return shown if route.answer is not None else _answer(shown, route.status_code)

    endpoint.__signature__ = inspect.Signature(parameters, return_annotation=Any)  # type: ignore[attr-defined]
    endpoint.__name__ = route.name.replace("-", "_")
    return endpoint


def _answer(shown: Any, status_code: int) -> JSONResponse:
    """An answer without a model of its own, written as it is: the views give JSON's types
    already (``model_dump(mode="json")``), which FastAPI would walk through ``jsonable_encoder``
    again, a tenth of a submission's time on the event loop (bench/submit.py's burst); anything
    else still goes through it."""
    try:
        return JSONResponse(shown, status_code=status_code)
    except TypeError:
        return JSONResponse(jsonable_encoder(shown), status_code=status_code)


def _part(loc: Sequence[Any], ids: list[str]) -> str:
    """Where the field of an error came from: the path (``/summaries/{month}/report``) or the body."""
    return "path" if loc and loc[0] in ids else "body"


__all__ = [
    "IDEMPOTENCY_KEY_MAX",
    "ID_PATTERN",
    "CommandRoute",
    "IdempotencyKey",
    "add_command_routes",
    "body_model",
    "run",
]
