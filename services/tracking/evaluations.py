"""Evaluation results that reopen supervision (测评结果不满意的，重新督办).

Tracking reads this level's EVALUATION stream: when a session's results are published, every
subject that is a case of this level (a case's id is its matter's, so subjects of kind ``case``
or ``matter``) rated below ``DUBAN_REOPEN_BELOW_RATE`` or with 不满意 outnumbering 满意 and 基本满意
together is reopened for re-handling, with a reason naming the session. Each result reopens a
case once, however often it is delivered.
"""

from __future__ import annotations

import logging

from contracts.envelope import Envelope
from contracts.evaluation import KIND_NAMES, ResultsPublished
from services.runtime.bus.reactions import Reactions, reacts_to

from .handlers import TrackingHandlers

log = logging.getLogger("duban.tracking.evaluations")

CASE_SUBJECTS = ("case", "matter")


class EvaluationResults(Reactions):
    def __init__(self, handlers: TrackingHandlers, *, reopen_below_rate: float) -> None:
        self.handlers = handlers
        self.reopen_below_rate = reopen_below_rate

    @reacts_to(ResultsPublished)
    async def results_published(self, published: ResultsPublished, envelope: Envelope) -> None:
        for result in published.results:
            if result.subject.kind not in CASE_SUBJECTS or result.valid == 0:
                continue
            low = result.rate is not None and result.rate < self.reopen_below_rate
            if not (low or result.dissatisfied_dominates):
                continue
            rate = f"{result.rate:.0%}" if result.rate is not None else "—"
            reason = f"{published.title}（{KIND_NAMES[published.kind]}）满意率 {rate}，重新督办"
            case = await self.handlers.reopen_after_evaluation(result.subject.id, reason, envelope)
            if case is not None:
                log.info("case reopened by evaluation", extra={"case_id": case.id, "rate": result.rate})
