"""Tests of deadlines as configuration (services.tracking.deadlines)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.envelope import SHANGHAI
from services.tracking.deadlines import (
    DeadlinePolicy,
    DeadlineRules,
    Span,
    SpanUnit,
    WorkingCalendar,
    deadline_after,
    deadline_on,
    end_of_day,
    shift_after,
    shift_before,
)

LOGGER = "duban.tracking.deadlines"
MISSING_2027 = "2027年法定节假日安排未载入，期限仅按周末计算，请核对"

#: Assigned (交办) the day before the 2026 Mid-Autumn break, 10:00 in Shanghai.
ASSIGNED = datetime(2026, 9, 24, 10, 0, tzinfo=SHANGHAI)

#: A fictitious 2027 schedule: 元旦 on Friday 1 January, a made-up holiday on Tuesday 5 January
#: and a made-up working Saturday on 9 January.
SCHEDULE_2027 = """\
year: 2027
source: test data, not the real schedule
holidays:
  - {name: 元旦, start: 2027-01-01}
  - {name: 虚构假日, start: 2027-01-05}
workdays:
  - {name: 虚构调休, start: 2027-01-09}
"""


def months(n: int) -> Span:
    return Span(amount=n, unit=SpanUnit.months)


def days(n: int) -> Span:
    return Span(amount=n, unit=SpanUnit.calendar_days)


def working_days(n: int) -> Span:
    return Span(amount=n, unit=SpanUnit.working_days)


@pytest.fixture
def calendar() -> WorkingCalendar:
    return WorkingCalendar()


@pytest.fixture
def holidays_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "holidays"
    directory.mkdir()
    (directory / "2027.yaml").write_text(SCHEDULE_2027, encoding="utf-8")
    return directory


# -- counting ----------------------------------------------------------------------------------


def test_suggestion_is_answered_within_three_months(calendar: WorkingCalendar) -> None:
    span = DeadlinePolicy().rules_for("county", "331081").answer_for("suggestion")
    deadline = deadline_after(ASSIGNED, span, calendar)
    assert deadline.due_on == date(2026, 12, 24)
    assert deadline.rule == "3个月"
    assert deadline.warnings == ()


def test_due_at_is_the_end_of_the_shanghai_day_stored_in_utc(calendar: WorkingCalendar) -> None:
    deadline = deadline_after(ASSIGNED, months(3), calendar)
    assert deadline.due_at.tzinfo is UTC
    assert deadline.due_at == datetime(2026, 12, 25, 0, 0, tzinfo=SHANGHAI)
    assert deadline.due_at == datetime(2026, 12, 24, 16, 0, tzinfo=UTC)
    assert end_of_day(date(2026, 12, 24)) == deadline.due_at
    assert deadline_on(date(2026, 12, 24)).due_at == deadline.due_at


def test_the_start_date_is_read_in_shanghai(calendar: WorkingCalendar) -> None:
    # 2026-09-24 20:00 UTC is already 2026-09-25 04:00 in Shanghai.
    late = datetime(2026, 9, 24, 20, 0, tzinfo=UTC)
    assert deadline_after(late, days(10), calendar).due_on == date(2026, 10, 5)
    assert deadline_after(ASSIGNED, days(10), calendar).due_on == date(2026, 10, 4)


def test_naive_instants_are_refused(calendar: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="aware"):
        deadline_after(datetime(2026, 9, 24, 10, 0), months(3), calendar)


@pytest.mark.parametrize(
    ("start", "n", "due_on"),
    [
        (date(2026, 11, 30), 3, date(2027, 2, 28)),
        (date(2027, 11, 30), 3, date(2028, 2, 29)),
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2026, 8, 31), 1, date(2026, 9, 30)),
        (date(2026, 10, 31), 14, date(2027, 12, 31)),
    ],
)
def test_months_are_clamped_to_the_end_of_the_month(
    calendar: WorkingCalendar, start: date, n: int, due_on: date
) -> None:
    at = datetime(start.year, start.month, start.day, 9, 0, tzinfo=SHANGHAI)
    deadline = deadline_after(at, months(n), calendar)
    assert deadline.due_on == due_on
    assert deadline.warnings == ()  # months do not depend on the holiday calendar


def test_working_days_skip_mid_autumn_and_national_day(calendar: WorkingCalendar) -> None:
    assert not calendar.is_workday(date(2026, 9, 25))  # 中秋节 (Friday)
    assert not calendar.is_workday(date(2026, 10, 5))  # 国庆节 (Monday)
    assert calendar.is_workday(date(2026, 10, 10))  # 国庆调休 (Saturday)
    assert not calendar.is_workday(date(2026, 10, 17))  # an ordinary Saturday
    deadline = deadline_after(ASSIGNED, working_days(15), calendar)
    # 9-28, 9-29, 9-30, 10-8, 10-9, 10-10 (Saturday), 10-12 .. 10-16, 10-19 .. 10-22
    assert deadline.due_on == date(2026, 10, 22)
    assert deadline.rule == "15个工作日"
    assert deadline.warnings == ()


def test_a_year_without_a_schedule_is_counted_by_weekends_and_says_so(
    calendar: WorkingCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    assert calendar.has_schedule(2026)
    assert not calendar.has_schedule(2027)
    start = datetime(2026, 12, 20, 10, 0, tzinfo=SHANGHAI)  # a Sunday
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        deadline = deadline_after(start, working_days(15), calendar)
    # 12-21 .. 12-25, 12-28 .. 12-31, then weekdays only: 1-1, 1-4 .. 1-8
    assert deadline.due_on == date(2027, 1, 8)
    assert deadline.warnings == (MISSING_2027,)
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(records) == 1
    assert "2027" in records[0].getMessage()
    assert "weekends only" in records[0].getMessage()


def test_a_loaded_schedule_removes_the_warning_and_is_honoured(
    holidays_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calendar = WorkingCalendar(holidays_dir)
    assert calendar.has_schedule(2027)
    assert not calendar.is_workday(date(2027, 1, 5))
    assert calendar.is_workday(date(2027, 1, 9))
    start = datetime(2026, 12, 20, 10, 0, tzinfo=SHANGHAI)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        deadline = deadline_after(start, working_days(15), calendar)
    # 12-21 .. 12-25, 12-28 .. 12-31, then 1-4, 1-6, 1-7, 1-8, 1-9 (Saturday), 1-11
    assert deadline.due_on == date(2027, 1, 11)
    assert deadline.warnings == ()
    assert not [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


def test_a_json_schedule_and_a_replaced_builtin_year(tmp_path: Path) -> None:
    (tmp_path / "2026.json").write_text(
        '{"year": 2026, "holidays": [{"name": "测试", "start": "2026-09-28", "end": "2026-09-30"}]}',
        encoding="utf-8",
    )
    calendar = WorkingCalendar(tmp_path)
    assert not calendar.is_workday(date(2026, 9, 28))
    # the file replaces the whole year: the built-in National Day break is no longer known
    assert calendar.is_workday(date(2026, 10, 5))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("2028.yaml", SCHEDULE_2027, "named for 2028"),
        ("2027.yaml", "year: 2027\nholidays: [{start: 2027-01-05}]\nworkdays: [{start: 2027-01-05}]\n", "both"),
        ("2027.yaml", "year: 2027\nholidays: [{start: 2072-01-05}]\n", "outside"),
        ("2027.yaml", "year: 2027\nholidays: [{start: 2027-01-05, end: 2027-01-01}]\n", "before start"),
        ("holidays-2027.yaml", SCHEDULE_2027, "name it after its year"),
    ],
)
def test_bad_schedule_files_are_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        WorkingCalendar(tmp_path)


def test_urging_thresholds(calendar: WorkingCalendar) -> None:
    deadline = deadline_after(ASSIGNED, months(3), calendar)  # due on 2026-12-24
    # 7 days left from 12-18 00:00; long overdue 30 days after the deadline passed
    assert shift_before(deadline, days(7), calendar) == datetime(2026, 12, 18, tzinfo=SHANGHAI)
    assert shift_before(deadline, days(7), calendar) == deadline.due_at - timedelta(days=7)
    assert shift_after(deadline, days(30), calendar) == datetime(2027, 1, 24, tzinfo=SHANGHAI)
    assert shift_after(deadline, days(30), calendar).tzinfo is UTC
    # 3 working days before 10-22 (Thursday) leaves 10-20, 10-21, 10-22
    national_day = deadline_on(date(2026, 10, 22))
    assert shift_before(national_day, working_days(3), calendar) == datetime(2026, 10, 20, tzinfo=SHANGHAI)
    # 5 working days left before 10-12 (Monday): 9-30, then over the break 10-8, 10-9, 10-10 (Saturday), 10-12
    assert shift_before(deadline_on(date(2026, 10, 12)), working_days(5), calendar) == datetime(
        2026, 9, 30, tzinfo=SHANGHAI
    )


def test_thresholds_into_an_unscheduled_year_are_logged(
    calendar: WorkingCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        shift_after(deadline_on(date(2026, 12, 30)), working_days(5), calendar)
    assert any("2027" in r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_spans_describe_themselves_in_chinese() -> None:
    assert months(3).describe() == "3个月"
    assert working_days(15).describe() == "15个工作日"
    assert days(10).describe() == "10日"


# -- policy ------------------------------------------------------------------------------------


def test_default_policy_follows_the_law_and_common_practice() -> None:
    rules = DeadlinePolicy().rules_for("prefecture", "331000")
    assert rules == DeadlineRules()
    assert [rules.answer_for(kind) for kind in ("suggestion", "motion", "proposal", "work_item")] == [months(3)] * 4
    assert rules.answer_for("problem") == rules.answer_for("demand") == months(1)
    assert rules.max_answer == months(6)
    assert rules.rehandling == months(1)
    assert rules.return_window == days(10)
    assert rules.co_unit_input == months(1)
    assert rules.due_soon == days(7)
    assert rules.long_overdue == days(30)
    with pytest.raises(ValueError, match="unknown matter kind"):
        rules.answer_for("petition")


def test_overrides_per_level_and_per_jurisdiction() -> None:
    policy = DeadlinePolicy.model_validate(
        {
            "levels": {"county": {"answer": {"suggestion": {"amount": 2, "unit": "months"}}}},
            "jurisdictions": {
                "331081": {
                    "return_window": {"amount": 5, "unit": "working_days"},
                    "answer": {"problem": {"amount": 15, "unit": "working_days"}},
                },
                "331081100": {"answer": {"suggestion": {"amount": 45, "unit": "calendar_days"}}},
            },
        }
    )
    wenling = policy.rules_for("county", "331081")
    assert wenling.answer_for("suggestion") == months(2)  # the level's
    assert wenling.answer_for("problem") == working_days(15)  # its own
    assert wenling.answer_for("proposal") == months(3)  # the default, kept kind by kind
    assert wenling.return_window == working_days(5)

    linhai = policy.rules_for("county", "331082")
    assert linhai.answer_for("suggestion") == months(2)
    assert linhai.answer_for("problem") == months(1)
    assert linhai.return_window == days(10)

    zeguo = policy.rules_for("township", "331081100")
    assert zeguo.answer_for("suggestion") == days(45)
    assert zeguo.return_window == days(10)  # a township does not inherit its county's override

    assert policy.rules_for("prefecture", "331000") == DeadlineRules()
    with pytest.raises(ValueError):
        policy.rules_for("province", "330000")


def test_policy_loads_from_yaml(tmp_path: Path, calendar: WorkingCalendar) -> None:
    path = tmp_path / "deadlines.yaml"
    path.write_text(
        """\
