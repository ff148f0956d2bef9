"""Where a projector or a reaction reads: a stream, the subjects it filters, and the name its spans
carry (the subject template, not one aggregate's subject, so spans group by what they do).

- :func:`events`: one context's events at one level (``duban.evt.<context>.<code>.*``);
- :func:`inbox`: what other levels addressed to this one, of the given kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts import subjects


@dataclass(frozen=True)
class Source:
    stream: str
    filter_subjects: tuple[str, ...]
    span_subject: str


def events(context: str, jurisdiction: str) -> Source:
    """The events of ``context`` at level ``jurisdiction``."""
    return Source(
        subjects.event_stream(context, jurisdiction),
        (subjects.event_wildcard(context, jurisdiction),),
        subjects.event_subject_template(context),
    )


def inbox(jurisdiction: str, *kinds: str) -> Source:
    """The integration events of ``kinds`` that other levels sent to ``jurisdiction``."""
    return Source(
        subjects.inbox_stream(jurisdiction),
        tuple(f"duban.x.{jurisdiction}.*.{kind}" for kind in kinds),
        "duban.x.{to}.{from}.{kind}",
    )
