"""Deadlines as configuration, counted in months, calendar days or working days.

Where the rules come from (DOMAIN.md, "The life of a matter"):

* a deputy's suggestion is answered within three months of assignment, six months at most for
  complex ones (代表法 and the 办理办法 that follow it); re-handling (重新办理) after a 不满意
  answer within one month;
* local rules set the rest: the window in which a unit may return a matter that is not its
  business (退回, 10 days is common), the time co-units have to send their input to the lead unit
  (within one month is common), and when urging starts before and after a deadline (催办).

None of these is a constant in code: :class:`DeadlinePolicy` holds them per level (prefecture,
county, township) with overrides per jurisdiction code, and is loaded from a YAML file.

How a span is counted from an instant ``start`` (:func:`deadline_after`):

* counting starts the day after the start date, the date being read in Asia/Shanghai;
* ``months``: the same day of the month N months later, clamped to that month's end
  (2026-11-30 + 3 months = 2027-02-28);
* ``calendar_days``: the start date + N days;
* ``working_days``: the Nth working day after the start date, per :class:`WorkingCalendar`
  (China's public holidays and adjusted working weekends 调休, from the ``chinese_calendar``
  package and from the State Council's schedule loaded from data files for later years).
  A year with no schedule is counted by weekends only, and the deadline says so in its warnings
  and in a log record: a deadline must never go silently wrong.

Month and calendar-day deadlines are not moved off holidays: they fall where the rule says.

A deadline is a day in Shanghai (``due_on``). Its instant ``due_at`` is the *end* of that day,
taken as the exclusive bound: the start of the next Shanghai day (00:00 Asia/Shanghai), stored in
UTC. A case is overdue at an instant ``now`` when ``now >= due_at``.

The clock is injected: every function takes its instants as arguments and never reads the time.
"""

from __future__ import annotations

import calendar as _gregorian
import functools
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import chinese_calendar
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contracts.envelope import SHANGHAI
from contracts.intake import MatterKind
from contracts.jurisdictions import Level
from contracts.tracking import CaseKind

__all__ = [
    "BUILTIN_HOLIDAYS_DIR",
    "KINDS",
    "WORK_ITEM",
    "Deadline",
    "DeadlinePolicy",
    "DeadlineRules",
    "HolidayPeriod",
    "HolidaySchedule",
    "RulesOverride",
    "Span",
    "SpanUnit",
    "WorkingCalendar",
    "deadline_after",
    "deadline_on",
    "end_of_day",
    "shift_after",
    "shift_before",
]

log = logging.getLogger("duban.tracking.deadlines")

#: The government's key work items (重点工作 / 民生实事项目, seed 004) also carry deadlines.
WORK_ITEM = "work_item"

#: Every kind a deadline rule may name: the kinds of cases (intake's matter kinds, inquiry
#: questions and rectifications), plus work items.
KINDS: tuple[str, ...] = (*(kind.value for kind in CaseKind), WORK_ITEM)

#: Holiday schedules shipped with the package (one file per year; see the README there).
BUILTIN_HOLIDAYS_DIR = Path(__file__).parent / "data" / "holidays"

#: Spans are at most this many units: ten years of days, a guard against typos in a policy file.
MAX_AMOUNT = 3660

_JURISDICTION_CODE = re.compile(r"^\d{6}(\d{3})?$")
_YEAR_FILE = re.compile(r"^\d{4}$")
_DATA_SUFFIXES = (".yaml", ".yml", ".json")


# -- spans and rules ---------------------------------------------------------------------------


class SpanUnit(StrEnum):
    """How a span is counted."""

    months = "months"  # 个月
    calendar_days = "calendar_days"  # 日 (自然日)
    working_days = "working_days"  # 个工作日