default:
  due_soon: {amount: 5, unit: working_days}
levels:
  township:
    answer:
      problem: {amount: 10, unit: working_days}
jurisdictions:
  "331081":
    rehandling: {amount: 20, unit: calendar_days}
""",
        encoding="utf-8",
    )
    policy = DeadlinePolicy.load(path)
    township = policy.rules_for("township", "331081100")
    assert township.due_soon == working_days(5)
    assert deadline_after(ASSIGNED, township.answer_for("problem"), calendar).due_on == date(2026, 10, 15)
    assert policy.rules_for("county", "331081").rehandling == days(20)
    assert policy.rules_for("county", "331081").due_soon == working_days(5)

    partial = tmp_path / "partial.yaml"
    partial.write_text("default:\n  answer:\n    suggestion: {amount: 2, unit: months}\n", encoding="utf-8")
    rules = DeadlinePolicy.load(partial).rules_for("prefecture")
    assert rules.answer_for("suggestion") == months(2)
    assert rules.answer_for("problem") == months(1)  # kinds not given keep the built-in default

    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert DeadlinePolicy.load(empty) == DeadlinePolicy()


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("default:\n  rehandling: {amount: -1, unit: months}\n", "default.rehandling.amount"),
        ("default:\n  rehandling: {amount: 1, unit: fortnights}\n", "default.rehandling.unit"),
        ("levels:\n  county:\n    answer:\n      sugestion: {amount: 1, unit: months}\n", "unknown matter kind"),
        ("levels:\n  province:\n    rehandling: {amount: 1, unit: months}\n", "levels.province"),
        ("jurisdictions:\n  Wenling:\n    rehandling: {amount: 1, unit: months}\n", "not a jurisdiction code"),
        ("default:\n  rehandlin: {amount: 1, unit: months}\n", "default.rehandlin"),
    ],
)
def test_a_bad_policy_file_is_a_validation_error(tmp_path: Path, text: str, location: str) -> None:
    path = tmp_path / "deadlines.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        DeadlinePolicy.load(path)
    assert location in str(info.value)
