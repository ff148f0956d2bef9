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

Finding the candidates. Scoring every open matter of the level costs a submission more the more
open matters there are (issue 21 measured 7 ms with none, 27 ms with 720). So the read model keeps
an index of the open matters' titles (``projections.title_grams``: a row per gram and matter;
``title_texts``: each title as its grams are taken; ``title_gram_counts``: how many open matters
have each gram), and :func:`possible_duplicates` scores only the matters the index puts first,
found in one statement:

* A matter can reach the threshold only if its title shares a gram with the new one (its title
  score must reach ``title_floor`` > 0, the content adding at most ``CONTENT_WEIGHT``), so every
  matter that can be listed is in the lists of the new title's grams.
* Those lists are read rarest gram first, up to ``POSTINGS`` rows: the most common grams of a
  level's titles (解决, 问题, the township's own name) have tens of thousands of matters at
  100,000 and say least about which matter this is. A matter sharing any gram read is found;
  only one sharing nothing but the grams left out is missed.
* Of the matters found, the ``FOUND`` whose title score can be highest are kept: each has the
  grams it shares among those read, and the grams left out count as shared as far as its title
  has grams left, which bounds its Dice coefficient from above.
* Their title scores are made exact (the grams left out that their titles have, read from their
  texts), and the ``CANDIDATES`` best by title are scored as before, title and content, their
  contents' grams read from the index as they were made when the matters entered it
  (``title_texts.content_grams``): normalising a hundred candidates' contents was a quarter of a
  submission's time on its event loop, and taking their grams a sixth (bench/submit.py's burst).
* Only the ``limit`` best are read from the matter list (title, status, 立案 number), in a second
  statement: reading the hundred candidates' rows there was a third of the statement's time.

