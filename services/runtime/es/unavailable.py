"""Telling "the bus or the store is away" apart from "this message or request is bad".

NATS restarts, a leaf link is cut, JetStream is still recovering its streams, a database is
restarted: the work in hand is fine and will succeed once they are back. Such failures must
never use up a message's attempts (a message would be dead-lettered for nothing, and the
dead-letter stream is on the same server that is away), and an HTTP caller gets 503 with
``Retry-After`` rather than 500. Everything else is the message's or the request's own fault.

Measured with nats-server 2.15.1 and nats-py 2.16: while the server is down, a request times out
(``nats.errors.TimeoutError``) or, once the client knows it is disconnected, fails with
``ConnectionClosedError``/``OutboundBufferLimitError``; right after a restart, a memory-storage
stream that is gone answers a direct get with ``NoRespondersError``, and JetStream answers 503
(``ServiceUnavailableError``) until it has recovered.
"""

from __future__ import annotations

import nats.errors
import nats.js.errors
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from .eventstore import StoreUnavailable

#: JetStream's API error codes that mean "not now" rather than "no": 10008 JetStream temporarily
#: unavailable, 10023 insufficient resources, 10039 JetStream not enabled (a server still
#: starting), 10059 stream not found (a stream being restored after a restart).
UNAVAILABLE_API_CODES = frozenset({10008, 10023, 10039, 10059})

BUS_ERRORS: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    nats.errors.TimeoutError,  # not any TimeoutError: a mail server's or a webhook's is the work's own
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoServersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)
DATABASE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
#: PostgreSQL's refusals of a moment (SQLSTATE): a deadlock, of which it aborts one side (a
#: projector's batch and ``duban rebuild``'s swap locking the same tables in another order), a
#: serialization failure, a lock not granted in time. asyncpg's come as a plain ``DBAPIError``,
#: not an ``OperationalError``.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def bus_unavailable(err: BaseException) -> bool:
    """Whether ``err`` says that NATS / JetStream is away (or not yet back), not that the work is bad."""
    if isinstance(err, BUS_ERRORS):
        return True
    if isinstance(err, nats.js.errors.APIError):
        return err.code == 503 or err.err_code in UNAVAILABLE_API_CODES
    return False


def database_unavailable(err: BaseException) -> bool:
    """Whether ``err`` says that the database is away, or refused for a moment: the same
    transaction, tried again, can succeed."""
    if isinstance(err, DATABASE_ERRORS):
        return True
    return isinstance(err, DBAPIError) and getattr(err.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def unavailable(err: BaseException) -> bool:
    """Whether ``err`` says that NATS or the database is away: try again later, count no attempt."""
    return bus_unavailable(err) or database_unavailable(err)
