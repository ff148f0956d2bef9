"""Possible duplicates (可能重复的事项): character n-grams, because Chinese has no spaces.

Two matters are compared by the **Dice coefficient** of their character bigrams,
``2·|A∩B| / (|A|+|B|)``, on the title and on the content separately, and the two are combined
as ``0.7·title + 0.3·content``. Why these choices:

* Bigrams of characters are the usual unit for Chinese without a word segmenter: most words
  are two characters long, and a shared bigram is rarely chance.
* Dice rather than Jaccard: Dice is kinder to a short title that is a near copy of a longer
  one ("…道路破损" against "…道路破损严重"), and ranks the same way otherwise.
* The title (案由) says what the matter is about, while contents are long and share many common
  bigrams (的、是、我们) by chance; so the title weighs more and the content only breaks ties.
  Titles lose the boilerplate of official writing first ("关于……的建议/问题"), which otherwise
  makes every pair of titles look alike.
* Only the first ``CONTENT_CHARS`` characters of a content are compared: the gist of a matter is
  at its start, and it keeps the cost of a check bounded however long the texts are.

It is a hint for the staff who review matters (审查), never a decision: merging stays theirs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.runtime.read.db import connected

from .domain import OPEN_FOR_REVIEW
from .projections import matters

TITLE_WEIGHT = 0.7
CONTENT_WEIGHT = 1.0 - TITLE_WEIGHT
CONTENT_CHARS = 2000
#: Statuses of the matters that can still be merged into (待审查, 已立案).
OPEN_STATUSES = tuple(s.value for s in OPEN_FOR_REVIEW)

# 关于……的建议 / ……问题: the frame of an official title, not what it is about.
_TITLE_FRAME = re.compile(r"^(关于|对于)|(的)?(意见建议|意见和建议|建议|问题|提案|议案|诉求|意见|请求)$")
_IN_CHUNK = 500


def normalise(text: str) -> str:
    """Full-width forms folded (NFKC), latin lower-cased, whitespace and punctuation removed."""
    folded = unicodedata.normalize("NFKC", text or "").lower()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] not in "PSZC")


def ngrams(text: str, n: int = 2) -> set[str]:
    """The character n-grams of ``text`` after :func:`normalise`; a text shorter than ``n`` is
    its own single gram (so that "路" still matches "路")."""
    clean = normalise(text)
    if len(clean) <= n:
        return {clean} if clean else set()
    return {clean[i : i + n] for i in range(len(clean) - n + 1)}


def title_ngrams(title: str) -> set[str]:
    """Bigrams of a title without its official frame (关于…的建议); the frame alone is kept."""
    clean = normalise(title)
    stripped = _TITLE_FRAME.sub("", clean)
    return ngrams(stripped or clean)


def content_ngrams(content: str) -> set[str]:
    return ngrams((content or "")[:CONTENT_CHARS])


def dice(a: set[str], b: set[str]) -> float:
    """``2·|A∩B| / (|A|+|B|)``; 0 when both are empty."""
    if not a and not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


class MatterText(NamedTuple):
    """What is compared of a matter: its title and its content."""

    title: str
    content: str


def similarity(a: MatterText | tuple[str, str], b: MatterText | tuple[str, str]) -> float:
    """How alike two matters read, from 0 (nothing shared) to 1 (same title and content)."""
    (title_a, content_a), (title_b, content_b) = a, b
    title_score = dice(title_ngrams(title_a), title_ngrams(title_b))
    content_score = dice(content_ngrams(content_a), content_ngrams(content_b))
    return TITLE_WEIGHT * title_score + CONTENT_WEIGHT * content_score


async def possible_duplicates(
    conn: AsyncEngine | AsyncConnection,
    *,
    jurisdiction: str,
    title: str,
    content: str,
    exclude_id: str | None = None,
    threshold: float = 0.35,
    limit: int = 10,
) -> list[dict[str, Any]]:
    """The open matters (待审查 or 已立案) of ``jurisdiction`` that read like this one, best first:
    ``[{id, title, status, registration_no, score}]`` with ``score >= threshold``.

    Titles of all open matters are scored first; contents are read and compared only for those
    whose title score leaves the threshold within reach, which for a few thousand open matters
    means one light query and, usually, one small one.
    """
    wanted_title = title_ngrams(title)
    wanted_content = content_ngrams(content)
    # A candidate can reach at most TITLE_WEIGHT·t + CONTENT_WEIGHT (its content identical).
    title_floor = (threshold - CONTENT_WEIGHT) / TITLE_WEIGHT
    query = select(matters.c.id, matters.c.title, matters.c.status, matters.c.registration_no).where(
        matters.c.jurisdiction == jurisdiction, matters.c.status.in_(OPEN_STATUSES)
    )
    if exclude_id is not None:
        query = query.where(matters.c.id != exclude_id)
    async with connected(conn) as db:
        candidates: dict[str, dict[str, Any]] = {}
        for row in await db.execute(query):
            title_score = dice(wanted_title, title_ngrams(row.title or ""))
            if title_score >= title_floor:
                candidates[row.id] = {**row._mapping, "title_score": title_score}
        for chunk in _chunks(list(candidates), _IN_CHUNK):
            excerpt = func.substr(matters.c.content, 1, CONTENT_CHARS).label("excerpt")
            for row in await db.execute(select(matters.c.id, excerpt).where(matters.c.id.in_(chunk))):
                found = candidates[row.id]
                found["score"] = TITLE_WEIGHT * found.pop("title_score") + CONTENT_WEIGHT * dice(
                    wanted_content, ngrams(row.excerpt or "")
                )
    scored = [c for c in candidates.values() if c.get("score", 0.0) >= threshold]
    scored.sort(key=lambda c: (-c["score"], c["id"]))
    return [{**c, "score": round(c["score"], 4)} for c in scored[:limit]]


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
