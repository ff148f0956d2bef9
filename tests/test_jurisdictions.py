"""Tests of the jurisdiction registry (contracts.jurisdictions)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contracts.bodies import Body
from contracts.jurisdictions import (
    ENV_EXTRA_FILES,
    Jurisdiction,
    JurisdictionRegistry,
    Level,
    NoSuchOrgan,
    Organ,
    UnknownJurisdiction,
    default_registry,
    load_registry,
)

TAIZHOU = "331000"
WENLING = "331081"
LINHAI = "331082"
ZEGUO = "331081100"
TAIPING = "331081001"  # 太平街道
COUNTY_TOWNSHIPS = {  # the number of 街道, 镇 and 乡 of each county
    "331002": (8, 1, 0),  # 椒江区
    "331003": (8, 5, 6),  # 黄岩区
    "331004": (6, 4, 0),  # 路桥区
    "331022": (3, 6, 1),  # 三门县
    "331023": (3, 7, 5),  # 天台县
    "331024": (3, 7, 10),  # 仙居县
    "331081": (5, 11, 0),  # 温岭市
    "331082": (5, 14, 0),  # 临海市
    "331083": (3, 6, 2),  # 玉环市
}
SUFFIXES = ("街道", "镇", "乡")
CODE_RANGES = {"街道": range(1, 100), "镇": range(100, 200), "乡": range(200, 300)}


def _township(code: str, name: str, parent: str) -> dict[str, object]:
    """A township entry of the older shape (no kind, no organs)."""
    short = next((name.removesuffix(suffix) for suffix in SUFFIXES if name.endswith(suffix)), name[:-1])
    return {"code": code, "name": name, "short_name": short, "level": "township", "parent": parent}


def _write(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"version": "test", "jurisdictions": entries}, ensure_ascii=False), encoding="utf-8")
    return path


#: Two built-in townships of 临海市, in the older shape: repeating them in an extra file changes nothing.
LINHAI_TOWNSHIPS = [
    _township("331082001", "古城街道", LINHAI),
    _township("331082100", "杜桥镇", LINHAI),
]
#: A township that is not built in (a made-up code and name), for extra files that add one.
NEW_TOWNSHIP = _township("331082199", "新设镇", LINHAI)
LINHAI_BUILTIN = [f"331082{n:03d}" for n in (*range(1, 6), *range(100, 114))]


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_EXTRA_FILES, raising=False)


@pytest.fixture
def registry(no_env: None) -> JurisdictionRegistry:
    return load_registry()


def test_builtin_registry_contents(registry: JurisdictionRegistry) -> None:
    prefectures = registry.by_level(Level.PREFECTURE)
    assert [j.code for j in prefectures] == [TAIZHOU]
    assert prefectures[0].name == "台州市" and prefectures[0].short_name == "台州"
    assert prefectures[0].parent is None

    counties = registry.by_level("county")
    assert {j.name for j in counties} == {
        "椒江区", "黄岩区", "路桥区", "三门县", "天台县", "仙居县", "温岭市", "临海市", "玉环市",
    }  # fmt: skip
    assert all(j.parent == TAIZHOU for j in counties)
    assert registry.children_of(TAIZHOU) == counties

    assert prefectures[0].kind == "地级市"
    assert {j.name: j.kind for j in counties} == {
        "椒江区": "市辖区", "黄岩区": "市辖区", "路桥区": "市辖区", "三门县": "县", "天台县": "县", "仙居县": "县",
        "温岭市": "县级市", "临海市": "县级市", "玉环市": "县级市",
    }  # fmt: skip

    townships = registry.by_level(Level.TOWNSHIP)
    assert len(townships) == sum(sum(counts) for counts in COUNTY_TOWNSHIPS.values()) == 129
    wenling = registry.children_of(WENLING)
    assert [j.code for j in wenling] == [f"331081{n:03d}" for n in (*range(1, 6), *range(100, 111))]  # unchanged
    assert registry.get("331081001").name == "太平街道"
    assert registry.get("331081110").name == "坞根镇"
    assert [j.code for j in registry.children_of(LINHAI)] == LINHAI_BUILTIN
    assert len(registry) == 1 + 9 + 129
    assert [j.code for j in registry] == sorted(j.code for j in registry)


def test_every_county_has_its_townships(registry: JurisdictionRegistry) -> None:
    counties = registry.by_level(Level.COUNTY)
    assert {j.code for j in counties} == set(COUNTY_TOWNSHIPS)
    for county in counties:
        townships = registry.children_of(county.code)
        counts = tuple(sum(j.kind == kind for j in townships) for kind in SUFFIXES)
        assert counts == COUNTY_TOWNSHIPS[county.code], county.name
    names = {j.name for j in registry.by_level(Level.TOWNSHIP)}
    assert {"大陈镇", "海门街道", "屿头乡", "金清镇", "蛇蟠乡", "三州乡", "双庙乡", "白水洋镇", "鸡山乡"} <= names


def test_every_township_kind_matches_its_code_range_and_name(registry: JurisdictionRegistry) -> None:
    for township in registry.by_level(Level.TOWNSHIP):
        assert township.name.endswith(township.kind), township
        assert int(township.code[6:]) in CODE_RANGES[township.kind], township
        assert township.short_name == township.name.removesuffix(township.kind), township
        assert township.code.startswith(township.parent or "-")


def test_builtin_json_writes_kind_and_organs_out_and_the_derived_defaults_agree() -> None:
    """The data is the source: every built-in entry gives its kind and organs; what an entry of the
    older shape derives from its name and level is the same, for every one of them."""
    path = Path(__file__).resolve().parents[1] / "contracts" / "data" / "jurisdictions.json"
    entries = json.loads(path.read_text(encoding="utf-8"))["jurisdictions"]
    assert len(entries) == 139
    for entry in entries:
        assert entry["kind"] and entry["organs"], entry["code"]
        explicit = Jurisdiction.model_validate(entry)
        old_shape = {key: value for key, value in entry.items() if key not in ("kind", "organs")}
        assert Jurisdiction.model_validate(old_shape) == explicit, entry["code"]


def test_builtin_json_has_version_and_note() -> None:
    path = Path(__file__).resolve().parents[1] / "contracts" / "data" / "jurisdictions.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["version"]
    assert "stable" in document["note"]


def test_hierarchy_of_zeguo(registry: JurisdictionRegistry) -> None:
    zeguo = registry.get(ZEGUO)
    assert zeguo == Jurisdiction(code=ZEGUO, name="泽国镇", short_name="泽国", level=Level.TOWNSHIP, parent=WENLING)
    assert ZEGUO in registry
    assert registry.parent_of(ZEGUO) == registry.get(WENLING)
    assert registry.parent_of(TAIZHOU) is None
    assert registry.children_of(ZEGUO) == []
    assert [j.code for j in registry.ancestors_of(ZEGUO)] == [WENLING, TAIZHOU]
    assert [j.short_name for j in registry.path(ZEGUO)] == ["台州", "温岭", "泽国"]
    assert registry.path(TAIZHOU) == [registry.get(TAIZHOU)]
    assert registry.is_ancestor(WENLING, ZEGUO)
    assert registry.is_ancestor(TAIZHOU, ZEGUO)
    assert not registry.is_ancestor(ZEGUO, ZEGUO)
    assert not registry.is_ancestor(LINHAI, ZEGUO)
    assert not registry.is_ancestor(ZEGUO, WENLING)


def test_unknown_code(registry: JurisdictionRegistry) -> None:
    assert "999999" not in registry
    assert 331000 not in registry
    with pytest.raises(UnknownJurisdiction, match="999999") as info:
        registry.get("999999")
    assert isinstance(info.value, KeyError)
    assert info.value.code == "999999"
    for method in (registry.parent_of, registry.children_of, registry.ancestors_of, registry.path):
        with pytest.raises(UnknownJurisdiction, match="331081999"):
            method("331081999")
    with pytest.raises(UnknownJurisdiction, match="331099"):
        registry.is_ancestor("331099", ZEGUO)


def test_jurisdiction_model_is_frozen_and_validates_code() -> None:
    zeguo = Jurisdiction(code=ZEGUO, name="泽国镇", short_name="泽国", level="township", parent=WENLING)
    with pytest.raises(ValueError):
        zeguo.name = "x"  # type: ignore[misc]
    for bad in ("33108", "3310811", "33108110a", "3310811000"):
        with pytest.raises(ValueError):
            Jurisdiction(code=bad, name="x", short_name="x", level="township", parent=WENLING)


def test_extra_file_adds_a_township(no_env: None, tmp_path: Path) -> None:
    extra = _write(tmp_path / "linhai.json", [NEW_TOWNSHIP])
    registry = load_registry([extra])
    assert [j.code for j in registry.children_of(LINHAI)] == [*LINHAI_BUILTIN, "331082199"]
    assert [j.name for j in registry.path("331082199")] == ["台州市", "临海市", "新设镇"]
    assert len(registry.by_level(Level.TOWNSHIP)) == 129 + 1
    # Repeating built-in entries unchanged is allowed: in the older shape (古城街道, 杜桥镇, with the
    # codes the chaos test's extra file uses) as in the new one.
    old_shape = _write(tmp_path / "old.json", LINHAI_TOWNSHIPS)
    same = _write(tmp_path / "same.json", [registry.get(ZEGUO).model_dump(mode="json")])
    assert len(load_registry([str(extra), str(old_shape), str(same)])) == len(registry)
    assert load_registry([old_shape]).get("331082100") == load_registry([]).get("331082100")


def test_an_extra_file_of_the_older_shape_gets_kind_and_organs(no_env: None, tmp_path: Path) -> None:
    entries = [NEW_TOWNSHIP, _township("331082299", "新设乡", LINHAI), _township("331082099", "新设街道", LINHAI)]
    registry = load_registry([_write(tmp_path / "old.json", entries)])
    town, xiang, street = (registry.get(code) for code in ("331082199", "331082299", "331082099"))
    assert (town.kind, xiang.kind, street.kind) == ("镇", "乡", "街道")
    assert registry.organ("331082199", Body.congress) == Organ(
        body=Body.congress, name="新设镇人大主席团", short_name="新设镇人大主席团", type="presidium"
    )
    assert registry.organ("331082299", "congress").name == "新设乡人大主席团"
    assert registry.organ("331082099", Body.congress).type == "working_committee"
    assert registry.organ("331082099", Body.congress).name == "新设街道人大工委"
    for code in ("331082199", "331082299", "331082099"):
        assert registry.bodies_of(code) == [Body.congress]


def test_merged_with(registry: JurisdictionRegistry) -> None:
    merged = registry.merged_with([NEW_TOWNSHIP])
    assert [j.code for j in merged.children_of(LINHAI)] == [*LINHAI_BUILTIN, "331082199"]
    assert "331082199" not in registry  # the original is unchanged
    again = merged.merged_with([Jurisdiction.model_validate(NEW_TOWNSHIP), *LINHAI_TOWNSHIPS])
    assert len(again) == len(merged)
    with pytest.raises(ValueError, match="331082100"):
        merged.merged_with([{**LINHAI_TOWNSHIPS[1], "name": "别的镇"}])


@pytest.mark.parametrize(
    ("entries", "code", "reason"),
    [
        pytest.param([_township("331081100001", "泽国镇下", ZEGUO)], "331081100001", "pattern", id="bad-code-pattern"),
        pytest.param(
            [{**_township("331081200", "某镇", ZEGUO)}], "331081200", "must be a county", id="parent-township"
        ),
        pytest.param([_township("331089100", "某镇", "331089")], "331089100", "unknown parent", id="no-parent"),
        pytest.param(
            [{**_township(ZEGUO, "泽国镇", WENLING), "short_name": "泽国新"}],
            ZEGUO,
            "defined differently",
            id="conflicting-redefinition",
        ),
        pytest.param(
            [_township("331082199", "某镇", WENLING)],
            "331082199",
            "must start with",
            id="code-not-under-county",
        ),
        pytest.param(
            [{"code": "331099", "name": "某县", "short_name": "某", "level": "county", "parent": WENLING}],
            "331099",
            "must be a prefecture",
            id="county-under-county",
        ),
        pytest.param(
            [
                {
                    "code": "330000",
                    "name": "浙江省",
                    "short_name": "浙江",
                    "level": "prefecture",
                    "kind": "地级市",  # the name does not say
                    "parent": TAIZHOU,
                }
            ],
            "330000",
            "has no parent",
            id="prefecture-with-parent",
        ),
        pytest.param(
            [{"code": "331099", "name": "某县", "short_name": "某", "level": "county", "parent": None}],
            "331099",
            "needs a prefecture parent",
            id="county-without-parent",
        ),
        pytest.param(
            [{**_township("331082199", "某镇", LINHAI), "name": "某县", "level": "county"}],
            "331082199",
            "6 digits",
            id="county-with-township-code",
        ),
        pytest.param([_township("331082150", "某乡", LINHAI)], "331082150", "200-299", id="xiang-in-zhen-range"),
        pytest.param([_township("331082001", "某镇", LINHAI)], "331082001", "defined differently", id="taken-code"),
        pytest.param(
            [{**_township("331082099", "某街道", LINHAI), "kind": "镇"}],
            "331082099",
            "the name says",
            id="kind-vs-name",
        ),
        pytest.param([{**_township("331082199", "某处", LINHAI)}], "331082199", "kind", id="kind-not-told-by-the-name"),
        pytest.param(
            [
                {
                    **LINHAI_TOWNSHIPS[1],
                    "organs": [
                        {"body": "congress", "name": "杜桥镇人大", "short_name": "杜桥镇人大", "type": "presidium"}
                    ],
                }
            ],
            "331082100",
            "defined differently",
            id="conflicting-organ-name",
        ),
    ],
)
def test_bad_extra_file(no_env: None, tmp_path: Path, entries: list[dict[str, object]], code: str, reason: str) -> None:
    bad = _write(tmp_path / "bad.json", entries)
    with pytest.raises(ValueError, match=reason) as info:
        load_registry([bad])
    assert code in str(info.value)


def test_duplicate_code_in_constructor() -> None:
    taizhou = Jurisdiction(code=TAIZHOU, name="台州市", short_name="台州", level="prefecture")
    with pytest.raises(ValueError, match=TAIZHOU):
        JurisdictionRegistry([taizhou, taizhou])


def test_malformed_file(no_env: None, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json"):
        load_registry([broken])
    wrong_shape = tmp_path / "list.json"
    wrong_shape.write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match="jurisdictions"):
        load_registry([wrong_shape])


def test_env_var_route(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = _write(tmp_path / "a.json", [*LINHAI_TOWNSHIPS, NEW_TOWNSHIP])
    second = _write(tmp_path / "b.json", [_township("331082299", "新设乡", LINHAI)])
    monkeypatch.setenv(ENV_EXTRA_FILES, os.pathsep.join([str(first), "", str(second)]))
    registry = load_registry()
    assert [j.code for j in registry.children_of(LINHAI)][-2:] == ["331082199", "331082299"]
    # Explicit files take precedence over the environment variable.
    assert [j.code for j in load_registry([first]).children_of(LINHAI)][-1] == "331082199"
    assert "331082299" not in load_registry([first])

    default_registry.cache_clear()
    try:
        cached = default_registry()
        assert "331082299" in cached
        assert default_registry() is cached
    finally:
        default_registry.cache_clear()


# -- the organs of each level's bodies ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "congress", "cppcc"),
    [
        pytest.param(
            TAIZHOU, ("台州市人大常委会", "台州市人大常委会"), ("政协台州市委员会", "台州市政协"), id="台州市"
        ),
        pytest.param(
            WENLING, ("温岭市人大常委会", "温岭市人大常委会"), ("政协温岭市委员会", "温岭市政协"), id="温岭市"
        ),
        pytest.param(
            "331002", ("椒江区人大常委会", "椒江区人大常委会"), ("政协椒江区委员会", "椒江区政协"), id="椒江区"
        ),
        pytest.param(
            "331024", ("仙居县人大常委会", "仙居县人大常委会"), ("政协仙居县委员会", "仙居县政协"), id="仙居县"
        ),
    ],
)
def test_organs_of_the_prefecture_and_a_county(
    registry: JurisdictionRegistry, code: str, congress: tuple[str, str], cppcc: tuple[str, str]
) -> None:
    assert registry.bodies_of(code) == [Body.congress, Body.cppcc]
    standing = registry.organ(code, Body.congress)
    assert (standing.name, standing.short_name, standing.type) == (*congress, "standing_committee")
    committee = registry.organ(code, "cppcc")
    assert (committee.name, committee.short_name, committee.type) == (*cppcc, "cppcc_committee")
    assert registry.get(code).organs == (standing, committee)


@pytest.mark.parametrize(
    ("code", "name", "organ_type"),
    [
        pytest.param(ZEGUO, "泽国镇人大主席团", "presidium", id="镇"),
        pytest.param("331024209", "双庙乡人大主席团", "presidium", id="乡-仙居"),
        pytest.param("331023200", "三州乡人大主席团", "presidium", id="乡-天台"),
        pytest.param(TAIPING, "太平街道人大工委", "working_committee", id="街道"),
        pytest.param("331002100", "大陈镇人大主席团", "presidium", id="大陈镇"),
    ],
)
def test_organ_of_a_township(registry: JurisdictionRegistry, code: str, name: str, organ_type: str) -> None:
    assert registry.bodies_of(code) == [Body.congress]
    organ = registry.organ(code, Body.congress)
    assert organ == Organ(body=Body.congress, name=name, short_name=name, type=organ_type)  # type: ignore[arg-type]
    with pytest.raises(NoSuchOrgan):
        registry.organ(code, Body.cppcc)


def test_a_township_has_no_cppcc(registry: JurisdictionRegistry) -> None:
    with pytest.raises(NoSuchOrgan) as info:
        registry.organ("331081100", Body.cppcc)
    assert isinstance(info.value, LookupError) and not isinstance(info.value, KeyError)
    assert str(info.value) == "泽国镇没有政协"
    assert (info.value.code, info.value.body) == (ZEGUO, Body.cppcc)
    with pytest.raises(NoSuchOrgan, match=r"^太平街道没有政协$"):
        registry.organ(TAIPING, "cppcc")
    with pytest.raises(UnknownJurisdiction):
        registry.organ("331081999", Body.congress)
    with pytest.raises(UnknownJurisdiction):
        registry.bodies_of("331081999")
    with pytest.raises(ValueError):
        registry.organ(ZEGUO, "parliament")


def test_organ_model_is_frozen_and_its_type_fits_its_body() -> None:
    organ = Organ(body=Body.cppcc, name="政协温岭市委员会", short_name="温岭市政协", type="cppcc_committee")
    with pytest.raises(ValueError):
        organ.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Organ(body=Body.cppcc, name="x", short_name="x", type="presidium")
    with pytest.raises(ValueError):
        Organ(body=Body.congress, name="x", short_name="x", type="cppcc_committee")
    with pytest.raises(ValueError):
        Organ.model_validate({**organ.model_dump(), "seal": "x"})  # extra fields are refused


def _organ(body: str, name: str, organ_type: str) -> dict[str, str]:
    return {"body": body, "name": name, "short_name": name, "type": organ_type}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        pytest.param(
            {
                **_township(ZEGUO, "泽国镇", WENLING),
                "organs": [_organ("congress", "泽国镇人大主席团", "presidium"), _organ("congress", "x", "presidium")],
            },
            "at most one organ per body",
            id="two-congress-organs",
        ),
        pytest.param(
            {
                **_township(ZEGUO, "泽国镇", WENLING),
                "organs": [
                    _organ("congress", "泽国镇人大主席团", "presidium"),
                    _organ("cppcc", "政协泽国镇委员会", "cppcc_committee"),
                ],
            },
            "a township has no CPPCC",
            id="township-cppcc",
        ),
        pytest.param(
            {
                **_township(ZEGUO, "泽国镇", WENLING),
                "organs": [_organ("congress", "泽国镇人大工委", "working_committee")],
            },
            "presidium",
            id="town-with-working-committee",
        ),
        pytest.param(
            {
                **_township(TAIPING, "太平街道", WENLING),
                "organs": [_organ("congress", "太平街道人大主席团", "presidium")],
            },
            "working_committee",
            id="street-with-presidium",
        ),
        pytest.param(
            {**_township(ZEGUO, "泽国镇", WENLING), "organs": [_organ("cppcc", "政协", "cppcc_committee")]},
            "no organ of the congress",
            id="no-congress-organ",
        ),
        pytest.param(
            {"code": WENLING, "name": "温岭市", "short_name": "温岭", "level": "county", "kind": "镇"},
            "a county is a",
            id="kind-of-another-level",
        ),
        pytest.param(
            {"code": WENLING, "name": "温岭市", "short_name": "温岭", "level": "county", "kind": "县"},
            "the name says 县级市",
            id="kind-against-the-name",
        ),
        pytest.param({**_township(ZEGUO, "泽国镇", WENLING), "kind": "村"}, "kind", id="unknown-kind"),
    ],
)
def test_bad_kind_or_organs(entry: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Jurisdiction.model_validate(entry)


def test_organs_are_kept_congress_first_and_explicit_kind_is_taken(no_env: None) -> None:
    cppcc = _organ("cppcc", "政协温岭市委员会", "cppcc_committee") | {"short_name": "温岭市政协"}
    entry = {
        "code": WENLING,
        "name": "温岭市",
        "short_name": "温岭",
        "level": "county",
        "parent": TAIZHOU,
        "organs": [cppcc, _organ("congress", "温岭市人大常委会", "standing_committee")],
    }
    wenling = Jurisdiction.model_validate(entry)
    assert wenling.bodies == [Body.congress, Body.cppcc]
    assert wenling == load_registry([]).get(WENLING)
    # A name that does not tell the kind needs it given; its organs are then derived from it.
    office = Jurisdiction.model_validate(
        {
            "code": "331082098",
            "name": "某办事处",
            "short_name": "某",
            "level": "township",
            "parent": LINHAI,
            "kind": "街道",
        }
    )
    assert office.organ(Body.congress).name == "某办事处人大工委"
