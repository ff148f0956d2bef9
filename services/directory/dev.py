"""The people of a development level (``DUBAN_DEV_SIGNIN=true``, as ``duban up`` runs): one of
each kind, with the ids the README's walkthrough uses, so that every role can sign in and act.

At each level ``<code>``: the unit ``unit-<code>`` (its staff member ``unit-staff-<code>``),
the liaison station ``station-<code>`` (its staff member ``liaison_station-<code>``), the
deputy ``deputy-<code>`` (王代表, of that station), committee staff ``committee-<code>``, a
leader ``leader-<code>``, an administrator ``admin-<code>`` and an operator ``operator-<code>``.
Where the level has a 政协 (the prefecture, a county): the sector ``sector-<code>`` (科学技术界), its
member ``member-<code>`` (王委员, 政协委员) and the 提案委's staff ``cppcc-committee-<code>`` (林提案).
"""

from __future__ import annotations

from typing import Any

from contracts.bodies import Body
from contracts.jurisdictions import Jurisdiction

#: The congress of a level's own deputies, by the level's kind.
CONGRESS = {"prefecture": "city", "county": "county", "township": "township"}


def dev_directory(level: Jurisdiction) -> dict[str, list[dict[str, Any]]]:
    code, name = level.code, level.name
    unit = "村镇建设办公室" if level.level.value == "township" else "交通运输局"
    mobile = lambda n: f"1380{code[-4:]}{n:03d}"[:11]  # noqa: E731 - made up, never dialled
    person = lambda pid, kind, who, n, orgs=(), **more: {  # noqa: E731
        "id": pid,
        "kind": kind,
        "name": who,
        "orgs": list(orgs),
        "mobile": mobile(n),
        **({"congress": CONGRESS[level.level.value]} if kind == "deputy" else {}),
        **more,
    }
    cppcc = (
        {
            "orgs": [{"id": f"sector-{code}", "kind": "sector", "name": "科学技术界"}],
            "people": [
                person(f"member-{code}", "member", "王委员", 8, [f"sector-{code}"]),
                person(f"cppcc-committee-{code}", "committee_staff", "林提案", 9, body=Body.cppcc.value),
            ],
        }
        if Body.cppcc in level.bodies
        else {"orgs": [], "people": []}
    )
    return {
        "orgs": [
            {"id": f"unit-{code}", "kind": "unit", "name": f"{name}{unit}"},
            {"id": f"station-{code}", "kind": "station", "name": f"{name}人大代表联络站"},
            *cppcc["orgs"],
        ],
        "people": [
            person(f"committee-{code}", "committee_staff", "陈工委", 1),
            person(f"liaison_station-{code}", "station_staff", "李站长", 2, [f"station-{code}"]),
            person(f"deputy-{code}", "deputy", "王代表", 3, [f"station-{code}"]),
            person(f"unit-staff-{code}", "unit_staff", "赵办理", 4, [f"unit-{code}"]),
            person(f"leader-{code}", "leader", "周主任", 5),
            person(f"admin-{code}", "admin", "系统管理员", 6),
            person(f"operator-{code}", "operator", "运维值班员", 7),
            *cppcc["people"],
        ],
    }
