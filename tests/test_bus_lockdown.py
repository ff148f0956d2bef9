"""Nobody forges what happened on the bus: a real nats-server with the users and permissions
``duban up`` gives it (``services/runtime/bus/accounts.py``, the same permissions as deploy/),
its streams made by ``provision`` as the administrator. Each attempt an attacker made (issue 19)
is refused: connecting without credentials, publishing another context's events, writing another
context's snapshots, deleting, purging or shrinking a stream, reading another level."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js.api import StreamConfig

from contracts import subjects
from services.runtime.bus.accounts import ADMIN, Credentials, provision, user_name
from services.runtime.bus.levels import inbox_prefix
from services.runtime.tools.nats_server import EmbeddedNats

WENLING, ZEGUO = "331081", "331081100"
LEVELS = (WENLING, ZEGUO)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("lockdown")
    credentials = Credentials.ensure(data / "credentials.json", LEVELS)
    nats_server = EmbeddedNats(data / "nats", extra_config=credentials.accounts_config(LEVELS)).start()

    async def provisioned() -> None:
        nc = await nats.connect(credentials.url(nats_server.url, ADMIN))
        try:
            await provision(nc, LEVELS)
        finally:
            await nc.close()

    asyncio.run(provisioned())
    yield nats_server, credentials
    nats_server.stop()


async def attempt(server, user: str, code: str, attempts) -> list[str]:
    """Run ``attempts(nc, js)`` as ``user`` and return the permission violations NATS reported."""
    nats_server, credentials = server
    errors: list[str] = []

    async def on_error(err: Exception) -> None:
        errors.append(str(err).lower())

    service = user.split("-")[0]
    nc = await nats.connect(
        credentials.url(nats_server.url, user), error_cb=on_error, inbox_prefix=inbox_prefix(code, service)
    )
    try:
        await attempts(nc, nc.jetstream(timeout=1))
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return [e for e in errors if "permissions violation" in e]


#: How long a call that NATS must refuse is given. One refused for want of permission is never
#: answered (the violation comes as an error on the connection; nats-py would wait its own timeout,
#: five seconds for some calls), while the local nats-server answers a permitted one in milliseconds.
REFUSED_AFTER_S = 0.5


async def refused(call) -> bool:
    try:
        await asyncio.wait_for(call, REFUSED_AFTER_S)
    except (TimeoutError, NatsError):
        return True
    return False


def test_the_credentials_and_the_configuration_are_the_owners_only(server):
    nats_server, credentials = server
    assert credentials.path.stat().st_mode & 0o777 == 0o600
    assert nats_server.config_path.stat().st_mode & 0o777 == 0o600
    assert json.loads(credentials.path.read_text())[ADMIN]


async def test_a_client_without_credentials_cannot_connect(server):
    nats_server, credentials = server
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(nats_server.url, allow_reconnect=False, max_reconnect_attempts=0)
    wrong = credentials.url(nats_server.url, user_name("notify", WENLING)).replace("notify-331081:", "tracking-331081:")
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(wrong, allow_reconnect=False, max_reconnect_attempts=0)


async def test_a_service_cannot_publish_another_contexts_events_nor_the_outbox(server):
    nats_server, credentials = server
    admin = await nats.connect(credentials.url(nats_server.url, ADMIN))
    seen: list[str] = []

    async def record(msg) -> None:
        seen.append(msg.subject)

    await admin.subscribe("duban.evt.>", cb=record)
    await admin.subscribe("duban.x.>", cb=record)
    await admin.flush()

    async def forge(nc, js):
        # the attacker's tracking.CaseClosed, from notify's user
        assert await refused(js.publish(f"duban.evt.tracking.{WENLING}.case-1", b"{}"))
        await nc.publish(f"duban.evt.intake.{WENLING}.m-1", b"{}")

    notify = await attempt(server, user_name("notify", WENLING), WENLING, forge)
    own = await attempt(
        server,
        user_name("tracking", WENLING),
        WENLING,
        lambda nc, js: js.publish(f"duban.evt.tracking.{WENLING}.case-1", b"{}", timeout=2),
    )
    for denied in (f"duban.evt.tracking.{WENLING}.case-1", f"duban.evt.intake.{WENLING}.m-1"):
        assert any(f'publish to "{denied}"' in e for e in notify), (denied, notify)
    assert own == []  # tracking publishes its own events
    sent = subjects.integration_subject("331000", WENLING, "MatterHandedOver")
    intake = await attempt(
        server, user_name("intake", WENLING), WENLING, lambda nc, js: js.publish(sent, b"{}", timeout=2)
    )
    assert intake == []  # intake escalates: it writes the OUTBOX
    outbox = await attempt(server, user_name("tracking", WENLING), WENLING, lambda nc, js: nc.publish(sent, b"{}"))
    assert any(f'publish to "{sent.lower()}"' in e for e in outbox)  # tracking never writes the OUTBOX
    await admin.flush()
    await asyncio.sleep(0.3)
    await admin.close()
    assert seen == [f"duban.evt.tracking.{WENLING}.case-1", sent]  # only what each may send got through


async def test_nobody_but_its_own_service_writes_a_contexts_snapshots(server):
    bucket = subjects.snapshot_bucket("tracking", WENLING)

    async def forge(nc, js):
        assert await refused(js.key_value(bucket))  # not even look at the bucket
        await nc.publish(f"$KV.{bucket}.case-1", b'{"lead_unit": "unit-forged"}')

    errors = await attempt(server, user_name("notify", WENLING), WENLING, forge)
    assert any(f'publish to "$kv.{bucket.lower()}.case-1"' in e for e in errors), errors

    async def own(nc, js):
        kv = await js.key_value(bucket)
        await kv.put("case-1", b"{}")

    assert await attempt(server, user_name("tracking", WENLING), WENLING, own) == []


async def test_no_service_deletes_purges_or_changes_a_stream_and_the_admin_cannot_purge_events(server):
    stream = subjects.event_stream("intake", WENLING)

    async def destroy(nc, js):
        assert await refused(js.delete_stream(stream))
        assert await refused(js.purge_stream(stream))
        assert await refused(
            js.update_stream(StreamConfig(name=stream, subjects=[f"duban.evt.intake.{WENLING}.*"], max_msgs=1))
        )
        assert await refused(js.add_stream(name="FORGED", subjects=["duban.evt.forged.>"]))
        assert await refused(js.delete_msg(stream, 1))

    errors = await attempt(server, user_name("intake", WENLING), WENLING, destroy)
    for api in ("stream.delete", "stream.purge", "stream.update", "stream.create.forged", "stream.msg.delete"):
        assert any(f"$js.api.{api}" in e for e in errors), (api, errors)
    # the event streams refuse a purge and a deleted message even to the administrator
    nats_server, credentials = server
    admin = await nats.connect(credentials.url(nats_server.url, ADMIN))
    try:
        info = await admin.jetstream().stream_info(stream)
        assert info.config.deny_purge and info.config.deny_delete
        assert await refused(admin.jetstream().purge_stream(stream))
    finally:
        await admin.close()


async def test_a_level_reads_nothing_of_another_level(server):
    async def peek(nc, js):
        assert await refused(js.stream_info(subjects.event_stream("intake", ZEGUO)))
        assert await refused(js.pull_subscribe(f"duban.evt.intake.{ZEGUO}.*", durable="peek", stream=f"INTAKE_{ZEGUO}"))
        await nc.subscribe(f"duban.evt.intake.{ZEGUO}.*")

    errors = await attempt(server, user_name("intake", WENLING), WENLING, peek)
    assert any(f'subscription to "duban.evt.intake.{ZEGUO}.*"' in e for e in errors), errors
    assert any(f"$js.api.stream.info.intake_{ZEGUO}" in e for e in errors), errors
