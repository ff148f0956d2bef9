"""The texts of notices: Jinja2 templates staff can change without code.

Each notice kind has ``templates/<kind>.j2`` with two blocks, ``subject`` and ``body``; the
shared macros of ``_macros.j2`` are there as ``m``. A deployment puts its own version of any
template in the folder named by ``DUBAN_TEMPLATES_DIR``, which is searched before the packaged
ones. Undefined names are errors (``StrictUndefined``): a template that names a fact a notice
does not have fails loudly (the notice is retried, then dead-lettered with the error) instead of
sending a text with a hole in it. Dates are shown in Asia/Shanghai.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2

from contracts.envelope import SHANGHAI

PACKAGED = Path(__file__).parent / "templates"


def zh_date(value: date | datetime | str | None) -> str:
    """2026-12-24 → 2026年12月24日 (an instant is read in Asia/Shanghai)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.astimezone(SHANGHAI).date() if value.tzinfo else value.date()
    return f"{value.year}年{value.month}月{value.day}日"


def last_day(value: datetime | str | None) -> date | None:
    """The last day (Asia/Shanghai) before an instant that ends a window: a return allowed
    "until 2026-12-08 00:00" is allowed on 12月7日 and no later."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return (value - timedelta(microseconds=1)).astimezone(SHANGHAI).date()


def zh_datetime(value: datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    local = value.astimezone(SHANGHAI) if value.tzinfo else value
    return f"{local.year}年{local.month}月{local.day}日{local.hour:02d}:{local.minute:02d}"


def _loader(override: Path | None) -> jinja2.BaseLoader:
    loaders: list[jinja2.BaseLoader] = []
    if override is not None:
        loaders.append(jinja2.FileSystemLoader(str(override)))
    loaders.append(jinja2.FileSystemLoader(str(PACKAGED)))
    return jinja2.ChoiceLoader(loaders)


class Templates:
    """Renders notices (plain text) and the public disclosure page (HTML, escaped)."""

    def __init__(self, override: Path | None = None) -> None:
        self.text = jinja2.Environment(
            loader=_loader(override),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text: mail and inbox bodies are not HTML
            keep_trailing_newline=False,
        )
        self.html = jinja2.Environment(loader=_loader(override), undefined=jinja2.StrictUndefined, autoescape=True)
        for env in (self.text, self.html):
            env.filters["zh_date"] = zh_date
            env.filters["zh_datetime"] = zh_datetime
            env.filters["last_day"] = last_day
        self.text.globals["m"] = self.text.get_template("_macros.j2").module

    def notice(self, kind: str, context: dict[str, Any]) -> tuple[str, str]:
        """The subject (one line) and body of a notice of ``kind``."""
        template = self.text.get_template(f"{kind}.j2")
        rendered = template.new_context(context)
        subject = "".join(template.blocks["subject"](rendered))
        body = "".join(template.blocks["body"](rendered))
        return " ".join(subject.split()), body.strip() + "\n"

    def page(self, name: str, context: dict[str, Any]) -> str:
        return self.html.get_template(name).render(context)
