"""Evaluation's command handlers: sessions drafted, opened, closed and published by committee
staff; ballot sheets cast by evaluators, or entered from paper by staff on their behalf.

Ballots come from a congress hall in bursts (hundreds of evaluators within minutes): a sheet is
checked against the session kept in memory (its subjects, electorate and window never change
after drafting; its status is re-read at most every ``status_ttl_s``), then appended to the
evaluator's own sheet aggregate. Nothing else is shared between ballots, so they run in parallel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from contracts.bodies import BODY_NAMES
from contracts.envelope import Actor, utcnow
from contracts.evaluation import (
    KIND_NAMES,
    CastBallots,
    CloseSession,
    DraftSession,
    OpenSession,
    PublishResults,
    ResultsPublished,
    SessionDrafted,
    SessionKind,
    session_body,
)
from contracts.jurisdictions import JurisdictionRegistry, default_registry
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.commands import create_once, execute
from services.runtime.es.eventstore import EventStore
from services.runtime.http.auth import STAFF, Guarded, Principal, Role

from .domain import BallotSheet, Session, Turnout, derived_id, sheet_id, tally, turnout_id

log = logging.getLogger("duban.evaluation")

EVALUATORS = (Role.evaluator, Role.deputy)
ROSTERS_FILE = Path(__file__).parent / "data" / "rosters.json"
#: Concurrent sheet loads when results are counted.
_LOADS = 50


def load_rosters(*files: Path | None) -> dict[str, dict]:
    """The rosters (名册) of the packaged file and of any others given; later files win."""
    rosters: dict[str, dict] = {}
    for path in (ROSTERS_FILE, *files):
        if path is None:
            continue
        try:
            rosters.update(json.loads(Path(path).read_text(encoding="utf-8"))["rosters"])
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"roster file {path} is unreadable: {err}") from err
    return rosters


class EvaluationHandlers(Guarded):
    """The commands of one level's evaluation."""

    guarded = "测评"

    def __init__(
        self,
        store: EventStore,
        *,
        ballot_key: bytes,
        rosters: dict[str, dict] | None = None,
        clock: Callable[[], datetime] = utcnow,
        status_ttl_s: float = 1.0,
        directory: Callable[[str], Awaitable[list[str] | None]] | None = None,
        registry: JurisdictionRegistry | None = None,
    ) -> None:
        self.store = store
        self.registry = registry or default_registry()
        #: The enabled members of a group of the level's directory (a 代表小组, a 代表团), or
        #: None when the directory has no such group (then ``rosters`` are asked).
        self.directory = directory
        self.here = store.jurisdiction
        self.ballot_key = ballot_key
        self.rosters = rosters if rosters is not None else load_rosters()
        self.clock = clock
        self.status_ttl_s = status_ttl_s
        self._sessions: dict[str, tuple[float, Session]] = {}
        self._loading: dict[str, asyncio.Future[Session]] = {}

    # -- who may do what ---------------------------------------------------------------
    # -- sessions ----------------------------------------------------------------------
    async def draft(self, command: DraftSession, principal: Principal, idempotency_key: str | None = None) -> Session:
        """A new session, by the staff of the body that holds its kind (民主评议 the CPPCC's, the
        others the congress's); a retry with the same idempotency key returns the one made the first time."""
        self._staff(principal, "创建测评")
        body = session_body(command.kind)
        self._body_staff(principal, body, f"创建{KIND_NAMES[command.kind]}")
        if body not in self.registry.bodies_of(self.here):
            raise DomainError(
                f"{self.registry.get(self.here).name}没有{BODY_NAMES[body]}，不能开展{KIND_NAMES[command.kind]}",
                field="kind",
                code="no_such_body",
            )
        electorate = list(command.electorate)
        if command.roster is not None:
            members = await self.directory(command.roster) if self.directory is not None else None
            if members is None:
                roster = self.rosters.get(command.roster)
                if roster is None:
                    raise DomainError(f"没有名册或代表小组 {command.roster}", field="roster", code="unknown_roster")
                members = roster["members"]
            electorate += members
        report = command.report_to_party_committee
        drafted = SessionDrafted(
            kind=command.kind,
            title=command.title,
            subjects=command.subjects,
            electorate=list(dict.fromkeys(electorate)),
            roster=command.roster,
            opens_at=command.opens_at,
            closes_at=command.closes_at,
            secret=command.secret,
            quorum=command.quorum,
            report_to_party_committee=command.kind == SessionKind.performance if report is None else report,
        )
        key = idempotency_key
        session_id = (
            derived_id("draft", self.here, principal.id, key) if key else derived_id("session", str(time.time_ns()))
        )
        session, _ = await create_once(
            self.store, Session, session_id, lambda s: s.draft(drafted), actor=principal.actor(Role.committee)
        )
        return session

    async def open(self, command: OpenSession, principal: Principal) -> Session:
        self._staff(principal, "开始测评")
        now = self.clock()
        return await self._session_command(
            command.session_id, lambda s: s.open(now), principal.actor(Role.committee), principal
        )

    async def close(self, command: CloseSession, principal: Principal | None = None) -> Session:
        """Close (by staff, or by time when ``principal`` is None) and publish the results."""
        if principal is not None:
            self._staff(principal, "结束测评")
        actor = principal.actor(Role.committee) if principal is not None else None
        by = "staff" if principal is not None else "time"
        await self._session_command(command.session_id, lambda s: s.close(by), actor, principal)
        # Sheets checked against a session status read before the close (at most status_ttl_s
        # old, in any process) are appended by now: count after that, so none is left out.
        await asyncio.sleep(self.status_ttl_s * 2)
        return await self.publish(PublishResults(session_id=command.session_id), principal)

    async def publish(self, command: PublishResults, principal: Principal | None = None) -> Session:
        """Count every evaluator's sheet and publish the results (once)."""
        if principal is not None:
            self._staff(principal, "公布测评结果")
        session_id = command.session_id
        session = await self.store.load(Session, session_id)
        if principal is not None and session.kind is not None:
            self._body_staff(principal, session_body(session.kind), f"公布{KIND_NAMES[session.kind]}结果")
        if session.status == "published":
            return session
        session.check_publishable()
        results, voters = await self.results(session)
        published = ResultsPublished(
            kind=session.kind,
            title=session.title,
            electorate_size=len(session.electorate),
            voters=voters,
            results=results,
            report_to_party_committee=session.report_to_party_committee,
        )
        actor = principal.actor(Role.committee) if principal is not None else None
        return await self._session_command(session_id, lambda s: s.publish(published), actor, principal)

    async def results(self, session: Session):
        """The results counted from the sheets of the electorate (exact: read from the event
        store, not from a read model that may lag). In a secret session, a turnout record the
        service did not get to write after its sheet (a crash in between) is written now."""
        gate = asyncio.Semaphore(_LOADS)

        async def sheet(evaluator: str) -> BallotSheet:
            async with gate:
                found = await self.store.load(BallotSheet, self.sheet_id(session, evaluator))
                if session.secret and found.choices:
                    await self._record_turnout(session, evaluator, list(found.choices), found.on_paper)
                return found

        sheets = await asyncio.gather(*(sheet(e) for e in session.electorate))
        return tally(session, sheets)

    async def _session_command(
        self, session_id: str, decide, actor: Actor | None, principal: Principal | None = None
    ) -> Session:
        """A decision on a session; by staff (``principal``), only those of the body that holds it."""

        def checked(session: Session):
            if principal is not None and session.kind is not None:
                self._body_staff(principal, session_body(session.kind), KIND_NAMES[session.kind])
            return decide(session)

        extra = {"actor": actor} if actor is not None else {}
        session, _ = await execute(self.store, Session, session_id, checked, **extra)
        self._sessions.pop(session_id, None)
        return session

    async def session(self, session_id: str) -> Session:
        """The session, from memory if read within ``status_ttl_s`` (see the module docstring).

        The sheets that arrive together when the hall starts voting (or the cache expires) wait
        for one load of the session rather than each loading it."""
        cached = self._sessions.get(session_id)
        if cached is not None and time.monotonic() - cached[0] < self.status_ttl_s:
            return cached[1]
        loading = self._loading.get(session_id)
        if loading is None:
            loading = self._loading[session_id] = asyncio.ensure_future(self.store.load(Session, session_id))
            loading.add_done_callback(lambda _: self._loading.pop(session_id, None))
        session = await asyncio.shield(loading)
        self._sessions[session_id] = (time.monotonic(), session)
        return session

    # -- ballots -----------------------------------------------------------------------
    def sheet_id(self, session: Session, evaluator_id: str) -> str:
        return sheet_id(session.id, evaluator_id, secret=session.secret, key=self.ballot_key)

    async def cast(self, command: CastBallots, principal: Principal) -> dict:
        """An evaluator's sheet, or staff entering a paper sheet for ``evaluator_id``."""
        self._in_scope(principal)
        if command.evaluator_id is not None and command.evaluator_id != principal.id:
            if not principal.has(*STAFF):
                raise NotAllowed("仅工委工作人员可以代为录入纸质测评票")
            evaluator, on_paper = command.evaluator_id, True
        else:
            if not principal.has(*EVALUATORS):
                raise NotAllowed("当前身份不能参加测评")
            evaluator, on_paper = principal.id, False
        session = await self.session(command.session_id)
        session.check_ballot(evaluator, command.choices, self.clock())
        if session.secret:
            actor = Actor(principal_id="anonymous", role="evaluator", jurisdiction=self.here)
            if on_paper:
                actor = Actor(principal_id="paper-ballot", role="committee", jurisdiction=self.here)
        else:
            actor = principal.actor(Role.committee if on_paper else Role.evaluator, Role.deputy)
        identity = None if session.secret else evaluator
        await execute(
            self.store,
            BallotSheet,
            self.sheet_id(session, evaluator),
            lambda s: s.cast(session.id, command.choices, identity, on_paper),
            actor=actor,
            retries=100,  # a burst of sheets of one evaluator: each retry either wins or is refused
        )
        subjects = [c.subject_id for c in command.choices]
        if session.secret:
            await self._record_turnout(session, evaluator, subjects, on_paper)
        return {"session_id": session.id, "accepted": subjects, "on_paper": on_paper}

    async def _record_turnout(self, session: Session, evaluator: str, subjects: list[str], on_paper: bool) -> None:
        await execute(
            self.store,
            Turnout,
            turnout_id(session.id, evaluator),
            lambda t: t.record(session.id, evaluator, subjects, on_paper),
            actor=Actor(principal_id="system", role="system", jurisdiction=self.here),
            retries=100,
        )
