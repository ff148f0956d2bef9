"""Tracking's settings: the runtime's, plus deadlines, reply classes, review and the urging sweep.

Every field can be set from the environment as ``DUBAN_<FIELD>`` (``DUBAN_DEADLINES_FILE``,
``DUBAN_REPLY_CLASSES``…), like the runtime's settings it extends.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.runtime.settings import Settings


class TrackingSettings(Settings):
    """Settings of one level's tracking service."""

    #: The deadline policy (YAML, see ``deadlines.py``; defaults when unset) and a folder of
    #: holiday schedules for the years chinese-calendar does not know.
    deadlines_file: Path | None = None
    holidays_dir: Path | None = None
    #: The reply classes, best first (A/B/C; some places add D), and whether the committee reviews
    #: replies before they are released.
    reply_classes: list[str] = Field(default_factory=lambda: ["A", "B", "C"], min_length=1)
    review_replies: bool = False
    #: How often the urging sweep runs.
    sweep_interval_s: float = Field(default=60.0, gt=0)
    #: A case evaluated below this satisfaction rate (or with 不满意 dominating) is reopened.
    reopen_below_rate: float = Field(default=0.6, ge=0, le=1)