class Span(BaseModel):
    """A length of time such as three months or 15 working days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: int = Field(ge=0, le=MAX_AMOUNT)
    unit: SpanUnit

    def describe(self) -> str:
        """The span as users read it: ``3个月``, ``15个工作日``, ``10日``."""
        suffix = {SpanUnit.months: "个月", SpanUnit.working_days: "个工作日", SpanUnit.calendar_days: "日"}
        return f"{self.amount}{suffix[self.unit]}"


def _months(amount: int) -> Span:
    return Span(amount=amount, unit=SpanUnit.months)


def _days(amount: int) -> Span:
    return Span(amount=amount, unit=SpanUnit.calendar_days)


#: Answer deadlines by kind: three months for deputies' suggestions and motions (代表法) and, by the
#: same practice, CPPCC proposals and work items; one month for problems and enterprises' demands.
DEFAULT_ANSWER: dict[str, Span] = {
    MatterKind.motion.value: _months(3),
    MatterKind.suggestion.value: _months(3),
    MatterKind.proposal.value: _months(3),
    MatterKind.problem.value: _months(1),
    MatterKind.demand.value: _months(1),
    CaseKind.inquiry.value: _months(3),
    CaseKind.rectification.value: _months(3),
    WORK_ITEM: _months(3),
}


def _check_kinds(answer: dict[str, Span]) -> dict[str, Span]:
    unknown = sorted(set(answer) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown matter kind(s) {', '.join(unknown)}; expected one of {', '.join(KINDS)}")
    return answer


class DeadlineRules(BaseModel):
    """The deadline rules of one level (or one jurisdiction): every span a case may need."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer: dict[str, Span] = Field(
        default_factory=lambda: dict(DEFAULT_ANSWER),
        description="time to answer, per kind, from assignment (交办); kinds not given keep the default",
    )
    max_answer: Span = Field(default=_months(6), description="extensions (延期) may not go beyond assignment + this")
    max_plan_due: Span = Field(
        default=_months(12),
        description="a deadline set by a plan or by staff at assignment (e.g. before the next session) is at most "
        "assignment + this",
    )
    rehandling: Span = Field(default=_months(1), description="重新办理 after a 不满意 answer")
    return_window: Span = Field(default=_days(10), description="a unit may return (退回) a matter within this")
    co_unit_input: Span = Field(default=_months(1), description="co-units (协办) send their input to the lead unit")
    due_soon: Span = Field(default=_days(7), description="urging (即将到期) starts this long before the deadline")
    long_overdue: Span = Field(default=_days(30), description="严重超期 starts this long after the deadline")

    @field_validator("answer")
    @classmethod
    def _complete_answer(cls, value: dict[str, Span]) -> dict[str, Span]:
        return {**DEFAULT_ANSWER, **_check_kinds(value)}

    def answer_for(self, kind: str) -> Span:
        """The answer span of a kind (a :class:`MatterKind` or ``"work_item"``)."""
        try:
            return self.answer[str(kind)]
        except KeyError:
            raise ValueError(f"unknown matter kind {kind!r}; expected one of {', '.join(KINDS)}") from None

    def merged(self, override: RulesOverride) -> DeadlineRules:
        """These rules with ``override``'s spans in place; answer spans are overridden kind by kind."""
        update: dict[str, Any] = {name: getattr(override, name) for name in override.model_fields_set}
        update = {name: value for name, value in update.items() if value is not None}
        if "answer" in update:
            update["answer"] = {**self.answer, **update["answer"]}
        return self.model_copy(update=update)


class RulesOverride(BaseModel):
    """Part of a :class:`DeadlineRules`: only the spans given replace the rules below them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer: dict[str, Span] | None = None
    max_answer: Span | None = None
    max_plan_due: Span | None = None
    rehandling: Span | None = None
    return_window: Span | None = None
    co_unit_input: Span | None = None
    due_soon: Span | None = None
    long_overdue: Span | None = None

    @field_validator("answer")
    @classmethod
    def _known_kinds(cls, value: dict[str, Span] | None) -> dict[str, Span] | None:
        return None if value is None else _check_kinds(value)


class DeadlinePolicy(BaseModel):
    """The whole deadline configuration of a deployment.

    ``rules_for(level, jurisdiction)`` applies, from the bottom up: the built-in defaults (or
    ``default``), then the override of the level, then the override of the jurisdiction code.
    ``DeadlinePolicy()`` is the defaults alone. A YAML file has the same shape::

        default:
          due_soon: {amount: 5, unit: working_days}
        levels:
          township:
            answer: {problem: {amount: 15, unit: working_days}}
        jurisdictions:
          "331081":            # 温岭市
            return_window: {amount: 5, unit: working_days}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: DeadlineRules = Field(default_factory=DeadlineRules)
    levels: dict[Level, RulesOverride] = Field(default_factory=dict)
    jurisdictions: dict[str, RulesOverride] = Field(default_factory=dict)

    @field_validator("jurisdictions")
    @classmethod
    def _codes(cls, value: dict[str, RulesOverride]) -> dict[str, RulesOverride]:
        bad = sorted(code for code in value if not _JURISDICTION_CODE.match(code))
        if bad:
            raise ValueError(f"not a jurisdiction code (6 or 9 digits): {', '.join(bad)}")
        return value

    def rules_for(self, level: str, jurisdiction: str | None = None) -> DeadlineRules:
        """The rules of a jurisdiction: its own override > its level's override > the default."""
        rules = self.default
        level_override = self.levels.get(Level(level))
        if level_override is not None:
            rules = rules.merged(level_override)
        own = self.jurisdictions.get(jurisdiction) if jurisdiction is not None else None
        if own is not None:
            rules = rules.merged(own)
        return rules

    @classmethod
    def load(cls, path: str | Path) -> DeadlinePolicy:
        """Read a policy from a YAML (or JSON) file; a bad file raises pydantic's ``ValidationError``."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return cls.model_validate(data if data is not None else {})


# -- the working calendar ----------------------------------------------------------------------


class HolidayPeriod(BaseModel):
    """One entry of a year's schedule: a day, or the days from ``start`` to ``end`` inclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    start: date
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> HolidayPeriod:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def days(self) -> Iterable[date]:
        day, last = self.start, self.end or self.start
        while day <= last:
            yield day
            day += timedelta(days=1)


