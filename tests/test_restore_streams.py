"""``bus/restore.py`` on its own, between two local nats-servers: what a restore keeps exactly
(sequences, gaps, headers, de-duplication), how a restore cut short goes on, and what it refuses."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import AsyncIterator

import nats
import pytest

from contracts import subjects
from services.runtime.bus.accounts import level_stream_configs, provision
from services.runtime.bus.backupfile import BackupFile, BackupRefused, write_backup
from services.runtime.bus.restore import RestoreError, Restorer, StoredMessage, read_stream, restore_level
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats

LEVEL = "331082"


@pytest.fixture
async def servers(tmp_path):
    with EmbeddedNats(tmp_path / "origin") as origin, EmbeddedNats(tmp_path / "fresh") as fresh:
        source = await nats.connect(origin.url)
        target = await nats.connect(fresh.url)
        try:
            await provision(source, [LEVEL], settings=Settings(jurisdiction=LEVEL))
            yield source.jetstream(), target.jetstream()
        finally:
            await source.close()
            await target.close()


def configs() -> list:
    return level_stream_configs(LEVEL, Settings(jurisdiction=LEVEL))


async def everything(js, stream: str) -> list[StoredMessage]:
    return [m async for m in read_stream(js, stream)]


async def test_sequences_headers_and_removed_dead_letters_come_back_as_they_were(servers):
    origin, fresh = servers
    event_stream, dlq = subjects.event_stream("intake", LEVEL), subjects.deadletter_stream(LEVEL)
    for n in range(30):
        await origin.publish(
            subjects.event_subject("intake", LEVEL, f"m{n % 4}"),
            f"commit {n}".encode(),
            headers={"Nats-Msg-Id": f"id-{n}", "Duban-Prev-Seq": str(max(0, n - 3))},
        )
    for n in range(6):
        await origin.publish(subjects.deadletter_subject(LEVEL, "intake", "relay"), f"dead {n}".encode())
    for seq in (2, 5, 6):  # an operator removed three dead letters
        await origin.delete_msg(dlq, seq)

    async def messages_of(stream: str):
        return (await origin.stream_info(stream)).state.last_seq, read_stream(origin, stream)

    await restore_level(fresh, configs(), messages_of)
    for stream in (event_stream, dlq):
        before, after = await everything(origin, stream), await everything(fresh, stream)
        assert [(m.seq, m.subject, m.data) for m in after] == [(m.seq, m.subject, m.data) for m in before]
        assert all(
            a.headers.get("Nats-Msg-Id") == b.headers.get("Nats-Msg-Id") for a, b in zip(after, before, strict=True)
        )
    info = await fresh.stream_info(dlq)
    assert (info.state.first_seq, info.state.last_seq, info.state.messages) == (1, 6, 3)
    # the restored messages fill the de-duplication window: an append again with an old id is recognised
    again = await fresh.publish(
        subjects.event_subject("intake", LEVEL, "m1"), b"commit 1", headers={"Nats-Msg-Id": "id-1"}
    )
    assert again.duplicate and again.seq == 2


async def test_a_restore_cut_short_goes_on_where_it_stopped(servers):
    origin, fresh = servers
    stream = subjects.event_stream("tracking", LEVEL)
    for n in range(500):
        await origin.publish(subjects.event_subject("tracking", LEVEL, f"c{n % 7}"), f"{n}".encode())
    config = next(c for c in configs() if c.name == stream)

    async def broken() -> AsyncIterator[StoredMessage]:
        async for message in read_stream(origin, stream):
            if message.seq == 321:
                raise ConnectionError("the line to the hub dropped")
            yield message

    with pytest.raises(ConnectionError):
        await Restorer(fresh).restore(config, broken(), last_seq=500)
    assert 0 < (await fresh.stream_info(stream)).state.last_seq <= 320
    done = await Restorer(fresh).restore(config, read_stream(origin, stream), last_seq=500)
    assert done.skipped > 0 and done.skipped + done.messages == 500
    assert [m.data for m in await everything(fresh, stream)] == [f"{n}".encode() for n in range(500)]


async def test_a_target_that_is_not_a_restore_of_this_copy_is_refused(servers):
    origin, fresh = servers
    stream = subjects.event_stream("notify", LEVEL)
    for n in range(5):
        await origin.publish(subjects.event_subject("notify", LEVEL, "n"), f"{n}".encode())
    config = next(c for c in configs() if c.name == stream)
    await fresh.add_stream(config)
    for n in range(6):
        await fresh.publish(subjects.event_subject("notify", LEVEL, "n"), f"other {n}".encode())
    with pytest.raises(RestoreError, match="more than the copy's 5"):
        await Restorer(fresh).restore(config, read_stream(origin, stream), last_seq=5)


async def test_a_backup_file_is_checked_whole_before_anything_is_restored(servers, tmp_path):
    origin, fresh = servers
    for n in range(20):
        await origin.publish(subjects.event_subject("evaluation", LEVEL, "s"), f"ballot {n}".encode())
    file = tmp_path / "backup.tar"
    manifest = await write_backup(origin, [LEVEL], file)
    entry = next(e for e in manifest["streams"] if e["name"] == subjects.event_stream("evaluation", LEVEL))
    assert (entry["messages"], entry["last_seq"]) == (20, 20)
    backup = BackupFile(file)
    backup.verify()
    await restore_level(fresh, configs(), backup.messages)
    assert (await fresh.stream_info(entry["name"])).state.last_seq == 20

    missing = tmp_path / "missing.tar"
    with tarfile.open(file) as tar, tarfile.open(missing, "w") as out:
        for member in tar.getmembers():
            if member.name != entry["file"]:
                out.addfile(member, tar.extractfile(member))
    with pytest.raises(BackupRefused, match="is missing; nothing was restored"):
        BackupFile(missing).verify()
    counted = tmp_path / "counted.tar"
    with tarfile.open(file) as tar, tarfile.open(counted, "w") as out:
        for member in tar.getmembers():
            data = tar.extractfile(member)
            if member.name == "manifest.json":
                changed = json.loads(data.read())
                next(e for e in changed["streams"] if e["name"] == entry["name"])["messages"] += 1
                body = json.dumps(changed).encode()
                member.size = len(body)
                data = io.BytesIO(body)
            out.addfile(member, data)
    with pytest.raises(BackupRefused, match=r"holds 20 messages, manifest\.json says 21"):
        BackupFile(counted).verify()
    with pytest.raises(BackupRefused, match=r"no readable manifest\.json"):
        not_one = tmp_path / "not-one.tar"
        with tarfile.open(not_one, "w") as out:
            out.add(file, arcname="something.tar")
        BackupFile(not_one)
