"""Requests drawn from a service's own OpenAPI document, for the fuzz of tests/test_refusals_in_chinese.py.

Each operation's path, query and body are drawn from their schemas (``$ref``, ``anyOf``, enums,
patterns, lengths, bounds, dates, nested objects and lists), so most requests get past validation
and reach the handlers and read models; now and then a value is pushed past its bounds (a day in
year 1 or 9999, an integer past 64 bits, a string past its length) or replaced by a value of
another type, which must be refused 4xx. Ids are drawn from those the services have answered with
(real matters, cases, sessions, plans…) as well as made up; jurisdiction codes from real ones.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Real codes of 台州市, 温岭市, 泽国镇 and another county, besides made-up ones.
CODES = ["331000", "331081", "331081100", "331082", "331081101"]
#: Property and parameter names that take a jurisdiction code.
CODE_NAMES = {"raised_in", "jurisdiction", "to", "township", "reporter"}

ALPHABET = st.sampled_from(string.ascii_letters + string.digits + " -_.:/，。、问题建议代表镇村路水督办\n\t")
TEXT = st.text(alphabet=ALPHABET, max_size=30)
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
ZONES = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
DAYS = st.dates(date(2000, 1, 1), date(2100, 12, 31))
#: Days at and past the edges of what duban keeps, and of what Python's dates hold.
EDGE_DAYS = st.sampled_from(
    [date.min, date.max, date(1999, 12, 31), date(2000, 1, 1), date(2100, 12, 31), date(2101, 1, 1)]
)
EDGE_INTEGERS = st.sampled_from([-1, 0, 2**31, 2**63 - 1, 2**63, 10**20, -(2**63) - 1])


class Cases:
    """Strategies for the requests of one OpenAPI document.

    ``ids()`` gives the ids the services have answered with so far (drawn at each request, so a
    session created by one request can be opened by a later one)."""

    def __init__(self, spec: dict[str, Any], ids: Callable[[], list[str]]) -> None:
        self.spec = spec
        self.ids = ids
        #: Each strategy built once, by the schema it is for (kept here, so that its id stays its
        #: own) and how it is asked for: a strategy is only a description, and the ids it draws
        #: from are read at each draw.
        self._built: dict[tuple, tuple[Any, st.SearchStrategy]] = {}
        self.operations = sorted(
            (method.upper(), path, operation)
            for path, item in spec["paths"].items()
            for method, operation in item.items()
            if method in ("get", "post", "put", "delete", "patch")
        )

    # -- a request --------------------------------------------------------------------------
    def request(self, data: st.DataObject) -> dict[str, Any]:
        """One request: ``method``, ``path``, ``params``, ``headers`` and ``json``, ``content``
        or ``files``."""
        method, template, operation = data.draw(st.sampled_from(self.operations), label="operation")
        path, params, headers = template, {}, {}
        spoil = data.draw(st.integers(0, 7), label="spoil parameters") == 0
        for parameter in operation.get("parameters", []):
            name, where = parameter["name"], parameter["in"]
            if where == "path":
                value = data.draw(self.parameter(name, parameter.get("schema", {}), spoil), label=name)
                path = path.replace("{" + name + "}", quote(str(value), safe=""))
            elif where == "query":
                if parameter.get("required") or data.draw(st.booleans(), label=f"{name}?"):
                    value = data.draw(self.parameter(name, parameter.get("schema", {}), spoil), label=name)
                    if value is not None:
                        params[name] = value
            elif where == "header" and data.draw(st.booleans(), label=f"{name}?"):
                headers[name] = data.draw(st.from_regex(r"\A[A-Za-z0-9-]{1,40}\Z"), label=name)
        request: dict[str, Any] = {"method": method, "path": path, "params": params, "headers": headers}
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            schema = content["application/json"]["schema"]
            kind = data.draw(st.sampled_from(["valid"] * 6 + ["spoilt", "any JSON"]), label="body kind")
            if kind == "any JSON":
                request["json"] = data.draw(JSON_VALUES, label="body")
            else:
                request["json"] = data.draw(self.value(schema, name="body", spoil=kind == "spoilt"), label="body")
        elif "multipart/form-data" in content:
            request["files"] = {"file": data.draw(uploads(), label="file")}
        elif "application/x-www-form-urlencoded" in content:
            schema = self.resolve(content["application/x-www-form-urlencoded"]["schema"])
            form = data.draw(self._object(schema, 1), label="form")
            request["data"] = {name: _in_url(value) for name, value in form.items()}
        return request

    def _once(self, schema: Any, how: tuple, build: Callable[[], st.SearchStrategy]) -> st.SearchStrategy:
        key = (id(schema), *how)
        if key not in self._built:
            self._built[key] = (schema, build())
        return self._built[key][1]

    def parameter(self, name: str, schema: dict[str, Any], spoil: bool) -> st.SearchStrategy:
        """A value of a path or query parameter, as its text in the URL."""
        return self._once(schema, ("parameter", name, spoil), lambda: self._parameter(name, schema, spoil))

    def _parameter(self, name: str, schema: dict[str, Any], spoil: bool) -> st.SearchStrategy:
        if ID.pattern == self.resolve(schema).get("pattern") or name.endswith("_id") or name in ("plan", "item"):
            return self.an_id()
        return self.value(schema, name=name, spoil=spoil).map(_in_url)

    # -- values -----------------------------------------------------------------------------
    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def an_id(self) -> st.SearchStrategy:
        """A real id (one the services answered with, read at each draw) or a made-up one."""
        return self._once(None, ("id",), self._an_id)

    def _an_id(self) -> st.SearchStrategy:
        made_up = st.from_regex(r"\A[A-Za-z0-9_-]{1,20}\Z")
        real = st.integers(0, 10**6).map(lambda n: self._real(n) or "no-such-id")
        return real | real | made_up

    def _real(self, n: int) -> str | None:
        ids = self.ids()
        return ids[n % len(ids)] if ids else None

    def value(
        self, schema: dict[str, Any], *, name: str = "", depth: int = 0, spoil: bool = False
    ) -> st.SearchStrategy:
        """A JSON value of ``schema``; ``spoil``: here and there a value just past a bound, or of
        another type."""
        return self._once(schema, ("value", name, depth, spoil), lambda: self._value(schema, name, depth, spoil))

    def _value(self, schema: dict[str, Any], name: str, depth: int, spoil: bool) -> st.SearchStrategy:
        schema = self.resolve(schema)
        valid = self._valid(schema, name, depth, spoil)
        if not spoil or depth > 3:
            return valid
        return st.one_of(*[valid] * 8, self._beyond(schema), JSON_LEAVES)

    def _valid(self, schema: dict[str, Any], name: str, depth: int, spoil: bool = False) -> st.SearchStrategy:
        if "anyOf" in schema or "oneOf" in schema:
            return st.one_of(
                [self.value(s, name=name, depth=depth + 1) for s in schema.get("anyOf", schema.get("oneOf"))]
            )
        if "allOf" in schema:
            return self.value(schema["allOf"][0], name=name, depth=depth + 1, spoil=spoil)
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "const" in schema:
            return st.just(schema["const"])
        kind = schema.get("type")
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is None and high is None:
                return st.integers(-5, 1000)
            return st.integers(low, high)
        if kind == "number":
            low = schema.get("minimum", schema.get("exclusiveMinimum"))
            high = schema.get("maximum", schema.get("exclusiveMaximum"))
            return st.floats(low, high, allow_nan=False, allow_infinity=False)
        if kind == "string":
            return self._string(schema, name)
        if kind == "array":
            low = schema.get("minItems", 0)
            high = max(low, min(schema.get("maxItems", 3), 3))
            return st.lists(
                self.value(schema.get("items", {}), name=name, depth=depth + 1), min_size=low, max_size=high
            )
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth, spoil)
        return JSON_VALUES

    def _string(self, schema: dict[str, Any], name: str) -> st.SearchStrategy:
        form = schema.get("format")
        if form == "date":
            return st.one_of(*[DAYS] * 7, EDGE_DAYS).map(date.isoformat)
        if form == "date-time":
            days = st.one_of(*[DAYS] * 7, EDGE_DAYS)
            return st.builds(_instant, days, st.integers(0, 86399), st.sampled_from(ZONES))
        if name in CODE_NAMES:
            return st.sampled_from(CODES) | st.from_regex(r"\A\d{6}(\d{3})?\Z")
        pattern = schema.get("pattern")
        if pattern == ID.pattern or (pattern is None and (name == "id" or name.endswith("_id"))):
            return self.an_id()
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
        if pattern is not None:
            most = schema.get("maxLength", 10**6)
            return st.from_regex(pattern, fullmatch=True).filter(lambda s: low <= len(s) <= most)
        return st.text(alphabet=ALPHABET, min_size=low, max_size=max(low, high))

    def _object(self, schema: dict[str, Any], depth: int, spoil: bool = False) -> st.SearchStrategy:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        values = {name: self.value(s, name=name, depth=depth + 1, spoil=spoil) for name, s in properties.items()}
        fixed = {name: value for name, value in values.items() if name in required}
        optional = {name: value for name, value in values.items() if name not in required}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) or extra is True:
            more = self.value(extra, depth=depth + 1) if isinstance(extra, dict) else JSON_VALUES
            return st.fixed_dictionaries(fixed, optional=optional).flatmap(
                lambda found: st.dictionaries(TEXT, more, max_size=2).map(lambda extra: {**extra, **found})
            )
        return st.fixed_dictionaries(fixed, optional=optional)

    def _beyond(self, schema: dict[str, Any]) -> st.SearchStrategy:
        """A value just past the schema's bounds (or of its type with no bounds to pass)."""
        kind = schema.get("type")
        if kind == "integer":
            return EDGE_INTEGERS
        if kind == "string" and schema.get("format") == "date":
            return EDGE_DAYS.map(date.isoformat)
        if kind == "string" and "maxLength" in schema:
            return st.just("长" * (schema["maxLength"] + 1))
        if kind == "array":
            return st.just([])
        return JSON_LEAVES


def _instant(day: date, second: int, zone: timezone) -> str:
    """``day`` at ``second`` in ``zone``, as ISO 8601 (at the edges of Python's datetimes too)."""
    return (datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(seconds=second)).isoformat()


def _in_url(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_in_url(v) for v in value)
    if isinstance(value, dict) or value is None:
        return ""
    return str(value)


def uploads() -> st.SearchStrategy:
    """A file of an import: random bytes, CSV text with headers the importers know, or nothing."""
    headers = "类别,案由,内容,领衔人,领衔人编号,渠道\n"
    rows = st.lists(st.tuples(TEXT, TEXT, TEXT), max_size=3).map(
        lambda rs: headers + "".join(f"建议,{a},{b},{c},deputy-1,闭会期间\n" for a, b, c in rs)
    )
    return st.one_of(
        st.binary(max_size=200).map(lambda b: ("file.bin", b)),
        rows.map(lambda text: ("list.csv", text.encode())),
        st.just(("empty.csv", b"")),
        st.just(("plan.json", b'{"id": "plan-x", "jurisdiction": "331081"}')),
    )
