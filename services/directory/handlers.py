"""The directory's command handlers: administrators enrol organisations and people, change and
disable them, and import the rosters offices keep. Every change is an event with its actor."""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.directory import (
    ChangePerson,
    DisablePerson,
    EnablePerson,
    EnrollOrg,
    EnrollPerson,
    Org,
    RosterImported,
)
from contracts.intake import ID_PATTERN
from contracts.jurisdictions import JurisdictionRegistry
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.commands import execute
from services.runtime.es.eventstore import EventStore
from services.runtime.http.auth import Guarded, Principal, Role
from services.runtime.read import people as directory

from .domain import OrgRecord, PersonRecord, RosterImport
from .roster import Known, file_digest, read_roster

log = logging.getLogger("duban.directory")

#: The congress of a level's own deputies, by the level's kind (``contracts/jurisdictions.py``).
CONGRESS_OF_LEVEL = {"prefecture": "city", "county": "county", "township": "township"}


class InvalidId(DomainError):
    """An id no record can have (the contract's ``orgs`` are any text): refused as invalid input."""

    status = 422

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field, code="invalid_id")


class DirectoryHandlers(Guarded):
    """The commands of one level's directory."""

    guarded = "名册"

    def __init__(self, store: EventStore, engine: AsyncEngine, registry: JurisdictionRegistry) -> None:
        self.store = store
        self.engine = engine
        self.here = store.jurisdiction
        self.registry = registry

    def _admin(self, principal: Principal, action: str) -> None:
        self._in_scope(principal)
        if not principal.has(Role.admin):
            raise NotAllowed(f"仅系统管理员可以{action}")

    async def enroll_org(self, command: EnrollOrg, principal: Principal, key: str | None = None) -> Org:
        self._admin(principal, "登记单位和组织")
        state, _ = await execute(
            self.store, OrgRecord, command.org.id, lambda o: o.enroll(command.org), actor=principal.actor(Role.admin)
        )
        assert state.org is not None
        return state.org

    async def enroll_person(self, command: EnrollPerson, principal: Principal, key: str | None = None) -> PersonRecord:
        self._admin(principal, "登记人员")
        await self._orgs_known(command.person.orgs)
        return await self._on_person(command.person.id, lambda p: p.enroll(command.person), principal)

    async def change_person(self, command: ChangePerson, principal: Principal, key: str | None = None) -> PersonRecord:
        self._admin(principal, "修改人员信息")
        await self._orgs_known(command.person.orgs)
        return await self._on_person(command.person.id, lambda p: p.change(command.person), principal)

    async def disable(self, command: DisablePerson, principal: Principal, key: str | None = None) -> PersonRecord:
        self._admin(principal, "停用人员")
        return await self._on_person(command.person_id, lambda p: p.disable(command.reason), principal)

    async def enable(self, command: EnablePerson, principal: Principal, key: str | None = None) -> PersonRecord:
        self._admin(principal, "启用人员")
        return await self._on_person(command.person_id, lambda p: p.enable(), principal)

    async def _on_person(self, person_id: str, decide, principal: Principal) -> PersonRecord:
        """A person's command, decided on their record, recorded as the administrator's."""
        state, _ = await execute(self.store, PersonRecord, person_id, decide, actor=principal.actor(Role.admin))
        return state

    async def _orgs_known(self, org_ids: list[str]) -> None:
        for org_id in org_ids:
            if not re.fullmatch(ID_PATTERN, org_id):  # no organisation has it, nor could
                raise InvalidId("所属组织的编号只能包含字母、数字、下划线和连字符（1 至 64 位）", field="person.orgs")
            if not (await self.store.load(OrgRecord, org_id)).exists:
                raise NotAllowed(f"组织 {org_id} 不在名册中，请先登记", field="person.orgs")

    async def known(self) -> Known:
        return Known(
            orgs={
                row["id"]: Org(id=row["id"], kind=row["kind"], name=row["name"])
                for row in await directory.list_orgs(self.engine)
            }
        )

    async def import_roster(self, data: bytes, file_name: str, principal: Principal) -> dict[str, Any]:
        """Import a roster file (see ``roster.py``): once per file; the report of what it did."""
        self._admin(principal, "导入名册")
        digest = file_digest(data)
        import_id = f"import-{digest[:32]}"
        done = await self.store.load(RosterImport, import_id)
        if done.result is not None:
            return {**done.result.model_dump(mode="json"), "again": True}
        level = self.registry.get(self.here).level.value
        read = read_roster(
            data, here=self.here, known=await self.known(), default_congress=CONGRESS_OF_LEVEL.get(level, "county")
        )
        actor = principal.actor(Role.admin)
        for group in read.new_groups:
            await execute(self.store, OrgRecord, group.id, lambda o, g=group: o.enroll(g), actor=actor)
        enrolled, changed, unchanged = [], [], 0
        for _, person in read.people:
            before = await self.store.load(PersonRecord, person.id)
            _, commit = await execute(self.store, PersonRecord, person.id, lambda p, q=person: p.enroll(q), actor=actor)
            if commit is None:
                unchanged += 1
            elif before.person is None:
                enrolled.append(person.id)
            else:
                changed.append(person.id)
        result = RosterImported(
            import_id=import_id,
            file_name=file_name[:200],
            sha256=digest,
            rows=read.rows,
            enrolled=enrolled,
            changed=changed,
            unchanged=unchanged,
            rejected=read.rejected,
        )
        await execute(self.store, RosterImport, import_id, lambda r: [] if r.result else [result], actor=actor)
        log.info(
            "roster imported",
            extra={
                "import_id": import_id,
                "rows": read.rows,
                "enrolled": len(enrolled),
                "changed": len(changed),
                "rejected": len(read.rejected),
            },
        )
        return {**result.model_dump(mode="json"), "again": False}
