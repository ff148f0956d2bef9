"""The channels a notice goes out on: e-mail over SMTP, webhooks to other systems (the in-app
inbox needs no sending: a notice there is delivered by being stored).

Each send either succeeds, or fails in one of three ways that delivery treats differently:

- :class:`TransientFailure`: nothing can have arrived (connection refused, the server answered a
  temporary error before accepting, the receiver answered 5xx/408/429): retried with backoff.
- :class:`PermanentFailure`: the receiver refused for good (SMTP 5xx, HTTP 4xx): no point in
  retrying; dead-lettered at once.
- :class:`UncertainOutcome`: the notice may have arrived (the connection dropped or timed out
  after the message was handed over): by the at-most-once rule it is *not* retried; the
  delivery is settled in doubt for an operator.

Webhook signature (for receivers)
---------------------------------
Every webhook is an HTTP ``POST`` of a JSON body (UTF-8) with these headers:

- ``Duban-Delivery-Id``: the delivery's id, the same on every attempt and replay (use it to
  recognise a notice seen before);
- ``Duban-Timestamp``: Unix seconds when the attempt was signed;
- ``Duban-Signature``: ``sha256=`` followed by the lowercase hex HMAC-SHA256, keyed with the
  shared secret, of the bytes ``<Duban-Timestamp>.`` followed by the raw body.

A receiver recomputes the HMAC over the raw body it received (before parsing it), compares in
constant time (``hmac.compare_digest``) and rejects timestamps more than five minutes away from
its clock, so a captured request cannot be replayed later. :func:`verify_signature` does exactly
that. Answer 2xx once the notice is taken; 5xx, 408 or 429 to have it retried; other 4xx to
refuse it for good.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
import httpx

from contracts.notify import DeliveryPlanned

SIGNATURE_HEADER = "Duban-Signature"
TIMESTAMP_HEADER = "Duban-Timestamp"
DELIVERY_HEADER = "Duban-Delivery-Id"
SIGNATURE_TOLERANCE_S = 300


class SendError(Exception):
    """A send that did not succeed; ``detail`` says why, without the notice's content."""


class TransientFailure(SendError):
    pass


class PermanentFailure(SendError):
    pass


class UncertainOutcome(SendError):
    pass


# -- signatures --------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Duban-Signature`` value of ``body`` signed at ``timestamp``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver runs: the signature matches and the timestamp is recent."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature or "")


# -- e-mail ------------------------------------------------------------------------------------


class EmailChannel:
    """Sends a notice as a UTF-8 e-mail; the Message-ID is derived from the delivery id, so a
    mailbox that sees a replayed notice can tell it is the same one."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout_s: float = 30.0,
        domain: str = "duban.local",
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password = username, password
        self.starttls, self.use_tls, self.timeout_s = starttls, use_tls, timeout_s
        self.domain = domain

    def message(self, delivery_id: str, planned: DeliveryPlanned) -> EmailMessage:
        message = EmailMessage()  # the default policy encodes a Chinese subject as RFC 2047 UTF-8
        message["From"] = self.sender
        message["To"] = planned.address or ""
        message["Subject"] = planned.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = f"<{delivery_id}@{self.domain}>"
        message["X-Duban-Delivery-Id"] = delivery_id
        message.set_content(planned.body, charset="utf-8")
        return message

    async def send(self, delivery_id: str, planned: DeliveryPlanned) -> str:
        if not planned.address:
            raise PermanentFailure("no e-mail address")
        message = self.message(delivery_id, planned)
        try:
            _, response = await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                start_tls=self.starttls,
                use_tls=self.use_tls,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            raise PermanentFailure(f"SMTP refused the recipient: {err}") from None
        except aiosmtplib.SMTPResponseException as err:
            if err.code == 421 or 400 <= err.code < 500:
                raise TransientFailure(f"SMTP {err.code}: {err.message}") from None
            raise PermanentFailure(f"SMTP {err.code}: {err.message}") from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError, ConnectionRefusedError) as err:
            raise TransientFailure(f"SMTP server unreachable: {type(err).__name__}: {err}") from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, TimeoutError, OSError) as err:
            # The conversation broke off: the server may or may not have queued the message.
            raise UncertainOutcome(f"SMTP conversation broke off: {type(err).__name__}: {err}") from None
        return f"SMTP {response}"[:500]


# -- webhooks ----------------------------------------------------------------------------------


def webhook_body(delivery_id: str, planned: DeliveryPlanned) -> bytes:
    """The JSON a receiver gets: the notice, its facts and where it came from."""
    document = {
        "delivery_id": delivery_id,
        "kind": planned.kind.value,
        "recipient": planned.recipient.model_dump(),
        "subject": planned.subject,
        "body": planned.body,
        "topic_id": planned.topic_id,
        "source": planned.source.model_dump(),
        "data": planned.data,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class WebhookChannel:
    """POSTs a notice, signed (see the module docstring), to the recipient's URL."""

    def __init__(self, *, secret: str, timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.secret = secret
        self.timeout_s = timeout_s
        self.client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def secret_for(self, secret_env: str | None) -> str:
        if secret_env and os.environ.get(secret_env):
            return os.environ[secret_env]
        return self.secret

    async def send(self, delivery_id: str, planned: DeliveryPlanned) -> str:
        if not planned.address:
            raise PermanentFailure("no webhook URL")
        body = webhook_body(delivery_id, planned)
        timestamp = int(time.time())
        secret = self.secret_for(planned.webhook_secret_env)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            DELIVERY_HEADER: delivery_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        try:
            response = await self.client.post(planned.address, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
            raise TransientFailure(f"webhook unreachable: {type(err).__name__}") from None
        except httpx.HTTPError as err:
            # Sent, or partly sent, and no answer: it may have been taken.
            raise UncertainOutcome(f"webhook gave no answer: {type(err).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return f"HTTP {status}"
        if status >= 500 or status in (408, 429):
            raise TransientFailure(f"webhook answered HTTP {status}")
        raise PermanentFailure(f"webhook refused with HTTP {status}")

    async def close(self) -> None:
        await self.client.aclose()