class HolidaySchedule(BaseModel):
    """A year's schedule as published by the State Council (国务院办公厅关于…年部分节假日安排的通知).

    ``holidays`` are the days off (放假), ``workdays`` the adjusted working days on weekends (调休上班).
    Dates run from December of the previous year (a 元旦 break may begin then) to December of the year.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    year: int = Field(ge=2000, le=2200)
    source: str = ""
    holidays: list[HolidayPeriod] = Field(default_factory=list)
    workdays: list[HolidayPeriod] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> HolidaySchedule:
        first, last = date(self.year - 1, 12, 1), date(self.year, 12, 31)
        off = {day for period in self.holidays for day in period.days()}
        on = {day for period in self.workdays for day in period.days()}
        outside = sorted(day for day in off | on if not first <= day <= last)
        if outside:
            raise ValueError(f"dates outside {first}..{last}: {', '.join(map(str, outside))}")
        both = sorted(off & on)
        if both:
            raise ValueError(f"dates both holiday and working day: {', '.join(map(str, both))}")
        return self

    def overrides(self) -> dict[date, bool]:
        """``{day: is_workday}`` for every day the schedule names."""
        days = {day: False for period in self.holidays for day in period.days()}
        days.update({day: True for period in self.workdays for day in period.days()})
        return days


def _read_schedule(path: Path) -> HolidaySchedule:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        schedule = HolidaySchedule.model_validate(data)
    except (ValidationError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"holiday schedule {path}: {exc}") from exc
    if str(schedule.year) != path.stem:
        raise ValueError(f"holiday schedule {path}: the file is named for {path.stem} but says year {schedule.year}")
    return schedule


class WorkingCalendar:
    """Which days are working days in mainland China.

    A day's status comes from, in order: the schedules loaded from data files (the package's
    ``data/holidays`` directory, then ``extra_dir``, whose files replace the package's for the same
    year), the ``chinese_calendar`` package (2004 to 2026 in version 1.11), and, for a year neither
    knows, weekends alone (Monday to Friday are working days). :meth:`has_schedule` tells which.
    Files are named ``<year>.yaml``, ``<year>.yml`` or ``<year>.json``; other files in the
    directory (such as a README) are ignored, and a data file with another name is an error.
    """

    def __init__(self, extra_dir: Path | str | None = None) -> None:
        self._schedules: dict[int, HolidaySchedule] = {}
        for directory in (BUILTIN_HOLIDAYS_DIR, extra_dir):
            if directory is not None:
                self._load_dir(Path(directory))
        self._overrides: dict[date, bool] = {}
        for year in sorted(self._schedules):
            self._overrides.update(self._schedules[year].overrides())

    def _load_dir(self, directory: Path) -> None:
        if not directory.is_dir():
            raise ValueError(f"holiday schedule directory {directory} does not exist")
        loaded: dict[int, HolidaySchedule] = {}
        for path in sorted(directory.iterdir()):
            if path.suffix not in _DATA_SUFFIXES:
                continue
            if not _YEAR_FILE.match(path.stem):
                raise ValueError(f"holiday schedule {path}: name it after its year, e.g. 2027.yaml")
            schedule = _read_schedule(path)
            if schedule.year in loaded:
                raise ValueError(f"holiday schedule {path}: a second file for {schedule.year} in {directory}")
            loaded[schedule.year] = schedule
            log.info("loaded the public holiday schedule of %d from %s", schedule.year, path)
        self._schedules.update(loaded)

    def has_schedule(self, year: int) -> bool:
        """Whether the holidays and adjusted working days of ``year`` are known."""
        return year in self._schedules or _builtin_knows(year)

    def is_workday(self, day: date) -> bool:
        """Whether ``day`` is a working day (weekends only for a year without a schedule)."""
        if day in self._overrides:
            return self._overrides[day]
        if day.year not in self._schedules and _builtin_knows(day.year):
            return chinese_calendar.is_workday(day)
        return day.weekday() < 5


@functools.cache
def _builtin_knows(year: int) -> bool:
    """Whether the ``chinese_calendar`` package has the schedule of ``year``."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


