"""The two bodies (机关) of a level: the people's congress (人大) and the CPPCC (政协).

A county and the prefecture each have a 人大常委会 and a 政协; a 镇 or 乡 has a 人大主席团 and a
街道 the county standing committee's 街道人大工委, and neither has a 政协 (DOMAIN.md, "Two bodies
at a level"). One set of services serves both bodies of a level; every matter, case and
evaluation belongs to one of them, which decides who raises it, whose staff review it, its
numbering book, the evaluation it gets and the name everything about it is signed with. The
bodies' organ names at each level come from the jurisdiction data (``contracts/jurisdictions.py``).
"""

from __future__ import annotations

from enum import StrEnum


class Body(StrEnum):
    congress = "congress"  # 人大
    cppcc = "cppcc"  # 政协


BODY_NAMES = {Body.congress: "人大", Body.cppcc: "政协"}

#: The kinds (``contracts.intake.MatterKind`` values) each body's members raise: 代表 议案 and 建议,
#: 委员 and 界别 提案; both collect problems and enterprises' demands.
BODY_KINDS: dict[Body, frozenset[str]] = {
    Body.congress: frozenset({"motion", "suggestion", "problem", "demand"}),
    Body.cppcc: frozenset({"proposal", "problem", "demand"}),
}


def default_body(kind: str) -> Body:
    """The body a matter of ``kind`` belongs to when nothing says otherwise (a 提案 the CPPCC's,
    anything else the congress's): how matters stored before bodies existed are read."""
    return Body.cppcc if str(kind) == "proposal" else Body.congress


def kind_allowed(body: Body | str, kind: str) -> bool:
    return str(kind) in BODY_KINDS[Body(body)]
