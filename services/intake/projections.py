"""Intake's read side: the matter list, each matter's history, the activities, and their queries.

Three projections, each run by its own projector over the intake stream of one jurisdiction:

* ``MatterListProjection`` → ``intake_matters``: one row per matter, as ``domain.Matter`` sees it
  (the source of 问题清单 and 建议清单, DOMAIN.md "Lists, reports and notices"); with it, in the
  same transaction, the index of the open matters' titles the duplicate check searches
  (``intake_title_grams``, ``intake_title_texts``, ``intake_title_gram_counts``: "The title
  index" below);
* ``MatterHistoryProjection`` → ``intake_matter_history``: one row per event, with a short Chinese
  summary, so that the history of a matter can be read back in full;
* ``ActivityProjection`` → ``intake_activities``: one row per activity, with the number of matters
  collected at it (for the monthly summary 一月一小结).

Each projection has its own ``MetaData``: the projector drops and re-creates a projection's
``metadata`` when it rebuilds it, and one shared ``MetaData`` would wipe the other read models
while their checkpoints stayed put. ``metadatas`` lists all three for whoever creates the schema.

Times are stored in UTC and read back timezone-aware (``UtcDateTime``), on SQLite as on
PostgreSQL. Query periods: a ``date`` is a whole day in Asia/Shanghai (both ends included), a
``datetime`` is an instant (``since`` included, ``until`` excluded; naive means Asia/Shanghai).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from contracts.envelope import SHANGHAI, Envelope
from contracts.intake import (
    ACTIVITY_KIND_NAMES,
    FEEDBACK_WAY_NAMES,
    KIND_NAMES,
    RAISER_RATING_NAMES,
    MatterAbsorbed,
    MatterConverted,
    MatterEscalated,
    MatterForwarded,
    MatterMerged,
    MatterNotRegistered,
    MatterReceived,
    MatterRegistered,
    MatterRouted,
    MatterSentDown,
    MatterSubmitted,
    OutcomeRecorded,
    RaiserFedBack,
    ReplyRecorded,
    SubmitterFeedbackGiven,
    SubmitterFeedbackReceived,
)
from contracts.jurisdictions import UnknownJurisdiction, default_registry
from services.runtime.read.db import connected
from services.runtime.read.documents import execute_many
from services.runtime.read.history import HistoryProjection, history_table, short
from services.runtime.read.projector import handles
from services.runtime.read.records import SEPARATOR as SUBMITTER_SEPARATOR
from services.runtime.read.records import ActivityRecords, MatterRecords, activity_table, matter_table

from .domain import OPEN_FOR_REVIEW

__all__ = [
    "ActivityProjection",
    "MatterHistoryProjection",
    "MatterListProjection",
    "activities",
    "get_matter",
    "list_activities",
    "list_matters",
    "matter_history",
    "matters",
    "metadatas",
    "title_gram_counts",
    "title_grams",
    "title_texts",
]


# -- tables ------------------------------------------------------------------------------------

matters_metadata = MetaData()
history_metadata = MetaData()
activities_metadata = MetaData()
#: Every intake read model's schema, one ``MetaData`` per projection (see the module docstring).
metadatas = (matters_metadata, history_metadata, activities_metadata)

matters = matter_table("intake_matters", matters_metadata)

history = history_table("intake_matter_history", history_metadata, "matter_id")

activities = activity_table("intake_activities", activities_metadata)

#: A matter's number in the title index: 64 bits (SQLite's INTEGER, its rowid; PostgreSQL's BIGINT).
_NUMBER = BigInteger().with_variant(Integer, "sqlite")


def index_number(matter_id: str) -> int:
    """The number that names ``matter_id`` in the title index: 63 bits of its BLAKE2b hash (two
    of the ids of a level's 100,000 open matters share one with a chance of about 5·10⁻¹⁰)."""
    return int.from_bytes(hashlib.blake2b(matter_id.encode(), digest_size=8).digest(), "big") >> 1


#: The title index, one row per gram of each open matter's title (``similarity.title_ngrams``),
#: found by gram (the key's order), with the number of grams of that title (for the Dice
#: coefficient). The matter is named by its number (``index_number``: 63 bits of a hash of its
#: id), not by its id: the duplicate check groups a few hundred of these rows by matter and
#: looks each matter up in ``title_texts``, and an integer key does both in about half the time a
#: 26-character id does (bench/submit.py). WITHOUT ROWID on SQLite: the rows are the key's
#: b-tree, read without a second lookup. (Some 14 rows a matter: 1.4 million at 100,000 open
#: matters.)
title_grams = Table(
    "intake_title_grams",
    matters_metadata,
    Column("jurisdiction", String(9), primary_key=True),
    Column("gram", String(8), primary_key=True, doc="two characters, or a whole title of one or two"),
    Column("no", _NUMBER, primary_key=True, autoincrement=False, doc="the matter's index_number"),
    Column("grams", Integer, nullable=False, doc="how many grams the matter's title has"),
    sqlite_with_rowid=False,
)

#: The same titles a row per matter, as their grams are taken (``similarity.title_text``:
#: normalised, without the frame 关于……的建议), so that the index can tell whether a title has a
#: gram without reading that gram's whole list; beside each, the grams of its content as the
#: check compares them (``similarity.content_gram_list``), made once here rather than on every
#: check that lists the matter among its candidates (about 60 µs a content of 400 characters).
#: ``no`` is the matter's ``index_number`` (SQLite's rowid: a lookup by it is one b-tree of
#: integers): the same for a matter whenever and however its events are applied, so that a
#: rebuilt index equals the live one row for row, whatever the batches were.
title_texts = Table(
    "intake_title_texts",
    matters_metadata,
    Column("no", _NUMBER, primary_key=True, autoincrement=False, doc="index_number(matter_id)"),
    Column("matter_id", String(64), nullable=False),
    Column("jurisdiction", String(9), nullable=False),
    Column("text", Text, nullable=False, doc="NFKC may lengthen a title: no limit of its own"),
    Column("content_grams", Text, nullable=False, doc="similarity.content_gram_list of the matter's content"),
)

#: How many open matters of a level have each gram in their title (document frequency): the
#: duplicate check reads its rarest grams' lists and leaves the longest out.
title_gram_counts = Table(
    "intake_title_gram_counts",
    matters_metadata,
    Column("jurisdiction", String(9), primary_key=True),
    Column("gram", String(8), primary_key=True),
    Column("matters", Integer, nullable=False),
    sqlite_with_rowid=False,
)


# -- the matter list ---------------------------------------------------------------------------


class MatterListProjection(MatterRecords):
    """One row per matter, changed by each event as ``domain.Matter`` changes its state (the
    runtime's matter records, which notify keeps too), and the title index of the open ones."""

    name = "intake_matters"
    version = 11  # the title index's matters by number (intake_title_texts.no), not by id
    metadata = matters_metadata
    table = matters

    async def apply_batch(self, session: AsyncSession, envelopes: list[Envelope]) -> None:
        touched = list(dict.fromkeys(e.aggregate_id for e in envelopes if e.event_type in _INDEXED_BY))
        if not touched:
            await super().apply_batch(session, envelopes)
            return
        # The index before and after, from the rows the batch reads and changes (no read of its own)
        before: dict[str, _Indexed] = {}
        rows: dict[str, dict[str, Any]] = {}

        def read(found: dict[str, dict[str, Any]]) -> None:
            before.update(_indexed(found, touched))  # taken now: the handlers then change these rows in place
            rows.update(found)

        conn = await session.connection()
        changed = await self.apply_documents(conn, envelopes, read)
        await _reindex(conn, before, _indexed(rows | changed, touched))


# -- the title index ---------------------------------------------------------------------------
#
# The duplicate check (similarity.py) compares a new matter with the open matters (待审查, 已立案)
# of its level. Scoring every one of them costs a submission more the more there are, so the
# open matters' title grams are kept in an index: a matter enters it when it is submitted or
# received, and leaves it when it stops being open (not registered, merged, routed, escalated,
# sent down, closed). The index changes in the transaction of the batch that changes the rows,
# so it is always the index of the rows beside it; rebuilt with them, as one projection.

#: Events that can make a matter open or not, or give it its title.
_INDEXED_BY = frozenset(
    e.event_type
    for e in (
        MatterSubmitted,
        MatterReceived,
        MatterRegistered,
        MatterNotRegistered,
        MatterMerged,
        MatterRouted,
        MatterEscalated,
        MatterSentDown,
        OutcomeRecorded,
    )
)
_OPEN = frozenset(s.value for s in OPEN_FOR_REVIEW)

_delete_gram = delete(title_grams).where(
    title_grams.c.jurisdiction == bindparam("j"),
    title_grams.c.gram == bindparam("g"),
    title_grams.c.no == bindparam("n"),
)
_delete_text = delete(title_texts).where(title_texts.c.no == bindparam("n"))
_insert_gram = insert(title_grams)
_insert_text = insert(title_texts)


class _Indexed(NamedTuple):
    """What the index holds of an open matter."""

    jurisdiction: str
    text: str
    grams: frozenset[str]
    content_grams: str


def _indexed(rows: dict[str, dict[str, Any]], ids: list[str]) -> dict[str, _Indexed]:
    """The matters of ``ids`` among ``rows`` (matter list rows by id) that are open, as the
    index holds them."""
    from .similarity import content_gram_list, grams_of, title_text  # similarity reads these tables: imported when used

    found: dict[str, _Indexed] = {}
    for matter_id in ids:
        row = rows.get(matter_id)
        if row is not None and row["status"] in _OPEN and row["jurisdiction"]:
            text = title_text(row["title"] or "")
            if text:  # a title of punctuation alone has no gram to be found by
                grams = frozenset(grams_of(text))
                found[matter_id] = _Indexed(row["jurisdiction"], text, grams, content_gram_list(row["content"]))
    return found


async def _reindex(conn: AsyncConnection, before: dict[str, _Indexed], after: dict[str, _Indexed]) -> None:
    """Bring the index from ``before`` to ``after``: matters that left or changed out, those that
    came or changed in, and the counts of their grams."""
    gone: list[dict[str, Any]] = []
    left: list[dict[str, int]] = []
    came: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    counts: dict[tuple[str, str], int] = {}
    changed = [m for m in before.keys() | after.keys() if before.get(m) != after.get(m)]
    for matter_id in changed:
        no = index_number(matter_id)
        if (old := before.get(matter_id)) is not None:
            left.append({"n": no})
            for gram in old.grams:
                gone.append({"j": old.jurisdiction, "g": gram, "n": no})
                counts[old.jurisdiction, gram] = counts.get((old.jurisdiction, gram), 0) - 1
        if (new := after.get(matter_id)) is not None:
            texts.append(
                {
                    "no": no,
                    "matter_id": matter_id,
                    "jurisdiction": new.jurisdiction,
                    "text": new.text,
                    "content_grams": new.content_grams,
                }
            )
            for gram in new.grams:
                came.append({"jurisdiction": new.jurisdiction, "gram": gram, "no": no, "grams": len(new.grams)})
                counts[new.jurisdiction, gram] = counts.get((new.jurisdiction, gram), 0) + 1
    if gone:
        await _executemany(conn, _delete_gram, gone)
        await _executemany(conn, _delete_text, left)
    if came:
        await _executemany(conn, _insert_text, texts)
        await _executemany(conn, _insert_gram, came)
    deltas = [{"jurisdiction": j, "gram": g, "matters": n} for (j, g), n in counts.items() if n]
    if deltas:
        await _executemany(conn, _count_upsert(conn.dialect.name), deltas)
        # a gram no open matter has any more leaves the counts, as a rebuild would never write it
        fallen = [{"jurisdiction": d["jurisdiction"], "gram": d["gram"]} for d in deltas if d["matters"] < 0]
        if fallen:
            await _executemany(conn, _delete_empty_count, fallen)


async def _executemany(conn: AsyncConnection, statement, rows: list[dict[str, Any]]) -> None:
    """``statement`` once for each of ``rows``, in one executemany of the driver: SQLAlchemy's own
    makes a parameter dictionary and runs the bind processors for each row, most of what the
    index costs a batch of new matters (some 14 rows each), and these plain strings and
    integers need neither; on aiosqlite it is one call into its thread (``execute_many``)."""
    sql, names = _compiled(statement, conn.dialect)
    if names is None:
        await conn.execute(statement, rows)
        return
    await execute_many(conn, sql, [tuple(row[name] for name in names) for row in rows])


@functools.lru_cache(maxsize=32)
def _compiled(statement, dialect) -> tuple[str, tuple[str, ...] | None]:
    """The SQL of ``statement`` for ``dialect`` and its parameters' names in order, or no names
    where the parameters are not positional (then SQLAlchemy executes it)."""
    compiled = statement.compile(dialect=dialect)
    if not compiled.positional or compiled.escaped_bind_names:
        return compiled.string, None
    return compiled.string, tuple(compiled.positiontup)


_delete_empty_count = title_gram_counts.delete().where(
    title_gram_counts.c.jurisdiction == bindparam("jurisdiction"),
    title_gram_counts.c.gram == bindparam("gram"),
    title_gram_counts.c.matters <= literal_column("0"),
)


@functools.cache
def _count_upsert(dialect: str):
    """Add each row's ``matters`` to the stored count of its gram (a new gram starts at it)."""
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(title_gram_counts)
    return stmt.on_conflict_do_update(
        index_elements=[title_gram_counts.c.jurisdiction, title_gram_counts.c.gram],
        set_={"matters": title_gram_counts.c.matters + stmt.excluded.matters},
    )


# -- the history of each matter ----------------------------------------------------------------


def _place(code: str) -> str:
    """The name and code, as 台州市（331000）, or the bare code of a jurisdiction the registry does not know."""
    try:
        return f"{default_registry().get(code).name}（{code}）"
    except UnknownJurisdiction:
        return code


def _with_reason(summary: str, reason: str | None) -> str:
    return f"{summary}：{short(reason)}" if reason else summary


class MatterHistoryProjection(HistoryProjection):
    """A row per matter event, in the order it happened, with who did it and what it means."""

    name = "intake_matter_history"
    version = 2  # replies reported back, feedback travelling up, the raiser fed back
    metadata = history_metadata
    table = history
    key = "matter_id"

    @handles(MatterSubmitted)
    def submitted(self, event: MatterSubmitted, envelope: Envelope) -> str:
        data = event.matter
        by = data.lead.name + (f"等{len(data.co_signers) + 1}人" if data.co_signers else "")
        return f"{by}提出{KIND_NAMES[data.kind]}：{data.title}"

    @handles(MatterReceived)
    def received(self, event: MatterReceived, envelope: Envelope) -> str:
        how = "上报" if event.direction == "up" else "交办"
        return f"收到{_place(event.origin.jurisdiction)}{how}的{KIND_NAMES[event.matter.kind]}：{event.matter.title}"

    @handles(MatterRegistered)
    def registered(self, event: MatterRegistered, envelope: Envelope) -> str:
        return f"立案：{event.registration_no}"

    @handles(MatterNotRegistered)
    def not_registered(self, event: MatterNotRegistered, envelope: Envelope) -> str:
        return _with_reason("不予立案", event.reason)

    @handles(MatterConverted)
    def converted(self, event: MatterConverted, envelope: Envelope) -> str:
        return _with_reason(f"由{KIND_NAMES[event.from_kind]}转为{KIND_NAMES[event.to_kind]}", event.reason)

    @handles(MatterMerged)
    def merged(self, event: MatterMerged, envelope: Envelope) -> str:
        return _with_reason(f"并入 {event.into}", event.reason)

    @handles(MatterAbsorbed)
    def absorbed(self, event: MatterAbsorbed, envelope: Envelope) -> str:
        names = SUBMITTER_SEPARATOR.join(s.name for s in event.submitters)
        return f"并入事项 {event.merged}" + (f"，增加提出人：{names}" if names else "")

    @handles(MatterRouted)
    def routed(self, event: MatterRouted, envelope: Envelope) -> str:
        return "本级办理" + (f"（{event.committee}）" if event.committee else "")

    @handles(MatterEscalated)
    def escalated(self, event: MatterEscalated, envelope: Envelope) -> str:
        return _with_reason(f"上报至 {_place(event.to)}", event.reason)

    @handles(MatterSentDown)
    def sent_down(self, event: MatterSentDown, envelope: Envelope) -> str:
        return _with_reason(f"交由 {_place(event.to)} 办理", event.reason)

    @handles(MatterForwarded)
    def forwarded(self, event: MatterForwarded, envelope: Envelope) -> str:
        return f"{_place(event.to.jurisdiction)}已接收，事项编号 {event.to.matter_id}"

    @handles(OutcomeRecorded)
    def outcome_recorded(self, event: OutcomeRecorded, envelope: Envelope) -> str:
        details = [f"{event.outcome.reply_class}类"] if event.outcome.reply_class else []
        if event.outcome.unit:
            details.append(f"主办单位：{event.outcome.unit}")
        tail = f"（{'，'.join(details)}）" if details else ""
        if event.reported_back:
            return f"收到{_place(event.handled_in.jurisdiction)}的办理结果，已办结{tail}"
        return f"办结{tail}"

    @handles(ReplyRecorded)
    def reply_recorded(self, event: ReplyRecorded, envelope: Envelope) -> str:
        unit = f"，{event.reply.unit}" if event.reply.unit else ""
        where = f"收到{_place(event.handled_in.jurisdiction)}的答复" if event.reported_back else "答复"
        return f"{where}（第{event.reply.round}轮，{event.reply.reply_class}类{unit}）：{short(event.reply.text)}"

    @handles(SubmitterFeedbackGiven)
    def feedback_given(self, event: SubmitterFeedbackGiven, envelope: Envelope) -> str:
        comment = f"：{short(event.comment)}" if event.comment else ""
        rating = RAISER_RATING_NAMES[event.rating]
        to = _place(event.handled_in.jurisdiction)
        return f"{event.submitter.name}反馈{rating}（第{event.round}轮答复），转{to}{comment}"

    @handles(SubmitterFeedbackReceived)
    def feedback_received(self, event: SubmitterFeedbackReceived, envelope: Envelope) -> str:
        rating = RAISER_RATING_NAMES[event.rating]
        return f"收到{_place(event.given_in)}{event.submitter.name}的反馈：{rating}（第{event.round}轮答复）"

    @handles(RaiserFedBack)
    def raiser_fed_back(self, event: RaiserFedBack, envelope: Envelope) -> str:
        rating = f"，{RAISER_RATING_NAMES[event.rating]}" if event.rating else ""
        note = f"：{short(event.note)}" if event.note else ""
        return f"向反映主体反馈（{FEEDBACK_WAY_NAMES[event.way]}，{event.fed_back_on.isoformat()}{rating}）{note}"


# -- activities --------------------------------------------------------------------------------


class ActivityProjection(ActivityRecords):
    """One row per activity of this level, with the matters collected there (the runtime's
    activity records, which notify keeps too for the monthly summary)."""

    name = "intake_activities"
    version = 2  # participants: deputies of each level apart from the others listed
    metadata = activities_metadata
    table = activities


# -- queries -----------------------------------------------------------------------------------


def _instant(value: date | datetime, *, end: bool) -> datetime:
    """A period bound as an aware instant: a date covers its whole day in Asia/Shanghai."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=SHANGHAI)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time.min, tzinfo=SHANGHAI)


def _day(value: date | datetime) -> date:
    """The Asia/Shanghai day of a date or an instant (naive means Asia/Shanghai)."""
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).date() if value.tzinfo is not None else value.date()
    return value


def _values(value: str | Iterable[str] | None) -> list[str] | None:
    """One value or several (``"problem"`` or ``[MatterKind.problem, MatterKind.demand]``)."""
    if value is None:
        return None
    if isinstance(value, str):  # StrEnum members are str too
        return [str(value)]
    return [str(v) for v in value]


_LIST_COLUMNS = [c for c in matters.columns if c.name != "content"]


async def list_matters(
    conn: AsyncEngine | AsyncConnection,
    *,
    jurisdiction: str,
    kind: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    body: str | None = None,
    channel: str | None = None,
    category: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    text: str | None = None,
    lead: str | None = None,
    plan: str | None = None,
    plan_item: str | None = None,
    limit: int = 100,
    offset: int = 0,
    with_content: bool = False,
) -> list[dict[str, Any]]:
    """The matters of ``jurisdiction``, newest first, filtered by each argument given.

    ``kind`` and ``status`` take one value or several; ``text`` matches title or content
    (case-insensitive, ``%`` and ``_`` taken literally); the period is on ``submitted_at`` (see the
    module docstring for dates against datetimes). Rows leave out ``content`` unless
    ``with_content``.
    """
    query = select(*(matters.columns if with_content else _LIST_COLUMNS)).where(matters.c.jurisdiction == jurisdiction)
    if (kinds := _values(kind)) is not None:
        query = query.where(matters.c.kind.in_(kinds))
    if (statuses := _values(status)) is not None:
        query = query.where(matters.c.status.in_(statuses))
    if body is not None:
        query = query.where(matters.c.body == str(body))
    if channel is not None:
        query = query.where(matters.c.channel == str(channel))
    if lead is not None:
        query = query.where(matters.c.lead_id == lead)
    if plan is not None:
        query = query.where(matters.c.plan_id == plan)
    if plan_item is not None:
        query = query.where(matters.c.plan_item == plan_item)
    if category is not None:
        query = query.where(matters.c.category == category)
    if since is not None:
        query = query.where(matters.c.submitted_at >= _instant(since, end=False))
    if until is not None:
        query = query.where(matters.c.submitted_at < _instant(until, end=True))
    if text and text.strip():
        needle = text.strip()
        in_title = matters.c.title.icontains(needle, autoescape=True)
        query = query.where(or_(in_title, matters.c.content.icontains(needle, autoescape=True)))
    query = query.order_by(matters.c.submitted_at.desc(), matters.c.id.desc()).limit(limit).offset(offset)
    async with connected(conn) as db:
        return [dict(row._mapping) for row in await db.execute(query)]


async def get_matter(conn: AsyncEngine | AsyncConnection, matter_id: str) -> dict[str, Any] | None:
    """One matter's row, content included; ``None`` if there is none."""
    async with connected(conn) as db:
        row = (await db.execute(select(matters).where(matters.c.id == matter_id))).first()
    return dict(row._mapping) if row is not None else None


async def matter_history(conn: AsyncEngine | AsyncConnection, matter_id: str) -> list[dict[str, Any]]:
    """Every event of a matter, oldest first, with its actor and Chinese summary."""
    query = select(history).where(history.c.matter_id == matter_id).order_by(history.c.sequence)
    async with connected(conn) as db:
        return [dict(row._mapping) for row in await db.execute(query)]


async def list_activities(
    conn: AsyncEngine | AsyncConnection,
    jurisdiction: str,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
) -> list[dict[str, Any]]:
    """Activities of ``jurisdiction`` held from ``since`` to ``until`` (both days included), latest
    first, each with ``kind_name`` (视察、调研…) and ``matters_collected``."""
    query = select(activities).where(activities.c.jurisdiction == jurisdiction, activities.c.held_on.is_not(None))
    if since is not None:
        query = query.where(activities.c.held_on >= _day(since))
    if until is not None:
        query = query.where(activities.c.held_on <= _day(until))
    query = query.order_by(activities.c.held_on.desc(), activities.c.id)
    async with connected(conn) as db:
        rows = [dict(row._mapping) for row in await db.execute(query)]
    for row in rows:
        row["kind_name"] = ACTIVITY_KIND_NAMES.get(row["kind"], row["kind"])
    return rows