So the answer is the exact one whenever what it would list is among the candidates: nothing is
left out when the new title's grams have at most ``POSTINGS`` rows in all and at most
``CANDIDATES`` matters share one (a level of a few dozen open matters); on a corpus of a few thousand
real-looking matters the tests hold the index's top 10 to at least 95 % of the top 10 of
:func:`exact_duplicates`, which scores every open matter (about 99 % measured, bench/submit.py).
"""

from __future__ import annotations

import functools
import heapq
import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Float, Integer, String, bindparam, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.runtime.read.db import DriverStatement, connected, driver_statement, on_driver

from .domain import OPEN_FOR_REVIEW
from .projections import index_number, matters, title_gram_counts, title_grams, title_texts

TITLE_WEIGHT = 0.7
CONTENT_WEIGHT = 1.0 - TITLE_WEIGHT
CONTENT_CHARS = 2000
#: Statuses of the matters that can still be merged into (待审查, 已立案).
OPEN_STATUSES = tuple(s.value for s in OPEN_FOR_REVIEW)

# 关于……的建议 / ……问题: the frame of an official title, not what it is about.
_TITLE_FRAME = re.compile(r"^(关于|对于)|(的)?(意见建议|意见和建议|建议|问题|提案|议案|诉求|意见|请求)$")
_IN_CHUNK = 500
# What a check reads and scores at most, whatever the number of open matters (chosen on the
# corpus of tests/test_intake_duplicates.py: recall and time, bench/submit.py):
#: Index rows read, of the new title's rarest grams.
POSTINGS = 500
#: Matters found whose title score is made exact, the best by its upper bound.
FOUND = 200
#: Matters scored as before (title and content), the best by title.
CANDIDATES = 100


class _Kept(dict):
    """Whether a character stays in a normalised text: not punctuation, a symbol, a separator or
    a control character (Unicode categories P, S, Z, C); asked of ``unicodedata`` once each."""

    def __missing__(self, char: str) -> bool:
        self[char] = kept = unicodedata.category(char)[0] not in "PSZC"
        return kept


_KEPT = _Kept()
#: Runs of characters that always stay (CJK ideographs, latin small letters, digits), or any one.
_PIECES = re.compile(r"[\u4e00-\u9fffa-z0-9]+|.", re.DOTALL)
#: Runs of CJK ideographs and runs of anything else.
_IDEOGRAPHS_OR_NOT = re.compile(r"[\u4e00-\u9fff]+|[^\u4e00-\u9fff]+")


def normalise(text: str) -> str:
    """Full-width forms folded (NFKC), latin lower-cased, whitespace and punctuation removed.

    The same as ``"".join(c for c in nfkc(text).lower() if category(c)[0] not in "PSZC")``, at
    a fraction of its cost for Chinese (a test compares them): the contents a duplicate check
    scores are normalised on every check. NFKC runs only on a text that is not already in it,
    and then only on what lies between runs of CJK ideographs (U+4E00–U+9FFF: no decomposition,
    no composition with what precedes or follows, so NFKC of the whole is NFKC of the pieces;
    the full-width punctuation of Chinese is what makes a text not NFKC); the characters are
    asked about in runs that cannot hold any to remove.
    """
    text = text or ""
    if not unicodedata.is_normalized("NFKC", text):
        text = "".join(
            piece if "\u4e00" <= piece[0] <= "\u9fff" else unicodedata.normalize("NFKC", piece)
            for piece in _IDEOGRAPHS_OR_NOT.findall(text)
        )
    text = text.lower()
    if text.isalnum():
        return text
    return "".join(piece for piece in _PIECES.findall(text) if len(piece) > 1 or _KEPT[piece])


def ngrams(text: str, n: int = 2) -> set[str]:
    """The character n-grams of ``text`` after :func:`normalise`; a text shorter than ``n`` is
    its own single gram (so that "路" still matches "路")."""
    return grams_of(normalise(text), n)


def grams_of(clean: str, n: int = 2) -> set[str]:
    """The character n-grams of a text already normalised (see :func:`ngrams`)."""
    if len(clean) <= n:
        return {clean} if clean else set()
    return {clean[i : i + n] for i in range(len(clean) - n + 1)}


def title_text(title: str) -> str:
    """A title as its grams are taken: normalised, without its official frame (关于…的建议), or the
    frame alone when there is nothing else."""
    clean = normalise(title)
    return normalise(_TITLE_FRAME.sub("", clean) or clean)


def title_ngrams(title: str) -> set[str]:
    """Bigrams of a title without its official frame (关于…的建议); the frame alone is kept."""
    return grams_of(title_text(title))


def content_text(content: str | None) -> str:
    """What is compared of a content: its first ``CONTENT_CHARS`` characters, normalised; the
    title index keeps it for each open matter (``projections.title_texts``)."""
    return normalise((content or "")[:CONTENT_CHARS])


def content_ngrams(content: str) -> set[str]:
    return grams_of(content_text(content))


def content_gram_list(content: str | None) -> str:
    """A content's grams as the title index keeps them: distinct, sorted, separated by spaces (a
    normalised text has none)."""
    return " ".join(sorted(content_ngrams(content or "")))


def dice_with_listed(grams: set[str], listed: str) -> float:
    """:func:`dice` of ``grams`` and the grams :func:`content_gram_list` wrote: the intersection
    made from the list without a set of its own."""
    other = listed.split(" ") if listed else []
    return _dice(len(grams.intersection(other)), len(grams), len(other))


def dice(a: set[str], b: set[str]) -> float:
    """``2·|A∩B| / (|A|+|B|)``; 0 when both are empty."""
    return _dice(len(a & b), len(a), len(b))


def _dice(shared: int, size_a: int, size_b: int) -> float:
    return 2 * shared / (size_a + size_b) if size_a or size_b else 0.0


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

    Candidates come from the title index (see the module docstring), then are scored exactly.
    A threshold the content alone could reach (``threshold <= CONTENT_WEIGHT``) needs no shared
    title gram, so the index cannot find its matters: that falls back to :func:`exact_duplicates`.
    """
    wanted_title = title_ngrams(title)
    wanted_content = content_ngrams(content)
    title_floor = (threshold - CONTENT_WEIGHT) / TITLE_WEIGHT
    if title_floor <= 0:
        return await exact_duplicates(
            conn,
            jurisdiction=jurisdiction,
            title=title,
            content=content,
            exclude_id=exclude_id,
            threshold=threshold,
            limit=limit,
        )
    if not wanted_title:
        return []
    parameters = {
        "jurisdiction": jurisdiction,
        "grams": sorted(wanted_title),
        "size": len(wanted_title),
        "exclude": index_number(exclude_id) if exclude_id else -1,  # numbers are never negative
    }
    async with connected(conn) as db:
        # The index counted the grams each title shares: its title score is exact.
        candidates = await _rows(db, _candidates_statement, parameters)
        size = len(wanted_title)
        # Best first, ties by number as the statement chose them. A title score came through
        # JSON with 15 significant digits: it is made again from the grams shared, which it
        # gives exactly (``2·shared / (size + grams)``), as the statement ordered by it.
        scored = sorted(
            (-2 * round(score * (size + grams) / 2) / (size + grams), number, matter_id, content)
            for matter_id, content, score, grams, number in candidates
        )
        best: list[tuple[float, str]] = []  # the ``limit`` best (score, id) so far, a heap
        for negative_title_score, _, matter_id, content_grams in scored:
            title_score = -negative_title_score
            reachable = TITLE_WEIGHT * title_score + CONTENT_WEIGHT
            if title_score < title_floor or (len(best) == limit and reachable < best[0][0]):
                break  # sorted by title score: none after it reaches the threshold or the top ``limit``
            # the content's grams as the index keeps them (``content_gram_list``)
            score = TITLE_WEIGHT * title_score + CONTENT_WEIGHT * dice_with_listed(wanted_content, content_grams)
            if score >= threshold:
                (heapq.heappush if len(best) < limit else heapq.heappushpop)(best, (score, matter_id))
        scores = {matter_id: score for score, matter_id in best}
        # Only the listed are read from the matter list. The index holds open matters of its
        # level only, changed in the transactions that change the list; checked again all the same.
        listed = await _rows(db, _listed_statement, {"ids": sorted(scores)}) if scores else []
    found = [
        {"id": row[0], "title": row[2], "status": row[3], "registration_no": row[4], "score": round(scores[row[0]], 4)}
        for row in listed
        if row[1] == jurisdiction and row[3] in OPEN_STATUSES
    ]
    found.sort(key=lambda c: (-scores[c["id"]], c["id"]))
    return found


