"""Finished spans in local files, and the journey of a matter read back from them.

On the embedded default no collector runs, yet an operator asked "where is my suggestion?" must
see the journey of that matter through every service and level. Each service process therefore
also writes its finished spans, one JSON object per line, to ``<data dir>/traces/<service>-
<jurisdiction>.jsonl`` (through a ``BatchSpanProcessor``, off the request path), and
``duban trace MATTER_ID`` reads every file there and prints the traces that touch the matter as
a tree: service, level, operation, duration, errors. With a collector (deploy/'s Jaeger) the same
spans go there over OTLP as well.

A file grows to ``max_bytes`` (64 MiB by default) and is then renamed ``….jsonl.1`` (one
generation kept), so a long-running level cannot fill its disk with traces.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic_core
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

#: Attributes whose value names a matter (or its case at a level: a case's id is its matter's id).
MATTER_ATTRIBUTES = ("duban.matter_id", "duban.aggregate.id")


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as the JSON object written to the file."""
    context = span.get_span_context()
    resource = span.resource.attributes if span.resource else {}
    attributes = span.attributes or {}
    return {
        "trace_id": _hex(context.trace_id, 32),
        "span_id": _hex(context.span_id, 16),
        "parent_id": _hex(span.parent.span_id, 16) if span.parent else None,
        "links": [
            {"trace_id": _hex(link.context.trace_id, 32), "span_id": _hex(link.context.span_id, 16)}
            for link in span.links
        ],
        "name": span.name,
        "kind": span.kind.name if span.kind else None,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "error": span.status.description,
        "service": resource.get("service.name"),
        "jurisdiction": resource.get("duban.jurisdiction"),
        # The SDK keeps each value as a str, bool, int or float or a tuple of them, which JSON
        # writes as it is (a tuple as an array).
        "attributes": dict(attributes),
    }


class FileSpanExporter(SpanExporter):
    """Appends finished spans to a JSON-lines file (see the module docstring)."""

    def __init__(self, path: Path, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # pydantic-core writes the JSON (compact, UTF-8), a third of the json module's time a span:
        # this runs in the export thread, which holds the interpreter lock the services' loops need.
        lines = b"".join(pydantic_core.to_json(span_record(s)) + b"\n" for s in spans)
        try:
            with self._lock:
                if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                with self.path.open("ab") as out:
                    out.write(lines)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def trace_file(directory: Path, service: str, jurisdiction: str, worker: int = 0) -> Path:
    """One file per process: a service's HTTP helpers (``http/workers.py``) write their own."""
    suffix = f"-{worker}" if worker else ""
    return directory / f"{service}-{jurisdiction}{suffix}.jsonl"


# -- reading back ------------------------------------------------------------------------------


def read_spans(directory: Path) -> Iterator[dict[str, Any]]:
    """Every span written under ``directory`` (current and rotated files); unreadable lines are skipped."""
    for path in sorted(directory.glob("*.jsonl*")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash


@dataclass
class Node:
    span: dict[str, Any]
    children: list[Node] = field(default_factory=list)

    @property
    def start(self) -> int:
        return self.span["start"] or 0


def journey(spans: Iterable[dict[str, Any]], matter_id: str) -> list[Node]:
    """The span trees of every trace that touches ``matter_id``, following links between traces.

    A trace touches the matter when one of its spans names the matter (or its case) in an
    attribute; traces linked from or to such a trace are taken too, so a request that continued
    the matter's journey (``telemetry.continue_journey``) is found from either side. Links are
    followed one step only: a trace linked to several matters' traces (a projection batch's,
    linked to the append of each event it applied; the registration book's own trace, in span
    files written before the book had none) would otherwise lead to every other matter it touched."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    linked: dict[str, set[str]] = defaultdict(set)
    wanted: set[str] = set()
    for span in spans:
        by_trace[span["trace_id"]].append(span)
        for link in span.get("links") or []:
            linked[span["trace_id"]].add(link["trace_id"])
            linked[link["trace_id"]].add(span["trace_id"])
        attributes = span.get("attributes") or {}
        if any(attributes.get(name) == matter_id for name in MATTER_ATTRIBUTES):
            wanted.add(span["trace_id"])
    wanted |= {other for trace_id in wanted for other in linked.get(trace_id, ()) if other in by_trace}
    roots: list[Node] = []
    for trace_id in wanted:
        nodes = {s["span_id"]: Node(s) for s in by_trace[trace_id]}
        for node in nodes.values():
            parent = nodes.get(node.span.get("parent_id") or "")
            (parent.children if parent is not None else roots).append(node)
    for node in _walk(roots):
        node.children.sort(key=lambda n: n.start)
    roots.sort(key=lambda n: n.start)
    return roots


def _walk(nodes: list[Node]) -> Iterator[Node]:
    for node in nodes:
        yield node
        yield from _walk(node.children)


def render(roots: list[Node]) -> str:
    """The trees as text: one line per span, indented under its parent."""
    lines: list[str] = []

    def line(node: Node, depth: int) -> None:
        span = node.span
        millis = ((span["end"] or span["start"]) - span["start"]) / 1e6
        attributes = span.get("attributes") or {}
        service = attributes.get("duban.service") or (span.get("service") or "?").removeprefix("duban-")
        where = attributes.get("duban.jurisdiction") or span.get("jurisdiction") or "?"
        error = f"  ERROR {span.get('error') or ''}".rstrip() if span.get("status") == StatusCode.ERROR.name else ""
        batch = attributes.get("messaging.batch.message_count")
        name = f"{span['name']} [batch of {batch}]" if batch else span["name"]
        lines.append(f"{'  ' * depth}{service:<10} {where:<9} {name}  {millis:.1f} ms{error}")
        for child in node.children:
            line(child, depth + 1)

    traces: dict[str, list[Node]] = defaultdict(list)
    for root in roots:
        traces[root.span["trace_id"]].append(root)
    for trace_id, trees in traces.items():
        lines.append(f"trace {trace_id}")
        for tree in trees:
            line(tree, 1)
    return "\n".join(lines)
