"""Tests of the deputy-group supervision plan (services.tracking.workplan) and its 2022 data (seed 004)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.jurisdictions import Level, default_registry
from services.tracking.workplan import (
    DEFAULT_WORKPLAN_FILE,
    Milestone,
    WorkItemKind,
    WorkPlan,
    WorkPlanError,
    load_workplan,
)

WENLING = "331081"
#: The source document, when the shared seeds are next to the checkout (or named by DUBAN_SEEDS_DIR).
SEED_004 = (
    Path(os.environ.get("DUBAN_SEEDS_DIR", Path(__file__).resolve().parents[2] / "shared" / "seeds"))
    / "004_23b93710c8daaffa.txt"
)


@pytest.fixture(scope="module")
def plan() -> WorkPlan:
    return load_workplan()


def _document() -> dict[str, Any]:
    return json.loads(DEFAULT_WORKPLAN_FILE.read_text(encoding="utf-8"))


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "plan.json"
    text = document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    return path


def _township_code(name: str) -> str:
    """The registry's code of the Wenling township called ``name`` (e.g. 石塘镇)."""
    matches = [j.code for j in default_registry().children_of(WENLING) if j.name == name]
    assert len(matches) == 1, name
    return matches[0]


# -- the packaged 2022 plan ----------------------------------------------------------------


def test_default_file_loads(plan: WorkPlan) -> None:
    assert plan.year == 2022
    assert plan.jurisdiction == WENLING
    assert plan.source == "温人大办〔2022〕20号"
    assert plan.title == "关于组织市人大代表分组监督2022年“一府两院”重点工作和民生实事项目的通知"
    assert plan.issued_by == "温岭市人大常委会办公室"
    assert str(plan.issued_on) == "2022-04-18"
    assert plan.min_group_activities == 3
    assert plan.hearing_month == 8
    assert str(plan.group_plan_due) == "2022-04-29"
    assert [(p.name, str(p.start), str(p.end)) for p in plan.phases] == [
        ("组织准备", "2022-04-01", "2022-04-30"),
        ("跟踪监督", "2022-04-30", "2022-11-30"),
        ("回顾总结", "2022-12-01", "2022-12-20"),
    ]


def test_file_is_readable_utf8_json() -> None:
    text = DEFAULT_WORKPLAN_FILE.read_text(encoding="utf-8")
    assert "太平街道代表小组" in text  # not \u-escaped
    assert text.startswith('{\n  "year"')  # indented


def test_sixteen_groups_one_per_wenling_township(plan: WorkPlan) -> None:
    registry = default_registry()
    townships = [j for j in registry.children_of(WENLING) if j.level is Level.TOWNSHIP]
    assert len(plan.groups) == 16
    assert sorted(g.township for g in plan.groups) == sorted(j.code for j in townships)
    for group in plan.groups:
        township = registry.get(group.township)
        assert township.parent == WENLING
        assert group.short_name == township.short_name
        assert group.name == f"{township.name}代表小组"


def test_groups_looked_up_by_township_name(plan: WorkPlan) -> None:
    assert plan.group_of_township(_township_code("太平街道")).id == "2022-dg-01"
    assert plan.group_of_township(_township_code("泽国镇")).short_name == "泽国"
    assert plan.group_of_township(_township_code("坞根镇")).id == "2022-dg-16"
    assert plan.group_of_township("331081999") is None


def test_every_group_has_committee_leader_and_items(plan: WorkPlan) -> None:
    for group in plan.groups:
        assert group.committee
        assert group.leader
        assert group.responsible_leader
        kinds = [item.kind for item in plan.items_of(group.id)]
        assert kinds.count(WorkItemKind.JURISDICTION_WORK) == 1
        assert len(kinds) >= 2


def test_item_counts(plan: WorkPlan) -> None:
    counts = {kind: len(plan.items_of_kind(kind)) for kind in WorkItemKind}
    assert counts == {
        WorkItemKind.LIVELIHOOD_PROJECT: 10,
        WorkItemKind.KEY_WORK: 20,
        WorkItemKind.SPECIAL_CAMPAIGN: 5,
        WorkItemKind.JURISDICTION_WORK: 16,
    }


def test_ten_livelihood_projects_with_four_quarters(plan: WorkPlan) -> None:
    projects = plan.items_of_kind(WorkItemKind.LIVELIHOOD_PROJECT)
    assert [p.id for p in projects] == [f"2022-lp-{n:02d}" for n in range(1, 11)]
    assert [p.title for p in projects] == [
        "健康惠民工程",
        "教育扩面提质",
        "社会养老服务",
        "关爱儿童成长",
        "交通出行便民",
        "提升公共安全",
        "全民健身工程",
        "农村饮水安全",
        "提升居住环境",
        "保障食品安全",
    ]
    for project in projects:
        assert [m.quarter for m in project.milestones] == [1, 2, 3, 4]
        assert all(m.target for m in project.milestones)
        assert project.lead_units
        assert len(project.groups) == 1


def test_key_work_has_lead_units(plan: WorkPlan) -> None:
    for item in plan.items_of_kind(WorkItemKind.KEY_WORK):
        assert item.lead_units, item.id
        assert not item.milestones


def test_spot_check_rural_drinking_water(plan: WorkPlan) -> None:
    project = plan.item("2022-lp-08")
    assert project.title == "农村饮水安全"
    assert project.lead_units == ["市农业农村和水利局"]
    assert project.co_units == ["市水务集团", "相关镇（街道）"]
    assert project.milestone(1) == Milestone(quarter=1, target="改造村级一户一表10个村。")
    assert project.milestone(3).target == "改造村级一户一表35个村。"
    assert project.milestone(4).target == "11月底前完成建设。"
    group = plan.group(project.groups[0])
    assert group.township == _township_code("石塘镇")
    assert (group.committee, group.leader) == ("农业农村工委", "狄德兴")