async def _rows(db: AsyncConnection, build, parameters: dict[str, Any]) -> list[tuple]:
    """The rows of the statement ``build(json_lists=…, sqlite=…)`` makes, with ``parameters``
    (a list goes as one JSON array where the database has JSON functions), in no given order.

    On aiosqlite the statement, compiled once, goes to the driver connection under ``db`` (the
    same SQLite connection) in one call to aiosqlite's thread (``read/db.on_driver``, as the
    projector's statements do): SQLAlchemy's cursor adapter makes several (cursor, execute,
    fetch, close), each a thread switch, which cost a check about as much as the statement
    itself (bench/submit.py). Its errors are raised as SQLAlchemy raises them.

    There its rows come back as one JSON array, in a single row (:func:`_sqlite_plan`): Python's
    sqlite3 lets go of the interpreter lock for each row it steps to and must take it back
    after, and while the event loop is busy (a burst of submissions) it gets it back only when
    the loop's thread yields it, every ``sys.getswitchinterval()`` (5 ms): a hundred rows made
    a 3 ms statement take 20–50 ms, and up to 0.8 s, beside a busy thread (one row: 14–22 ms,
    at most 57 ms)."""
    plan = _sqlite_plan(db.dialect, build) if db.dialect.driver == "aiosqlite" else None
    if plan is None:
        statement = build(json_lists=_has_json(db.dialect), sqlite=db.dialect.name == "sqlite")
        return [tuple(row) for row in await db.execute(statement, _for(db.dialect, parameters))]
    arguments = plan.arguments(_for(db.dialect, parameters))
    ((rows,),) = await on_driver(db, plan.sql, lambda driver: driver.execute_fetchall(plan.sql, arguments))
    return json.loads(rows)


def _has_json(dialect) -> bool:
    """SQLite with JSON functions built in (3.38 and later): a list goes as one JSON array."""
    return dialect.name == "sqlite" and (dialect.server_version_info or ()) >= (3, 38)


def _for(dialect, parameters: dict[str, Any]) -> dict[str, Any]:
    if not _has_json(dialect):
        return parameters
    return {name: json.dumps(value) if isinstance(value, list) else value for name, value in parameters.items()}


@functools.lru_cache(maxsize=8)
def _sqlite_plan(dialect, build) -> DriverStatement | None:
    """The statement ``build`` makes, with its rows gathered into one JSON array of arrays (see
    :func:`_rows`; a float goes through JSON with 15 significant digits, so a statement that
    needs one exact returns what it is made of), compiled once for the driver
    (``db.driver_statement``); None without JSON functions (a list would be a parameter of its
    own)."""
    if not _has_json(dialect):
        return None
    rows = build(json_lists=True, sqlite=True).subquery("found_rows")
    return driver_statement(select(func.json_group_array(func.json_array(*rows.c))), dialect)


def _listing(name: str, json_lists: bool):
    """The values of the list parameter ``name``: one JSON array, or an expanding parameter."""
    if json_lists:  # a statement of fixed parameters, compiled once
        return select(func.json_each(bindparam(name, type_=String)).table_valued("value").c.value)
    return bindparam(name, expanding=True)