# -- deadlines ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deadline:
    """A computed deadline: the last day in Shanghai, the instant it passes (UTC, exclusive), the
    rule it came from (``Span.describe()``) and warnings about how it was counted (Chinese, for
    users). Its fields are those of ``contracts.tracking.Deadline``."""

    due_on: date
    due_at: datetime
    rule: str = ""
    warnings: tuple[str, ...] = ()


def end_of_day(day: date) -> datetime:
    """The instant a Shanghai day ends, in UTC: the start of the next Shanghai day (exclusive bound)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=SHANGHAI).astimezone(UTC)


def deadline_on(day: date, rule: str = "") -> Deadline:
    """A deadline on a given Shanghai day (e.g. an extension granted until a date)."""
    return Deadline(due_on=day, due_at=end_of_day(day), rule=rule)


def _shanghai_date(instant: datetime) -> date:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"an aware datetime is needed, got naive {instant.isoformat()}")
    return instant.astimezone(SHANGHAI).date()


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, _gregorian.monthrange(year, month)[1]))


def _shift(day: date, span: Span, calendar: WorkingCalendar, sign: int) -> tuple[date, list[int]]:
    """``day`` moved by ``span`` forwards (``sign=1``) or backwards (``-1``), and the years whose
    working days were counted by weekends only."""
    if span.unit is SpanUnit.months:
        return _add_months(day, sign * span.amount), []
    if span.unit is SpanUnit.calendar_days:
        return day + timedelta(days=sign * span.amount), []
    unscheduled: set[int] = set()
    remaining = span.amount
    while remaining > 0:
        day += timedelta(days=sign)
        if not calendar.has_schedule(day.year):
            unscheduled.add(day.year)
        if calendar.is_workday(day):
            remaining -= 1
    return day, sorted(unscheduled)


def _warn(years: list[int], what: str, start: date, span: Span) -> tuple[str, ...]:
    for year in years:
        log.warning(
            "no public holiday schedule loaded for %d: %s counted %s from %s by weekends only",
            year,
            what,
            span.describe(),
            start,
        )
    return tuple(f"{year}年法定节假日安排未载入，期限仅按周末计算，请核对" for year in years)


def deadline_after(start: datetime, span: Span, calendar: WorkingCalendar) -> Deadline:
    """The deadline ``span`` after the instant ``start`` (counted from the next Shanghai day)."""
    start_on = _shanghai_date(start)
    due_on, unscheduled = _shift(start_on, span, calendar, 1)
    warnings = _warn(unscheduled, "a deadline", start_on, span)
    return Deadline(due_on=due_on, due_at=end_of_day(due_on), rule=span.describe(), warnings=warnings)


def shift_before(deadline: Deadline, span: Span, calendar: WorkingCalendar) -> datetime:
    """The instant "due soon" (即将到期) starts: the end of the day ``span`` before ``due_on``, so that
    exactly ``span`` is left (7 calendar days before a deadline on the 24th: from the 18th, 00:00)."""
    day, unscheduled = _shift(deadline.due_on, span, calendar, -1)
    _warn(unscheduled, "a due-soon threshold", deadline.due_on, span)
    return end_of_day(day)


def shift_after(deadline: Deadline, span: Span, calendar: WorkingCalendar) -> datetime:
    """The instant "long overdue" (严重超期) starts: the end of the day ``span`` after ``due_on``
    (30 calendar days after a deadline on 12-24: from 01-24, 00:00)."""
    day, unscheduled = _shift(deadline.due_on, span, calendar, 1)
    _warn(unscheduled, "a long-overdue threshold", deadline.due_on, span)
    return end_of_day(day)
