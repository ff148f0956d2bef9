"""Structured logs: one JSON object per line, with the current trace and span ids."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from opentelemetry import trace

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
#: Characters a terminal or a log viewer acts on that JSON leaves as they are: DEL, the C1
#: controls (\x9b starts an escape sequence too) and the Unicode line and paragraph separators.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # JSON escapes C0 controls (an ANSI escape is \u001b); the rest a terminal would act on too
        return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(entry, ensure_ascii=False, default=str))


def setup_logging(level: str = "INFO", stream=None) -> None:
    """Send every ``duban.*`` log record to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("duban")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
