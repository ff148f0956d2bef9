"""The directory's aggregates: a person, an organisation, a roster import. Pure decisions: each
command method checks the rules and returns the events; ``apply`` changes the state."""

from __future__ import annotations

from contracts.directory import (
    Org,
    OrgEnrolled,
    OrgRenamed,
    Person,
    PersonChanged,
    PersonDisabled,
    PersonEnabled,
    PersonEnrolled,
    RosterImported,
)
from services.runtime.es.aggregate import Aggregate, DomainError, applies
from services.runtime.es.ids import id_deriver

#: The directory's id namespace (never changes: stored events name ids made with it).
derived_id = id_deriver("6f1b3b1e-5d0c-4c59-9a5e-2a6f7c1d0e42")

CONTEXT = "directory"


def person_id_for(here: str, *, identity: str | None, credential_no: str | None, name: str) -> str:
    """A person's stable id: from their 统一身份标识 when the roster gives one (the same at every
    level, so one person in two levels' directories is one id), else from this level's 证号,
    else from their name (a staff list without numbers)."""
    if identity:
        return "p-" + derived_id("identity", identity)[:20]
    if credential_no:
        return "p-" + derived_id("credential", here, credential_no)[:20]
    return "p-" + derived_id("name", here, name)[:20]


class PersonRecord(Aggregate):
    context = CONTEXT
    aggregate_type = "person"

    person: Person | None = None
    active: bool = True
    disabled_reason: str | None = None

    def enroll(self, person: Person) -> list:
        """Enrolled once; enrolling again with other details changes them; the same, nothing."""
        if self.person is None:
            return [PersonEnrolled(person=person)]
        return self.change(person)

    def change(self, person: Person) -> list:
        if self.person is None:
            raise DomainError(f"人员 {person.id} 不在名册中", field="person_id", code="not_found")
        before, after = self.person.model_dump(), person.model_dump()
        changed = [name for name in after if before.get(name) != after[name]]
        return [PersonChanged(person=person, changed=changed)] if changed else []

    def disable(self, reason: str) -> list:
        self._exists()
        return [PersonDisabled(person_id=self.id, reason=reason)] if self.active else []

    def enable(self) -> list:
        self._exists()
        return [] if self.active else [PersonEnabled(person_id=self.id)]

    def _exists(self) -> None:
        if self.person is None:
            raise DomainError(f"人员 {self.id} 不在名册中", field="person_id", code="not_found")

    @applies(PersonEnrolled)
    def _enrolled(self, event: PersonEnrolled) -> None:
        self.person = event.person

    @applies(PersonChanged)
    def _changed(self, event: PersonChanged) -> None:
        self.person = event.person

    @applies(PersonDisabled)
    def _disabled(self, event: PersonDisabled) -> None:
        self.active, self.disabled_reason = False, event.reason

    @applies(PersonEnabled)
    def _enabled(self, event: PersonEnabled) -> None:
        self.active, self.disabled_reason = True, None


class OrgRecord(Aggregate):
    context = CONTEXT
    aggregate_type = "org"

    org: Org | None = None

    def enroll(self, org: Org) -> list:
        if self.org is None:
            return [OrgEnrolled(org=org)]
        if self.org.kind != org.kind:
            raise DomainError(f"编号 {org.id} 已是{self.org.kind.value}，不能再登记为{org.kind.value}", field="id")
        return [] if self.org.name == org.name else [OrgRenamed(org_id=org.id, name=org.name)]

    @applies(OrgEnrolled)
    def _enrolled(self, event: OrgEnrolled) -> None:
        self.org = event.org

    @applies(OrgRenamed)
    def _renamed(self, event: OrgRenamed) -> None:
        assert self.org is not None
        self.org = self.org.model_copy(update={"name": event.name})


class RosterImport(Aggregate):
    """One roster file's import, under the digest of the file: a second import of the same file
    finds it done."""

    context = CONTEXT
    aggregate_type = "roster_import"

    result: RosterImported | None = None

    @applies(RosterImported)
    def _imported(self, event: RosterImported) -> None:
        self.result = event
