"""A county's disk dies: its levels brought back from the hub's mirrors, and from a backup file.

deploy/'s NATS configurations run as local processes (the 3-node hub, the county leaf nodes, as
tests/test_deploy_nats.py), the hub keeping a mirror of every stream of 温岭市 and 泽国镇 (its
provisioning with ``DUBAN_MIRRORED_LEVELS``, as compose's ``provision-331000``). Intake and tracking
run at 台州市 and 温岭市 under their deploy users. 温岭市 works — matters handled at home, escalated
to 台州市, replied there — then two escalations are made while its relay has not sent them yet;
the leaf is killed (SIGKILL) and its store deleted; a fresh leaf starts empty and ``duban restore``
(the command line, one level at a time, as the runbook) puts the levels back. Then: every aggregate
has the version it had, every read model equals one rebuilt from the events, the two escalations
arrive at 台州市 once, nothing 温岭市 had sent is in 台州市's INBOX twice, and 温岭市 goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import nats
import pytest
from prometheus_client import generate_latest
from sqlalchemy import inspect

from contracts import subjects
from contracts.intake import Channel, EscalateMatter, MatterData, MatterKind, RegisterMatter, RouteMatter, SubmitMatter
from contracts.intake import Submitter as Person
from contracts.tracking import SubmitReply
from services.intake.app import IntakeService
from services.intake.domain import Matter
from services.intake.handlers import derived_id
from services.runtime.bus.mirrors import mirror_name
from services.runtime.observe.metrics import REGISTRY, status
from services.runtime.settings import Settings
from services.runtime.tasks import cancel_and_wait
from services.tracking.app import TrackingService
from services.tracking.domain import Case
from tests.support.deploy import boot, staff, station
from tests.support.tracking import LEAD, assignment, unit
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

TAIZHOU, WENLING, ZEGUO = "331000", "331081", "331081100"
COUNTY_LEVELS = (WENLING, ZEGUO)
DUBAN = (sys.executable, "-m", "services.runtime.tools.cli")
ENV = ("DUBAN_JETSTREAM_DOMAIN", "DUBAN_LEVEL_DOMAINS", "DUBAN_MIRRORED_LEVELS")


class Levels:
    """The deployment, and intake + tracking of 台州市 and 温岭市 as their deploy users."""

    def __init__(self, deployment, workdir: Path) -> None:
        self.deployment = deployment
        self.workdir = workdir
        self.topology = deployment.topology
        self.services: dict[tuple[str, str], IntakeService | TrackingService] = {}

    def settings(self, code: str, service: str, data: Path) -> Settings:
        """What compose gives the service (``LevelTopology`` reads the environment)."""
        for name in ENV:
            os.environ.pop(name, None)
        os.environ.update(self.deployment.level_env(code))
        return Settings(
            jurisdiction=code,
            nats_url=self.deployment.service_url(service, code),
            nats_ca_file=self.deployment.ca_file,
            data_dir=data,
            stream_replicas=self.topology.replicas if code == TAIZHOU else 1,
        )

    async def start(self, code: str, data: Path | None = None) -> None:
        data = data or self.workdir / "data"
        intake = IntakeService(self.settings(code, "intake", data))
        await intake.start()
        tracking = TrackingService(self.settings(code, "tracking", data))
        await tracking.start(sweep=False)
        self.services[code, "intake"], self.services[code, "tracking"] = intake, tracking

    async def stop(self, code: str) -> None:
        for service in ("tracking", "intake"):
            found = self.services.pop((code, service), None)
            if found is not None:
                with contextlib.suppress(Exception):
                    await found.stop()

    def intake(self, code: str) -> IntakeService:
        return self.services[code, "intake"]

    def tracking(self, code: str) -> TrackingService:
        return self.services[code, "tracking"]

    async def admin(self, code: str) -> nats.NATS:
        return await nats.connect(self.deployment.url(code, "admin"), tls=self.deployment.tls())

    def duban(self, *args: str, level: str) -> subprocess.CompletedProcess:
        """The command line as an operator runs it for ``level`` (its provisioner's settings)."""
        env = {
            **{k: v for k, v in os.environ.items() if k not in ENV},
            **self.deployment.level_env(level),
            "DUBAN_JURISDICTION": level,
            "DUBAN_NATS_CA_FILE": str(self.deployment.ca_file),
            "DUBAN_STREAM_REPLICAS": "1",
        }
        return subprocess.run([*DUBAN, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
async def levels(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("restore")
    deployment = await boot(workdir)
    found = Levels(deployment, workdir)
    saved = {k: os.environ.get(k) for k in ENV}
    try:
        await found.start(TAIZHOU)
        await found.start(WENLING)
        yield found
    finally:
        for code in (WENLING, TAIZHOU):
            await found.stop(code)
        deployment.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- what the county does ----------------------------------------------------------------------
def _matter(code: str, title: str) -> MatterData:
    return MatterData(
        kind=MatterKind.problem,
        title=title,
        content=f"{title}：群众反映强烈。",
        lead=Person(id=f"deputy-{code}", name="代表"),
        channel=Channel.liaison_station,
        raised_in=code,
    )


async def submitted(levels: Levels, title: str) -> str:
    intake = levels.intake(WENLING).handlers
    matter = await intake.submit(SubmitMatter(matter=_matter(WENLING, title)), station(WENLING))
    await intake.register(RegisterMatter(matter_id=matter.id), staff(WENLING))
    return matter.id


async def escalated(levels: Levels, title: str) -> str:
    matter_id = await submitted(levels, title)
    await levels.intake(WENLING).handlers.escalate(
        EscalateMatter(matter_id=matter_id, reason="超出县级事权"), staff(WENLING)
    )
    return matter_id


async def handled_at(levels: Levels, code: str, matter_id: str) -> str:
    """Route the matter at ``code``, assign its case and reply (the case has the matter's id); a
    matter taken in from below is registered first."""
    if code == TAIZHOU:
        await levels.intake(code).handlers.register(RegisterMatter(matter_id=matter_id), staff(code))
    await levels.intake(code).handlers.route(RouteMatter(matter_id=matter_id, committee="城建环资工委"), staff(code))
    tracking = levels.tracking(code).handlers

    async def opened():
        return (await tracking.store.load(Case, matter_id)).exists

    await eventually(opened, 30, f"the case of {matter_id} at {code}", interval=0.2)
    await tracking.assign(assignment(matter_id), staff(code))
    await tracking.reply(SubmitReply(case_id=matter_id, reply_class="A", text="已办理完毕"), unit(LEAD, code))
    return matter_id


async def at_taizhou(levels: Levels, matter_id: str) -> Matter:
    hub_id = derived_id(WENLING, matter_id, TAIZHOU)

    async def arrived():
        matter = await levels.intake(TAIZHOU).handlers.store.load(Matter, hub_id)
        return matter if matter.exists else None

    return await eventually(arrived, 90, f"{matter_id} escalated to 台州市", interval=0.2)


# -- what is compared ------------------------------------------------------------------------------
async def versions(levels: Levels) -> dict[str, int]:
    """Every aggregate of 温岭市 and 泽国镇: its subject and version (the sequence of its last commit)."""
    nc = await levels.admin(WENLING)
    js = nc.jetstream()
    found = {}
    try:
        for code in COUNTY_LEVELS:
            for context in subjects.CONTEXTS:
                stream = subjects.event_stream(context, code)
                info = await js.stream_info(stream, subjects_filter=">")
                for subject in info.state.subjects or {}:
                    found[subject] = (await js.get_msg(stream, subject=subject, direct=True)).seq
    finally:
        await nc.close()
    return found


async def read_models(*services) -> dict[str, list[tuple]]:
    """Every table of the services' read-model databases, rows sorted (checkpoints without their time)."""
    dump = {}
    for service in services:
        async with service.engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            for name in names:
                rows = (await conn.exec_driver_sql(f'SELECT * FROM "{name}"')).mappings().all()
                kept = [tuple(sorted((k, str(v)) for k, v in row.items() if k != "updated_at")) for row in rows]
                dump[f"{service.context}.{name}"] = sorted(kept)
    return dump


async def mirrored(levels: Levels) -> None:
    """Wait until the hub's mirror of every stream of 温岭市 and 泽国镇 has all its messages."""
    leaf, hub = await levels.admin(WENLING), await levels.admin(TAIZHOU)

    async def caught_up() -> bool:
        for code in COUNTY_LEVELS:
            for stream in subjects.level_streams(code):
                origin = await leaf.jetstream().stream_info(stream)
                copy = await hub.jetstream().stream_info(mirror_name(stream))
                if copy.state.last_seq != origin.state.last_seq:
                    return False
        return True

    try:
        await eventually(caught_up, 90, "the hub's mirrors of 温岭市", interval=0.2)
    finally:
        await leaf.close()
        await hub.close()


async def handed_over_at_hub(levels: Levels) -> int:
    hub = await levels.admin(TAIZHOU)
    try:
        subject = subjects.integration_subject(TAIZHOU, WENLING, "matter-handed-over")
        info = await hub.jetstream().stream_info(subjects.inbox_stream(TAIZHOU), subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await hub.close()


# -- the loss ------------------------------------------------------------------------------------
async def work(levels: Levels, tag: str) -> dict:
    """温岭市 works (a matter handled at home, two escalated and replied at 台州市), then its relay
    stops, as if the disk died before it ran: two escalations stored, not yet sent. What it has."""
    local = await submitted(levels, f"{tag}镇村道路破损")
    await handled_at(levels, WENLING, local)
    up = [await escalated(levels, f"{tag}跨县域河道治理{n}") for n in range(2)]
    for matter_id in up:
        hub_matter = await at_taizhou(levels, matter_id)
        await handled_at(levels, TAIZHOU, hub_matter.id)

    async def answered() -> bool:  # 台州市's answers are back: its id, and its reply
        for matter_id in up:
            matter = await levels.intake(WENLING).handlers.store.load(Matter, matter_id)
            if matter.forwarded_as is None or matter.reply_from is None:
                return False
        return True

    await eventually(answered, 90, "台州市's ids and replies at 温岭市", interval=0.2)
    relay = next(t for t in levels.intake(WENLING)._tasks if t.get_name() == "intake-intake_outbox_relay")
    await cancel_and_wait(relay)
    in_flight = [await escalated(levels, f"{tag}在途上报事项{n}") for n in range(2)]
    await levels.tracking(WENLING).wait_idle()
    await levels.intake(TAIZHOU).wait_idle()
    await idle_but_the_relay(levels.intake(WENLING))
    await mirrored(levels)
    before = {
        "versions": await versions(levels),
        "handed_over": await handed_over_at_hub(levels),
        "in_flight": in_flight,
        "cases": [local],
        "matters": [local, *up, *in_flight],
    }
    assert before["handed_over"] >= 2
    return before


async def idle_but_the_relay(intake: IntakeService, timeout: float = 60) -> None:
    """Every worker of 温岭市's intake has handled what is waiting (the relay, stopped, aside)."""
    js = intake.nc.jetstream()

    async def idle() -> bool:
        for worker in intake.workers:
            if worker.durable != "intake_outbox_relay":
                info = await js.consumer_info(worker.stream, worker.durable)
                if info.num_pending or info.num_ack_pending:
                    return False
        return True

    await eventually(idle, timeout, "温岭市's intake to be idle", interval=0.2)


async def lose(levels: Levels) -> None:
    """温岭市's services stop, its leaf node is killed (SIGKILL) and its store deleted; a fresh
    leaf node starts on the same configuration with an empty store."""
    await levels.stop(WENLING)
    leaf = levels.deployment.leaves[WENLING]
    leaf.kill()
    shutil.rmtree(leaf.store_dir / "jetstream")
    await asyncio.to_thread(leaf.start, 30)
    nc = await levels.admin(WENLING)
    try:
        assert [info.config.name for info in await nc.jetstream().streams_info()] == []
    finally:
        await nc.close()


async def check_restored(levels: Levels, before: dict) -> None:
    """Every aggregate as it was, read models equal to a rebuild, the escalations in flight at
    台州市 once, nothing sent twice, and 温岭市 working on."""
    assert await versions(levels) == before["versions"]
    await levels.start(WENLING)
    intake, tracking = levels.intake(WENLING), levels.tracking(WENLING)
    for matter_id in before["matters"]:
        if matter_id in before["in_flight"]:
            continue  # 台州市's answer to them may be back already (checked below)
        matter = await intake.handlers.store.load(Matter, matter_id)
        assert matter.version == before["versions"][subjects.event_subject("intake", WENLING, matter_id)]
    for case_id in before["cases"]:
        case = await tracking.handlers.store.load(Case, case_id)
        assert case.version == before["versions"][subjects.event_subject("tracking", WENLING, case_id)]
    for matter_id in before["in_flight"]:
        await at_taizhou(levels, matter_id)
    await levels.intake(TAIZHOU).wait_idle()
    await intake.wait_idle()
    await tracking.wait_idle()
    # each hand-over once: the two in flight are new, none of the earlier ones came again
    assert await handed_over_at_hub(levels) == before["handed_over"] + len(before["in_flight"])
    # the reactions ran again over the restored streams and appended nothing twice: only the
    # matters in flight have a new commit (台州市's answer, MatterTakenIn)
    now = await versions(levels)
    answered = {subjects.event_subject("intake", WENLING, m) for m in before["in_flight"]}
    changed = {s for s, version in before["versions"].items() if now[s] != version}
    assert changed == answered
    restored = await read_models(intake, tracking)
    await levels.stop(WENLING)
    await levels.start(WENLING, data=levels.workdir / f"rebuilt-{time.monotonic_ns()}")
    await levels.intake(WENLING).wait_idle()
    await levels.tracking(WENLING).wait_idle()
    rebuilt = await read_models(levels.intake(WENLING), levels.tracking(WENLING))
    assert rebuilt.keys() == restored.keys()
    for table in restored:
        assert rebuilt[table] == restored[table], table
    # and it goes on: a new escalation reaches 台州市
    await at_taizhou(levels, await escalated(levels, "恢复后新上报的事项"))


async def test_a_county_is_restored_from_the_hubs_mirror(levels):
    before = await work(levels, "镜像")
    # the hub's intake reports its mirrors of 温岭市 and 泽国镇 (and of 临海市): all caught up
    hub = levels.intake(TAIZHOU)
    reported = await status(hub.nc.jetstream(), hub.watched())
    mirrors = {m["mirror"]: m for m in reported["mirrors"]}
    for code in COUNTY_LEVELS:
        for stream in subjects.level_streams(code):
            assert mirrors[mirror_name(stream)]["lag"] == 0
            assert 0 <= mirrors[mirror_name(stream)]["last_contact_s"] < 60
    assert mirrors[mirror_name(subjects.event_stream("intake", WENLING))]["messages"] > 0
    assert b'duban_mirror_lag{mirror="MIRROR_INTAKE_331081"} 0.0' in generate_latest(REGISTRY)
    await lose(levels)
    # one level at a time, as the runbook says: 温岭市 reading the hub's mirrors through its own new
    # server's leaf link (the hub's domain), 泽国镇 from the hub's client port
    ways = {
        WENLING: ("--mirror-domain", levels.topology.hub_domain),
        ZEGUO: ("--mirror-nats", levels.deployment.url(TAIZHOU, "admin")),
    }
    for code, way in ways.items():
        done = levels.duban(
            "restore", "--level", code, "--from-mirror", *way, "--nats", levels.deployment.url(WENLING, "admin"),
            level=code,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        assert f"restored {code}" in done.stdout
    await check_restored(levels, before)


def backup(levels: Levels, code: str, file: Path) -> None:
    made = levels.duban(
        "backup", "--level", code, "--out", str(file), "--nats", levels.deployment.url(WENLING, "admin"), level=code
    )
    assert made.returncode == 0, made.stderr + made.stdout


async def test_nobody_at_a_county_can_alter_the_hubs_copies_of_its_streams(levels):
    """Not the county's services (the hub's domain is not in their permissions), not even its
    administrator through the leaf link: the hub lets a county's leaf node read its mirrors, never
    delete, purge, change or write them."""
    await submitted(levels, "镜像保护核对事项")
    await mirrored(levels)
    county = await levels.admin(WENLING)
    try:
        hub = county.jetstream(domain=levels.topology.hub_domain, timeout=3)
        name = mirror_name(subjects.event_stream("intake", WENLING))
        assert (await hub.stream_info(name)).state.messages > 0  # it may look (what a restore reads)
        for attempt in (hub.delete_stream(name), hub.purge_stream(name), hub.delete_msg(name, 1)):
            with pytest.raises(Exception):  # noqa: B017 - refused by permission: no answer, a timeout
                await attempt
        hub_admin = await levels.admin(TAIZHOU)
        try:
            info = await hub_admin.jetstream().stream_info(name)
            assert info.state.messages > 0 and info.state.first_seq == 1
        finally:
            await hub_admin.close()
    finally:
        await county.close()
    intake = await nats.connect(levels.deployment.service_url("intake", WENLING), tls=levels.deployment.tls())
    try:
        with pytest.raises(Exception):  # noqa: B017
            await intake.jetstream(domain=levels.topology.hub_domain, timeout=3).stream_info(name)
    finally:
        await intake.close()


async def test_a_county_is_restored_from_a_backup_file_and_a_damaged_one_is_refused(levels):
    older = levels.workdir / "older-backup.tar"
    backup(levels, WENLING, older)
    before = await work(levels, "备份")
    files = {code: levels.workdir / f"backup-{code}.tar" for code in COUNTY_LEVELS}
    for code, file in files.items():
        backup(levels, code, file)
    with tarfile.open(files[WENLING]) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert {entry["name"] for entry in manifest["streams"]} == set(subjects.level_streams(WENLING))
    assert all(len(entry["sha256"]) == 64 for entry in manifest["streams"])
    await lose(levels)
    hub_admin = levels.deployment.url(TAIZHOU, "admin")
    stale = levels.duban(
        "restore", "--level", WENLING, "--from", str(older), "--mirror-domain", levels.topology.hub_domain,
        "--nats", levels.deployment.url(WENLING, "admin"), level=WENLING,
    )  # fmt: skip
    assert stale.returncode == 1 and "the hub's mirrors hold more than" in stale.stderr, stale.stderr
    damaged = levels.workdir / "damaged.tar"
    _damage(files[WENLING], damaged)
    refused = levels.duban(
        "restore", "--level", WENLING, "--from", str(damaged), "--nats", levels.deployment.url(WENLING, "admin"),
        level=WENLING,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "INTAKE_331081.jsonl does not match its checksum" in refused.stderr, refused.stderr
    assert "nothing was restored" in refused.stderr
    nc = await levels.admin(WENLING)
    try:
        assert await nc.jetstream().streams_info() == []  # refused as a whole: nothing restored
    finally:
        await nc.close()
    for code, file in files.items():
        done = levels.duban(
            "restore", "--level", code, "--from", str(file), "--mirror-nats", hub_admin,
            "--nats", levels.deployment.url(WENLING, "admin"), level=code,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
    await check_restored(levels, before)


def _damage(source: Path, target: Path) -> None:
    """A copy of the backup with one byte of 温岭市's intake events changed."""
    with tarfile.open(source) as tar, tarfile.open(target, "w") as out:
        for member in tar.getmembers():
            data = tar.extractfile(member).read()
            if member.name == f"streams/{subjects.event_stream('intake', WENLING)}.jsonl":
                middle = len(data) // 2
                data = data[:middle] + (b"A" if data[middle : middle + 1] != b"A" else b"B") + data[middle + 1 :]
            out.addfile(member, io.BytesIO(data))
