"""Bounds on what a request may ask for, shared by every service's API.

Days from 2000-01-01 to 2100-12-31, months from 2000-01 to 2100-12, offsets up to a million:
nothing duban keeps lies outside them, and the arithmetic done on a value outside them fails
(the day after 9999-12-31, 0001-01-01 turned into UTC, an offset beyond SQLite's 64-bit integers).
A request asking beyond them is refused 422 naming the parameter, in Chinese (``zh_reason`` in
``app.py`` knows the error types raised here), never answered 500.

- :data:`DayOrInstant` and :data:`Day` are query types (``since: DayOrInstant | None = Query(...)``).
- :func:`offset_query` and :func:`limit_query` are the ``Query`` of every paged list.
- :func:`dates_out_of_range` finds the days and instants of a command beyond the bounds (every
  command route checks its command with it, and intake's NATS command subject).
- :func:`month_within` checks a ``YYYY-MM`` (the type :data:`Month`; :func:`month_errors` for a
  command whose model has a ``month``). A path parameter takes it as
  ``month: Annotated[Month, Path(...)]``: FastAPI drops a type's own validators when the
  parameter's ``Path`` is its default instead.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, BaseModel, WithJsonSchema
from pydantic_core import PydanticCustomError

EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2100, 12, 31)
#: The furthest a list may be paged: far beyond any level's matters and cases.
MAX_OFFSET = 1_000_000

DATE_OUT_OF_RANGE = "date_out_of_range"
MONTH_OUT_OF_RANGE = "month_out_of_range"
#: The Chinese reasons of the error types above (``app.zh_reason``).
ZH_REASONS = {
    DATE_OUT_OF_RANGE: f"日期超出范围（应在 {EARLIEST_DAY} 至 {LATEST_DAY} 之间）",
    MONTH_OUT_OF_RANGE: f"月份无效（应为 {EARLIEST_DAY:%Y-%m} 至 {LATEST_DAY:%Y-%m} 之间的年月，如 2026-09）",
}

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def within_range(value: date) -> date:
    """``value`` (a day, or an instant by its own day) when it lies within the bounds."""
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise PydanticCustomError(DATE_OUT_OF_RANGE, "date outside {earliest} .. {latest}", _bounds())
    return value


def month_within(value: str) -> str:
    """``value`` when it is a ``YYYY-MM`` of a month within the bounds."""
    found = _MONTH.match(value)
    if found is None or not EARLIEST_DAY.year <= int(found.group(1)) <= LATEST_DAY.year:
        raise PydanticCustomError(MONTH_OUT_OF_RANGE, "month outside {earliest} .. {latest}", _bounds())
    return value


def _bounds() -> dict[str, Any]:
    return {"earliest": EARLIEST_DAY.isoformat(), "latest": LATEST_DAY.isoformat()}


#: A day within the bounds.
Day = Annotated[date, AfterValidator(within_range)]
#: A day (whole) or an instant, within the bounds.
DayOrInstant = Annotated[date | datetime, AfterValidator(within_range)]
#: A ``YYYY-MM`` within the bounds (its pattern shown in OpenAPI; the years checked here).
Month = Annotated[
    str, AfterValidator(month_within), WithJsonSchema({"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$"})
]


def month_errors(command: Any) -> list[dict[str, Any]]:
    """The ``check`` of command routes whose model has a ``month``: pydantic-shaped errors when it
    lies outside the bounds (the contract's own pattern allows any four-digit year)."""
    month = getattr(command, "month", None)
    if isinstance(month, str):
        try:
            month_within(month)
        except PydanticCustomError:
            return [{"loc": ("month",), "type": MONTH_OUT_OF_RANGE, "msg": "Month out of range"}]
    return []


def dates_out_of_range(value: Any, loc: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Every day or instant in ``value`` (a command: its fields, nested models, lists and
    mappings) outside the bounds, as pydantic-shaped errors naming where it is. The contracts take
    any date (other systems read them too); what comes in through duban's APIs is bounded here."""
    if isinstance(value, date):  # a datetime too, by its own day
        day = value.date() if isinstance(value, datetime) else value
        if EARLIEST_DAY <= day <= LATEST_DAY:
            return []
        return [{"loc": loc, "type": DATE_OUT_OF_RANGE, "msg": "Date out of range"}]
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return [error for name in fields for error in dates_out_of_range(getattr(value, name), (*loc, name))]
    if isinstance(value, list | tuple):
        return [error for n, item in enumerate(value) for error in dates_out_of_range(item, (*loc, n))]
    if isinstance(value, dict):
        return [error for key, item in value.items() for error in dates_out_of_range(item, (*loc, key))]
    return []


def offset_query() -> Any:
    """The ``offset`` of a paged list: from 0 to :data:`MAX_OFFSET`."""
    return Query(default=0, ge=0, le=MAX_OFFSET, description=f"跳过的条数（至多 {MAX_OFFSET}）")


def limit_query(default: int, most: int) -> Any:
    """The ``limit`` of a paged list: from 1 to ``most``."""
    return Query(default=default, ge=1, le=most, description=f"每页条数（至多 {most}）")


__all__ = [
    "DATE_OUT_OF_RANGE",
    "EARLIEST_DAY",
    "LATEST_DAY",
    "MAX_OFFSET",
    "MONTH_OUT_OF_RANGE",
    "ZH_REASONS",
    "Day",
    "DayOrInstant",
    "Month",
    "dates_out_of_range",
    "limit_query",
    "month_errors",
    "month_within",
    "offset_query",
    "within_range",
]
