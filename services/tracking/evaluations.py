"""Evaluation results recorded where they belong, and what a poor one sets off (测评结果不满意的，
重新督办 / 整改).

Tracking reads this level's EVALUATION stream. When a session's results are published:

* a subject that is a case of this level (kind ``case``, ``matter``, ``motion`` or ``proposal``:
  a case's id is its matter's) gets the result on its record (``CaseEvaluated``), and when it is
  rated below ``DUBAN_REOPEN_BELOW_RATE`` or 不满意 outnumbers 满意 and 基本满意 together, it is
  reopened for re-handling with a reason naming the session;
* a subject of kind ``plan_item`` (a topic, project or work item of a plan) gets the result on
  the item (``PlanItemEvaluated``); below the bar a rectification (整改) is opened for its lead
  unit (``plans.PlanHandlers.item_evaluated``).

Each result is recorded and acts once, however often it is delivered.
"""

from __future__ import annotations

import logging

from contracts.envelope import Envelope
from contracts.evaluation import KIND_NAMES, ResultsPublished, SubjectResult
from contracts.tracking import CaseEvaluated
from services.runtime.bus.reactions import Reactions, reacts_to
from services.runtime.es.commands import execute

from .domain import Case
from .handlers import TrackingHandlers, derived_id
from .plans import PlanHandlers

log = logging.getLogger("duban.tracking.evaluations")

CASE_SUBJECTS = ("case", "matter", "motion", "proposal")
PLAN_SUBJECTS = ("plan_item",)


class EvaluationResults(Reactions):
    def __init__(self, handlers: TrackingHandlers, plans: PlanHandlers, *, reopen_below_rate: float) -> None:
        self.handlers = handlers
        self.plans = plans
        self.reopen_below_rate = reopen_below_rate

    def below_bar(self, result: SubjectResult) -> bool:
        low = result.rate is not None and result.rate < self.reopen_below_rate
        return result.valid > 0 and (low or result.dissatisfied_dominates)

    @reacts_to(ResultsPublished)
    async def results_published(self, published: ResultsPublished, envelope: Envelope) -> None:
        for result in published.results:
            if result.subject.kind in PLAN_SUBJECTS:
                await self.plans.item_evaluated(result, published, envelope, below_bar=self.below_bar(result))
                continue
            if result.subject.kind not in CASE_SUBJECTS:
                continue
            await self.record_on_case(result, published, envelope)
            if not self.below_bar(result):
                continue
            rate = f"{result.rate:.0%}" if result.rate is not None else "—"
            reason = f"{published.title}（{KIND_NAMES[published.kind]}）满意率 {rate}，重新督办"
            case = await self.handlers.reopen_after_evaluation(result.subject.id, reason, envelope)
            if case is not None:
                log.info("case reopened by evaluation", extra={"case_id": case.id, "rate": result.rate})

    async def record_on_case(self, result: SubjectResult, published: ResultsPublished, envelope: Envelope) -> None:
        evaluated = CaseEvaluated(
            session_id=envelope.aggregate_id,
            session_title=published.title,
            session_kind=str(published.kind),
            counts=result.counts,
            valid=result.valid,
            rate=result.rate,
            below_bar=self.below_bar(result),
        )
        case_id = result.subject.id
        await execute(
            self.handlers.store,
            Case,
            case_id,
            lambda c: c.record_evaluation(evaluated),
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_ids=lambda n: [derived_id(envelope.event_id, case_id, "evaluated", str(i)) for i in range(n)],
        )
