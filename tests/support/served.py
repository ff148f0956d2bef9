"""The five services of 温岭市 as their processes serve them (``duban serve``'s apps, with
``/readyz``, ``/metrics`` and ``/status``), on a real nats-server, with a real matter and case:
what the tests of refusals, bad input and the OpenAPI fuzz call.

``served_level`` is the fixture's body; a test module makes it a fixture of its own scope with
``served = pytest.fixture(scope="module")(served_level)``.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from fastapi import FastAPI

from services.directory.api import create_api as directory_api
from services.directory.app import DEMO_FILE, DirectoryService
from services.directory.settings import DirectorySettings
from services.evaluation.api import create_api as evaluation_api
from services.evaluation.app import EvaluationService
from services.intake.api import create_api as intake_api
from services.notify.api import create_api as notify_api
from services.runtime.es.aggregate import DomainError
from services.runtime.http.auth import issue_token
from services.runtime.service import operated
from services.runtime.tools.ports import free_port
from services.tracking.api import create_api as tracking_api
from services.tracking.plans import PLANS_DIR
from tests.support.notify import WENLING, staff, wenling_level
from tests.support.waiting import eventually

SERVICES = ("intake", "tracking", "notify", "evaluation", "directory")
#: Seed 001's plan (工作方案): items with windows, leaders, units and milestones.
PLAN = PLANS_DIR / "wenling-2023-business-environment.json"


class Served:
    """The five services of 温岭市 as their processes serve them, and a real matter and case."""

    def __init__(self, level, evaluation: EvaluationService, directory: DirectoryService, case_id: str) -> None:
        self.level = level
        self.case_id = case_id
        self.plan_id = ""
        self.apps: dict[str, FastAPI] = {
            "intake": operated(
                intake_api(level.intake.settings, handlers=level.intake.handlers, engine=level.intake.engine),
                level.intake,
            ),
            "tracking": operated(
                tracking_api(level.tracking.settings, handlers=level.tracking.handlers, engine=level.tracking.engine),
                level.tracking,
            ),
            "notify": operated(
                notify_api(level.notify.settings, handlers=level.notify.handlers, engine=level.notify.engine),
                level.notify,
            ),
            "evaluation": operated(
                evaluation_api(evaluation.settings, handlers=evaluation.handlers, engine=evaluation.engine), evaluation
            ),
            "directory": operated(
                directory_api(directory.settings, handlers=directory.handlers, engine=directory.engine), directory
            ),
        }
        self.evaluation = evaluation
        self.directory = directory
        self.secret = level.intake.settings.jwt_secret
        roles = ["deputy", "committee", "unit", "liaison_station", "evaluator", "leader", "admin"]
        self.callers = [{}, {"Authorization": "Bearer x.y.z"}, {"Authorization": "Basic Zm9vOmJhcg=="}]
        self.callers += [self.bearer(f"{role}-1", role) for role in roles]
        other = issue_token("deputy-9", ["deputy"], "331081100", name="泽国镇代表", secret=self.secret)
        self.callers.append({"Authorization": f"Bearer {other}"})
        self.operations = {
            name: sorted((method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item)
            for name, app in self.apps.items()
        }

    def bearer(self, person: str, *roles: str, name: str | None = None) -> dict[str, str]:
        """The ``Authorization`` header of a person of 温岭市 holding ``roles``."""
        token = issue_token(person, list(roles), WENLING, name=name or person, secret=self.secret)
        return {"Authorization": f"Bearer {token}"}


async def served_level(tmp_path_factory):
    """温岭市's five services with a suggestion routed to tracking (its case id is ``case_id``),
    the demo's people and organisations in the directory and seed 001's plan in tracking (its id
    is ``plan_id``): real things for the requests to reach."""
    tmp_path = tmp_path_factory.mktemp("level")
    async with wenling_level(tmp_path) as level:
        evaluation = EvaluationService(level.intake.settings, status_ttl_s=0.0)
        directory = DirectoryService(
            level.intake.settings.as_(DirectorySettings).model_copy(update={"dev_signin": True, "seed_file": DEMO_FILE})
        )
        await evaluation.start(close_by_time=False)
        await directory.start()
        try:
            case_id = await level.routed_suggestion()
            plan = await eventually(lambda: _plan_imported(level), timeout=60, interval=0.3)
            await level.idle()
            served = Served(level, evaluation, directory, case_id)
            served.plan_id = plan.id
            yield served
        finally:
            await directory.stop()
            await evaluation.stop()


async def _plan_imported(level):
    """Seed 001's plan imported, once its units are in tracking's copy of the directory."""
    try:
        plan, _ = await level.tracking.plans.import_file(PLAN.read_bytes(), PLAN.name, staff(WENLING))
    except DomainError as exc:
        if exc.code == "unknown_unit":
            return None
        raise
    return plan


@contextlib.asynccontextmanager
async def listening(app: FastAPI):
    """``app`` behind a real uvicorn on a free port of 127.0.0.1, in the test's event loop: its
    base URL. What a client meets over a socket (keep-alive, chunked bodies), which an in-process
    transport does not show."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _started(server), timeout=10, interval=0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _started(server: uvicorn.Server) -> bool:
    return server.started
