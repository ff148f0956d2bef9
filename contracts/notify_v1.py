"""``notify.DisclosureReleased`` as stored before a level had two bodies (人大 / 政协): version 1,
kept for the schema export, and its upcaster. An old disclosure is read as the body its kind
belongs to (``contracts.bodies.default_body``: a 提案 政协, anything else 人大), neither merged nor
topical, without a book number (it is listed after the numbered ones)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .bodies import default_body
from .events import Event, event, upcaster


class DisclosureText(BaseModel):
    """What the public reads of one closed key matter, as staff released it."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200, description="案由")
    leads: list[str] = Field(min_length=1, max_length=50, description="领衔者")
    unit: str = Field(min_length=1, max_length=200, description="主办单位")
    summary: str = Field(min_length=1, max_length=20_000, description="办理落实情况摘要")
    evaluation_result: str | None = Field(default=None, max_length=200, description="测评/评议结果")
    kind: str | None = None
    registration_no: str | None = None


@event("notify.DisclosureReleased", 1, current=False)
class DisclosureReleased(Event):
    """Staff released a closed key matter for public disclosure (公示)."""

    case_id: str
    text: DisclosureText


@upcaster("notify.DisclosureReleased", 1)
def _released_v2(payload: dict[str, Any]) -> dict[str, Any]:
    text = payload["text"]
    return {**payload, "text": {**text, "body": default_body(text.get("kind") or "").value}}
