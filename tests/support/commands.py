"""Commands over NATS request/reply, as another system sends them (``duban.cmd.<context>.<level>.<command>``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError

from tests.support.chinese_errors import check_reply


async def command_request(
    nc: Client, context: str, here: str, command: str, body: Any, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Send ``body`` (JSON, or bytes as they are) and give the decoded reply; a refusal's words are
    checked as an HTTP one's are (:mod:`tests.support.chinese_errors`)."""
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    subject = f"duban.cmd.{context}.{here}.{command}"
    for _ in range(40):  # the broker's subscription reaches the server a moment after broker.start()
        try:
            reply = json.loads((await nc.request(subject, data, timeout=10, headers=headers)).data)
        except NoRespondersError:
            await asyncio.sleep(0.05)
            continue
        check_reply(reply, f"{command} over NATS")
        return reply
    raise AssertionError(f"no responder on {subject}")
