"""Seed 004's plan loaded into tracking: the sixteen deputy groups and the work items with their
units, committees, leaders and quarterly milestones, in the read models; progress and group
activities recorded, with groups below the required count flagged."""

from __future__ import annotations

from datetime import date

import pytest

from contracts.jurisdictions import default_registry
from contracts.tracking import RecordGroupActivity, RecordMilestoneProgress
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.eventstore import EventStore
from services.runtime.http.auth import Principal, Role
from services.runtime.read.db import make_engine
from services.runtime.read.projector import Projector
from services.tracking.handlers import TrackingHandlers
from services.tracking.projections import (
    DeputyGroupProjection,
    WorkItemProjection,
    list_deputy_groups,
    list_work_items,
)
from services.tracking.workplan import load_workplan
from tests.support.tracking import STAFF, WENLING


@pytest.fixture
async def loaded(nc, unique, tmp_path):
    store = EventStore(nc, context=unique, jurisdiction=WENLING)
    await store.ensure_streams()
    handlers = TrackingHandlers(store, default_registry())
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'tracking.sqlite3'}")
    projectors = [
        Projector(
            nc,
            projection,
            engine,
            stream=store.stream,
            filter_subjects=[f"duban.evt.{unique}.{WENLING}.*"],
            jurisdiction=WENLING,
            context=unique,
            settings=store.settings,
        )
        for projection in (WorkItemProjection(), DeputyGroupProjection())
    ]
    for projector in projectors:
        await projector.prepare()

    async def catch_up():
        for projector in projectors:
            await projector.catch_up(timeout=30)

    assert await handlers.load_workplan(load_workplan(), STAFF) == (51, 16)
    assert await handlers.load_workplan(load_workplan(), STAFF) == (0, 0)  # again: nothing new
    await catch_up()
    yield handlers, engine, catch_up
    for projector in projectors:
        await projector.close()
    await engine.dispose()


async def test_the_ten_livelihood_projects_show_with_units_committees_leaders_and_milestones(loaded):
    _, engine, _ = loaded
    projects = await list_work_items(engine, jurisdiction=WENLING, kind="livelihood_project")
    assert len(projects) == 10
    for project in projects:
        assert project["lead_units"] and project["committees"] and project["leaders"] and project["group_names"]
        assert [m["quarter"] for m in project["milestones"]] == [1, 2, 3, 4]
    water = next(p for p in projects if p["title"] == "农村饮水安全")
    assert water["lead_units"] == ["市农业农村和水利局"]
    assert water["milestones"][0]["target"] == "改造村级一户一表10个村。"
    everything = await list_work_items(engine, jurisdiction=WENLING, year=2022)
    assert len(everything) == 51


async def test_the_sixteen_deputy_groups_show_and_those_below_three_activities_are_flagged(loaded):
    handlers, engine, catch_up = loaded
    groups = await list_deputy_groups(engine, jurisdiction=WENLING)
    assert len(groups) == 16
    assert {g["township"] for g in groups} == {j.code for j in default_registry().children_of(WENLING)}
    assert all(g["committee"] and g["leader"] and g["below_required"] for g in groups)

    taiping = next(g for g in groups if g["name"] == "太平街道代表小组")
    deputy = Principal(sub="deputy-9", name="代表", roles=[Role.deputy], jurisdiction=WENLING)
    for day, kind in (
        (date(2022, 5, 10), "inspection"),
        (date(2022, 6, 8), "discussion"),
        (date(2022, 8, 2), "hearing"),
    ):
        await handlers.record_group_activity(
            RecordGroupActivity(group_id=taiping["id"], held_on=day, kind=kind, title="跟踪监督", participants=12),
            deputy,
        )
    await catch_up()
    groups = {g["id"]: g for g in await list_deputy_groups(engine, jurisdiction=WENLING)}
    assert groups[taiping["id"]]["activities"] == 3 and not groups[taiping["id"]]["below_required"]
    assert sum(g["below_required"] for g in groups.values()) == 15


async def test_milestone_progress_is_recorded_by_a_responsible_unit_only(loaded):
    handlers, engine, catch_up = loaded
    water = next(
        p
        for p in await list_work_items(engine, jurisdiction=WENLING, kind="livelihood_project")
        if p["title"] == "农村饮水安全"
    )
    stranger = Principal(sub="unit-x", name="市教育局", roles=[Role.unit], jurisdiction=WENLING)
    progress = RecordMilestoneProgress(item_id=water["id"], quarter=1, text="完成10个村改造", met=True)
    with pytest.raises(NotAllowed):
        await handlers.record_milestone(progress, stranger)
    owner = Principal(sub="unit-water", name="市农业农村和水利局", roles=[Role.unit], jurisdiction=WENLING)
    await handlers.record_milestone(progress, owner)
    with pytest.raises(DomainError):
        await handlers.record_milestone(progress.model_copy(update={"item_id": "2022-lp-99"}), owner)
    await catch_up()
    water = next(p for p in await list_work_items(engine, jurisdiction=WENLING) if p["id"] == water["id"])
    assert water["milestones"][0] | {"recorded_at": None} == {
        "quarter": 1,
        "target": "改造村级一户一表10个村。",
        "progress": "完成10个村改造",
        "met": True,
        "recorded_at": None,
    }


async def test_a_plan_of_another_county_is_refused(nc, unique):
    store = EventStore(nc, context=unique, jurisdiction="331000")
    await store.ensure_streams()
    handlers = TrackingHandlers(store, default_registry())
    taizhou_staff = Principal(sub="c", name="工委", roles=[Role.committee], jurisdiction="331000")
    with pytest.raises(DomainError) as refused:
        await handlers.load_workplan(load_workplan(), taizhou_staff)
    assert refused.value.code == "wrong_jurisdiction"
