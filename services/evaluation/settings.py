"""Evaluation's settings: the runtime's, plus the ballot key, rosters and closing by time.

Every field can be set from the environment as ``DUBAN_<FIELD>`` (``DUBAN_BALLOT_SECRET``…), like
the runtime's settings it extends.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.runtime.settings import Settings


class EvaluationSettings(Settings):
    """Settings of one level's evaluation service."""

    #: The key of secret ballot sheets' ids (keep it out of the event log; change it only between
    #: sessions).
    ballot_secret: str = "duban-development-ballot-key-change-me"
    #: Roster files beyond the packaged ones.
    rosters_file: Path | None = None
    #: How often sessions whose time is up are closed.
    session_check_interval_s: float = Field(default=5.0, gt=0)
