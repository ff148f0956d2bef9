"""Urging (催办): the periodic sweep over the cases whose deadline runs, and the plans' duties.

Each run reads the case list (a read model: it only narrows the search), and for every case
where a threshold of its current deadline has been reached and not yet fired (due soon, overdue,
long overdue), or whose open commitments must be carried into a new year, runs the command on
the aggregate. The aggregate decides, so each threshold fires exactly once per case and
deadline however often the sweep runs and however many sweepers run at once: it records what
fired, a second sweeper loses the version check and finds it fired, and event ids derived from
case, threshold and deadline make even a retried append a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.envelope import SHANGHAI
from contracts.tracking import Deadline

from .handlers import TrackingHandlers
from .plans import PlanHandlers
from .projections import HANDLING, sweep_candidates

log = logging.getLogger("duban.tracking.sweep")


@dataclass
class SweepReport:
    checked: int = 0
    urged: int = 0
    carried_over: int = 0
    duties_urged: int = 0


class Sweeper:
    """Runs the sweep every ``interval_s`` seconds until stopped."""

    def __init__(
        self,
        handlers: TrackingHandlers,
        engine: AsyncEngine,
        *,
        plans: PlanHandlers | None = None,
        interval_s: float = 60.0,
    ) -> None:
        self.handlers = handlers
        self.plans = plans
        self.engine = engine
        self.interval_s = interval_s
        self._stopping = asyncio.Event()

    async def sweep_once(self, now: datetime | None = None) -> SweepReport:
        now = now or self.handlers.clock()
        report = SweepReport()
        year = now.astimezone(SHANGHAI).year
        for row in await sweep_candidates(self.engine, jurisdiction=self.handlers.here):
            report.checked += 1
            if row["status"] in HANDLING and row["due_at"] is not None and self._due(row, now):
                report.urged += await self.handlers.urge(row["id"], now)
            elif row["open_commitments"] and (row["list_year"] or 0) < year:
                report.carried_over += await self.handlers.carry_over(row["id"], now)
        if self.plans is not None:
            report.duties_urged = await self.plans.sweep_duties(now)
        if report.urged or report.carried_over or report.duties_urged:
            log.info(
                "sweep fired",
                extra={
                    "checked": report.checked,
                    "urged": report.urged,
                    "carried_over": report.carried_over,
                    "duties_urged": report.duties_urged,
                },
            )
        return report

    def _due(self, row: dict, now: datetime) -> bool:
        """Whether some threshold of the row's deadline is reached and not recorded as fired."""
        deadline = Deadline(due_on=row["due_on"], due_at=row["due_at"], rule="")
        fired = set(row["fired"] or [])
        for threshold, at in self.handlers.thresholds(deadline).items():
            if now >= at and f"{threshold.value}@{deadline.key}" not in fired:
                return True
        return False

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep_once()
            except Exception:
                log.exception("sweep failed; next run in %ss", self.interval_s)
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()