@functools.cache
def _listed_statement(*, json_lists: bool, sqlite: bool):
    """The rows of the matter list that a check lists (``ids``)."""
    return select(
        matters.c.id, matters.c.jurisdiction, matters.c.title, matters.c.status, matters.c.registration_no
    ).where(matters.c.id.in_(_listing("ids", json_lists)))


@functools.cache
def _candidates_statement(*, json_lists: bool, sqlite: bool):
    """One statement, so that a check is one round trip to the database (on aiosqlite each
    statement costs several hops to its thread and back, a fraction of a millisecond each):

    1. ``counted``: the new title's grams that open matters of the level have, rarest first, each
       with the number of index rows up to it (``running``);
    2. the rarest of them are chosen, as many as ``POSTINGS`` rows allow (at least one); the
       others are ``left`` out;
    3. ``found``: the matters (by number) in the chosen grams' rows (the matter itself,
       ``exclude``, left out), each with the grams it shares among them; the ``FOUND`` whose
       title score can be highest, counting the grams left out as shared as far as their titles
       have grams left (an upper bound of the Dice coefficient);
    4. their title scores made exact, the grams left out that their titles do have counted from
       their texts (a bigram is in a title's grams when the title has it); the ``CANDIDATES``
       highest, with their ids, their contents' grams as the index keeps them (made when the
       matter entered it: ``content_gram_list``), their title scores, their titles' grams and
       their numbers (ties go by number).

    Whether a title has a gram is ``instr`` on SQLite (the check's cost at 100,000 open matters
    15 % lower than with ``LIKE '%…%'``, the same rows: texts and grams are normalised, lower
    case, without ``%`` or ``_``), ``LIKE`` elsewhere.
    """
    counts = title_gram_counts.c
    rarest_first = (counts.matters, counts.gram)
    counted = (
        select(
            counts.gram,
            func.sum(counts.matters).over(order_by=rarest_first).label("running"),
            func.row_number().over(order_by=rarest_first).label("nth"),
        )
        .where(
            counts.jurisdiction == bindparam("jurisdiction", type_=String),
            counts.gram.in_(_listing("grams", json_lists)),
            counts.matters > 0,
        )
        .cte("counted")
    )
    is_chosen = or_(counted.c.running <= POSTINGS, counted.c.nth == 1)
    left = select(counted.c.gram).where(~is_chosen).cte("left")
    left_out = select(func.count()).select_from(left).scalar_subquery()
    size = bindparam("size", type_=Integer)
    grams = title_grams.c
    texts = title_texts.c
    shared = func.count()
    bound = cast(shared + case((grams.grams - shared < left_out, grams.grams - shared), else_=left_out), Float) / (
        size + grams.grams
    )
    found = (
        select(grams.no, grams.grams, shared.label("shared"))
        .where(
            grams.jurisdiction == bindparam("jurisdiction", type_=String),
            grams.gram.in_(select(counted.c.gram).where(is_chosen)),
            grams.no != bindparam("exclude", type_=BigInteger),
        )
        .group_by(grams.no, grams.grams)
        .order_by(bound.desc(), grams.no)
        .limit(FOUND)
        .cte("found")
    )
    # Every gram left out is a bigram (a title of one gram has none left out), so a title of
    # two characters or more has it exactly when its text contains it; a shorter one never does.
    also_shared = (
        select(func.count())
        .select_from(left)
        .where(func.instr(texts.text, left.c.gram) > 0 if sqlite else texts.text.contains(left.c.gram))
        .scalar_subquery()
    )
    title_score = (cast(2 * (found.c.shared + also_shared), Float) / (size + found.c.grams)).label("title_score")
    return (
        select(texts.matter_id, texts.content_grams, title_score, found.c.grams, found.c.no)
        .join_from(found, title_texts, texts.no == found.c.no)
        .order_by(title_score.desc(), found.c.no)
        .limit(CANDIDATES)
    )


async def exact_duplicates(
    conn: AsyncEngine | AsyncConnection,
    *,
    jurisdiction: str,
    title: str,
    content: str,
    exclude_id: str | None = None,
    threshold: float = 0.35,
    limit: int = 10,
) -> list[dict[str, Any]]:
    """:func:`possible_duplicates` by scoring every open matter of ``jurisdiction``: what it
    answered before the title index, its cost growing with the number of open matters. The
    reference the index is measured against, and the answer for a threshold the content alone
    can reach.

    Titles of all open matters are scored first; contents are read and compared only for those
    whose title score leaves the threshold within reach.
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
