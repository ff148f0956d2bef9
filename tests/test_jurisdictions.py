"""Tests of the jurisdiction registry (contracts.jurisdictions)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contracts.jurisdictions import (
    ENV_EXTRA_FILES,
    Jurisdiction,
    JurisdictionRegistry,
    Level,
    UnknownJurisdiction,
    default_registry,
    load_registry,
)

TAIZHOU = "331000"
WENLING = "331081"
LINHAI = "331082"
ZEGUO = "331081100"


def _township(code: str, name: str, parent: str) -> dict[str, object]:
    return {"code": code, "name": name, "short_name": name[:-1], "level": "township", "parent": parent}


def _write(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"version": "test", "jurisdictions": entries}, ensure_ascii=False), encoding="utf-8")
    return path


LINHAI_TOWNSHIPS = [
    _township("331082001", "古城街道", LINHAI),
    _township("331082100", "杜桥镇", LINHAI),
]


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

    townships = registry.by_level(Level.TOWNSHIP)
    assert len(townships) == 16
    assert all(j.parent == WENLING for j in townships)
    assert registry.children_of(WENLING) == townships
    assert sum(j.name.endswith("街道") for j in townships) == 5
    assert sum(j.name.endswith("镇") for j in townships) == 11
    assert registry.get("331081001").name == "太平街道"
    assert registry.get("331081110").name == "坞根镇"
    assert len(registry) == 1 + 9 + 16
    assert [j.code for j in registry] == sorted(j.code for j in registry)


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


def test_extra_file_adds_linhai_townships(no_env: None, tmp_path: Path) -> None:
    extra = _write(tmp_path / "linhai.json", LINHAI_TOWNSHIPS)
    registry = load_registry([extra])
    assert [j.code for j in registry.children_of(LINHAI)] == ["331082001", "331082100"]
    assert [j.name for j in registry.path("331082100")] == ["台州市", "临海市", "杜桥镇"]
    assert len(registry.by_level(Level.TOWNSHIP)) == 16 + 2
    # Repeating a built-in entry unchanged is allowed.
    same = _write(tmp_path / "same.json", [registry.get(ZEGUO).model_dump(mode="json")])
    assert len(load_registry([str(extra), str(same)])) == len(registry)


def test_merged_with(registry: JurisdictionRegistry) -> None:
    merged = registry.merged_with(LINHAI_TOWNSHIPS)
    assert [j.code for j in merged.children_of(LINHAI)] == ["331082001", "331082100"]
    assert registry.children_of(LINHAI) == []  # the original is unchanged
    again = merged.merged_with([Jurisdiction.model_validate(LINHAI_TOWNSHIPS[0])])
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
            [_township("331082101", "某镇", WENLING)],
            "331082101",
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
            [{**_township("331082100", "杜桥镇", LINHAI), "level": "county"}],
            "331082100",
            "6 digits",
            id="county-with-township-code",
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
    first = _write(tmp_path / "a.json", LINHAI_TOWNSHIPS[:1])
    second = _write(tmp_path / "b.json", LINHAI_TOWNSHIPS[1:])
    monkeypatch.setenv(ENV_EXTRA_FILES, os.pathsep.join([str(first), "", str(second)]))
    registry = load_registry()
    assert [j.code for j in registry.children_of(LINHAI)] == ["331082001", "331082100"]
    # Explicit files take precedence over the environment variable.
    assert [j.code for j in load_registry([first]).children_of(LINHAI)] == ["331082001"]

    default_registry.cache_clear()
    try:
        cached = default_registry()
        assert "331082100" in cached
        assert default_registry() is cached
    finally:
        default_registry.cache_clear()