def test_spot_check_groups_and_items(plan: WorkPlan) -> None:
    taiping = plan.group("2022-dg-01")
    assert (taiping.name, taiping.responsible_leader, taiping.committee, taiping.leader) == (
        "太平街道代表小组",
        "金加树",
        "城建环资工委",
        "王振翔",
    )
    assert plan.items_of("2022-dg-01")[0].title == "提升居住环境"
    assert plan.item("2022-lp-09").lead_units == ["市住房和城乡建设局", "市农业农村和水利局", "市综合行政执法局"]

    binhai = plan.group_of_township(_township_code("滨海镇"))
    assert (binhai.committee, binhai.leader, binhai.responsible_leader) == ("人大办", "李海兵", "张钊")

    chengnan = plan.group_of_township(_township_code("城南镇"))
    assert [i.title for i in plan.items_of(chengnan.id)][:3] == [
        "教育扩面提质",
        "关爱儿童成长",
        "三问一评（危险化学品安全治理）",
    ]

    roads = plan.item("2022-kw-15")
    assert roads.lead_units == ["市交通运输局", "温岭联络线指挥部"]
    assert roads.groups == [plan.group_of_township(_township_code("温峤镇")).id]

    court = plan.item("2022-kw-02")
    assert court.lead_units == ["市人民法院"] and court.co_units == []

    sea = [i for i in plan.items_of_kind(WorkItemKind.SPECIAL_CAMPAIGN) if i.title == "检海行动"]
    assert len(sea) == 1
    assert sorted(sea[0].groups) == sorted(
        plan.group_of_township(_township_code(name)).id for name in ("松门镇", "石塘镇")
    )

    food = plan.item("2022-lp-10")
    assert food.milestone(4).target == "第（1）项：11月底前完成建设5家，开工2家"
    assert food.milestone(3).target.splitlines()[1].startswith("第（2）项：全面完成62家中小学")


def test_blank_unit_cell_is_documented(plan: WorkPlan) -> None:
    item = plan.item("2022-kw-20")
    assert item.title.startswith("探索发展强村公司")
    assert item.lead_units == ["市农业农村和水利局"]
    assert item.note


@pytest.mark.skipif(not SEED_004.exists(), reason="seed 004 not available")
def test_texts_appear_in_the_seed(plan: WorkPlan) -> None:
    seed = re.sub(r"\s+", "", SEED_004.read_text(encoding="utf-8"))
    texts = [plan.source, plan.title]
    for group in plan.groups:
        texts += [group.committee, group.leader, group.responsible_leader or ""]
    for item in plan.items:
        texts += [item.title, *item.lead_units, *item.co_units]
        texts += [line for m in item.milestones for line in m.target.splitlines()]
    missing = [t for t in texts if re.sub(r"\s+", "", t) not in seed]
    assert missing == []


# -- invalid files ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(WorkPlanError, match=r"nope\.json") as info:
        load_workplan(path)
    assert info.value.path == path


def test_bad_json(tmp_path: Path) -> None:
    path = _write(tmp_path, "{not json")
    with pytest.raises(WorkPlanError, match=re.escape(str(path))):
        load_workplan(path)


def test_unknown_item_reference(tmp_path: Path) -> None:
    document = _document()
    document["groups"][0]["items"].append("2022-kw-99")
    path = _write(tmp_path, document)
    with pytest.raises(WorkPlanError, match=r"plan\.json.*unknown work item '2022-kw-99'") as info:
        load_workplan(path)
    assert info.value.path == path


def test_unknown_group_reference(tmp_path: Path) -> None:
    document = _document()
    document["items"][0]["groups"].append("2022-dg-99")
    with pytest.raises(WorkPlanError, match="unknown deputy group '2022-dg-99'"):
        load_workplan(_write(tmp_path, document))


def test_one_sided_reference(tmp_path: Path) -> None:
    document = _document()
    document["items"][0]["groups"].append("2022-dg-02")  # 城东 does not list 健康惠民工程
    with pytest.raises(WorkPlanError, match="does not list the item"):
        load_workplan(_write(tmp_path, document))


def test_livelihood_project_without_lead_unit(tmp_path: Path) -> None:
    document = _document()
    document["items"][7]["lead_units"] = []
    with pytest.raises(WorkPlanError, match=r"2022-lp-08.*lead unit"):
        load_workplan(_write(tmp_path, document))


def test_bad_quarter_and_extra_field(tmp_path: Path) -> None:
    document = _document()
    document["items"][0]["milestones"][0]["quarter"] = 5
    with pytest.raises(WorkPlanError, match="quarter"):
        load_workplan(_write(tmp_path, document))
    document = _document()
    document["groups"][0]["phone"] = "123"
    with pytest.raises(WorkPlanError, match="phone"):
        load_workplan(_write(tmp_path, document))


def test_township_must_be_known_to_the_registry(tmp_path: Path) -> None:
    document = _document()
    document["groups"][0]["township"] = "331081099"
    with pytest.raises(WorkPlanError, match="331081099"):
        load_workplan(_write(tmp_path, document))


def test_duplicate_township(tmp_path: Path) -> None:
    document = _document()
    document["groups"][1]["township"] = document["groups"][0]["township"]
    with pytest.raises(WorkPlanError, match="more than one deputy group"):
        load_workplan(_write(tmp_path, document))


def test_models_are_frozen(plan: WorkPlan) -> None:
    with pytest.raises(ValidationError):
        plan.groups[0].leader = "someone"  # type: ignore[misc]
