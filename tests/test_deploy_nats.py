"""deploy/'s NATS topology, run as local processes: the 3-node Taizhou hub (JetStream domain
taizhou, streams with 3 replicas) and the leaf nodes of 温岭市 (331081, domain wenling) and 临海市
(331082, domain linhai), with the users, permissions and nkeys of deploy/nats/*.conf.

Intake runs for 台州市, 温岭市 and 临海市, each connected to its own server as its own NATS user
with the settings compose gives it (JetStream domains of its neighbours, replicas), and talks to
the others only through its OUTBOX and INBOX across domains.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.request

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js.api import StreamConfig

from contracts import subjects
from contracts.intake import Channel, EscalateMatter, MatterData, MatterKind, RegisterMatter, SubmitMatter, Submitter
from services.intake.app import IntakeService
from services.intake.commands_nats import register_command_subscriber
from services.intake.domain import Matter
from services.intake.handlers import derived_id
from services.runtime.bus.levels import inbox_prefix
from services.runtime.bus.mirrors import MirrorKeeper, mirror_name
from services.runtime.bus.nats_commands import command_broker
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import ConfiguredNats
from services.runtime.tools.ports import free_port
from services.tracking.app import TrackingService
from tests.support.deploy import boot, cut, generate, provision_levels, restore, staff, station
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

TAIZHOU, WENLING, LINHAI, ZEGUO = "331000", "331081", "331082", "331081100"


@pytest.fixture(scope="module")
async def deployed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deploy")
    deployment = await boot(workdir, proxied=(LINHAI,))
    topology = deployment.topology
    services: dict[str, IntakeService] = {}
    others: list = []
    try:
        with pytest.MonkeyPatch.context() as env:
            for code in (TAIZHOU, WENLING, LINHAI):
                # what compose sets for this level's intake (deploy/compose.yaml)
                for name in ("DUBAN_JETSTREAM_DOMAIN", "DUBAN_LEVEL_DOMAINS", "DUBAN_MIRRORED_LEVELS"):
                    env.delenv(name, raising=False)
                for name, value in deployment.level_env(code).items():
                    env.setenv(name, value)
                settings = Settings(
                    jurisdiction=code,
                    nats_url=deployment.service_url("intake", code),
                    nats_ca_file=deployment.ca_file,
                    data_dir=workdir / "data",
                    stream_replicas=topology.replicas if code == TAIZHOU else 1,
                )
                services[code] = IntakeService(settings)
                await services[code].start()
                if code == WENLING:  # tracking too, under its own user: its permissions are exercised
                    tracking = TrackingService(
                        settings.model_copy(update={"nats_url": deployment.service_url("tracking", code)})
                    )
                    await tracking.start(sweep=False)
                    others.append(tracking)
            yield deployment, services
    finally:
        for service in [*others, *services.values()]:
            with contextlib.suppress(Exception):
                await service.stop()
        deployment.stop()


async def escalate_from(service: IntakeService, title: str) -> str:
    here = service.here
    data = MatterData(
        kind=MatterKind.problem,
        title=title,
        content=f"{title}：需市级统筹解决。",
        lead=Submitter(id=f"deputy-{here}", name="代表"),
        channel=Channel.liaison_station,
        raised_in=here,
    )
    matter = await service.handlers.submit(SubmitMatter(matter=data), station(here))
    await service.handlers.register(RegisterMatter(matter_id=matter.id), staff(here))
    await service.handlers.escalate(EscalateMatter(matter_id=matter.id, reason="超出县级事权"), staff(here))
    return matter.id


async def admin(deployment, code: str) -> nats.NATS:
    return await nats.connect(deployment.url(code, "admin"), tls=deployment.tls())


async def test_the_hub_streams_have_three_replicas_and_each_county_its_own_domain(deployed):
    deployment, _ = deployed
    hub = await admin(deployment, TAIZHOU)
    wenling = await admin(deployment, WENLING)
    try:
        info = await hub.jetstream().stream_info(subjects.inbox_stream(TAIZHOU))
        assert info.config.num_replicas == 3 and info.cluster.leader and len(info.cluster.replicas) == 2
        # the counties' OUTBOX come through the hub's mirrors of them, which pull across the domains
        assert {source.name for source in info.config.sources} == {"MIRROR_OUTBOX_331081", "MIRROR_OUTBOX_331082"}
        mirror = await hub.jetstream().stream_info("MIRROR_OUTBOX_331081")
        assert mirror.config.mirror.external.api == "$JS.wenling.API" and mirror.config.num_replicas == 3
        ack = await wenling.jetstream().publish("duban.x.331000.331081.probe", b"{}")
        assert ack.domain == "wenling"
    finally:
        await hub.close()
        await wenling.close()


async def test_a_matter_escalated_from_a_county_reaches_the_hub_and_the_county_learns_its_id(deployed):
    _, services = deployed
    wenling, taizhou = services[WENLING], services[TAIZHOU]
    matter_id = await escalate_from(wenling, "温岭市东部新区企业用电容量不足")
    at_hub = derived_id(WENLING, matter_id, TAIZHOU)

    async def arrived():
        matter = await taizhou.handlers.store.load(Matter, at_hub)
        return matter if matter.exists else None

    matter = await eventually(arrived, 30, "the escalated matter at 台州市", interval=0.1)
    assert matter.origin.jurisdiction == WENLING and matter.origin.matter_id == matter_id
    assert matter.data.title == "温岭市东部新区企业用电容量不足"

    async def forwarded():
        here = await wenling.handlers.store.load(Matter, matter_id)
        return here.forwarded_as

    hop = await eventually(forwarded, 30, "台州市's id back at 温岭市", interval=0.1)
    assert (hop.jurisdiction, hop.matter_id) == (TAIZHOU, at_hub)


async def test_escalations_made_while_a_county_link_is_down_are_stored_and_arrive_once_after_it_returns(deployed):
    deployment, services = deployed
    linhai, taizhou = services[LINHAI], services[TAIZHOU]
    proxies = deployment.proxies[LINHAI]
    leaf = await admin(deployment, LINHAI)
    hub = await admin(deployment, TAIZHOU)
    try:
        await cut(proxies)

        await asyncio.sleep(1.0)  # the leaf notices the closed connections and redials, refused
        ids = [await escalate_from(linhai, f"临海市第{n}号企业诉求") for n in range(5)]
        handed_over = subjects.integration_subject(TAIZHOU, LINHAI, "matter-handed-over")

        async def stored_at_the_leaf() -> bool:
            info = await leaf.jetstream().stream_info(subjects.outbox_stream(LINHAI), subjects_filter=handed_over)
            return sum((info.state.subjects or {}).values()) == 5

        await eventually(stored_at_the_leaf, 15, "临海市's OUTBOX to hold the five hand-overs", interval=0.1)
        await asyncio.sleep(3.0)
        at_hub = [derived_id(LINHAI, matter_id, TAIZHOU) for matter_id in ids]
        assert not any([(await taizhou.handlers.store.load(Matter, i)).exists for i in at_hub])

        restored = time.monotonic()
        await restore(proxies)
        # The hub's intake keeps its mirrors going (MirrorKeeper): under its own deploy user it may
        # ask whether 临海市's domain answers and move the leader of its mirror of 临海市's OUTBOX,
        # here at once, while the hand-overs are being copied: nothing is lost or copied twice.
        keeper = MirrorKeeper(taizhou.nc, {LINHAI: "linhai"})
        await eventually(lambda: keeper.answers("linhai"), 30, "临海市's domain answering the hub", interval=0.2)
        assert await keeper.step_down(mirror_name(subjects.outbox_stream(LINHAI)))

        async def all_arrived() -> bool:
            return all([(await taizhou.handlers.store.load(Matter, i)).exists for i in at_hub])

        await eventually(all_arrived, 75, "the stored escalations at 台州市", interval=0.1)
        waited = time.monotonic() - restored
        print(f"escalations stored at 临海市 arrived at 台州市 {waited:.1f}s after the link returned")
        info = await hub.jetstream().stream_info(subjects.inbox_stream(TAIZHOU), subjects_filter=handed_over)
        assert info.state.subjects == {handed_over: 5}  # none lost, none doubled
        await taizhou.wait_idle()
        assert len(set(at_hub)) == 5
    finally:
        await restore(proxies)
        await leaf.close()
        await hub.close()


async def test_a_service_answers_its_nats_commands_over_tls_as_its_deploy_user(deployed):
    """What ``duban serve`` starts beside the HTTP app (``serve_service``): the command broker,
    connected as the service's own user over TLS with the deployment's CA, as compose runs it."""
    deployment, services = deployed
    wenling = services[WENLING]
    broker = command_broker(wenling.settings, "intake", register_command_subscriber, lambda: wenling.handlers)
    await broker.start()
    client = await nats.connect(
        deployment.service_url("intake", WENLING), tls=deployment.tls(), inbox_prefix=inbox_prefix(WENLING, "intake")
    )
    try:
        reply = await client.request("duban.cmd.intake.331081.register", b'{"matter_id": "x"}', timeout=10)
        answer = json.loads(reply.data)
        assert answer["ok"] is False and answer["status"] == 401  # answered: no token, refused
    finally:
        await client.close()
        await broker.stop()


def violations_of_services(deployment, users: set[str]) -> list[str]:
    """The permission violations the servers logged for ``users`` (DUBAN/user:<name>)."""
    found = []
    for server in [*deployment.hub, *deployment.leaves.values()]:
        for line in server.log_path.read_text(errors="replace").splitlines():
            match = re.search(r'"DUBAN/user:([a-z]+-\d+)" - (\w+ Violation.*)', line)
            if match and match.group(1) in users:
                found.append(f"{match.group(1)}: {match.group(2)}")
    return found


async def test_the_services_ran_under_their_deploy_permissions_without_a_single_violation(deployed):
    """Runs after the scenarios above: everything intake did at three levels was allowed."""
    deployment, services = deployed
    for service in services.values():
        await service.wait_idle()
    users = {f"intake-{code}" for code in services} | {f"tracking-{WENLING}"}
    assert violations_of_services(deployment, users) == []


async def _violations(url: str, attempts, tls=None) -> list[str]:
    """Run ``attempts(nc)`` as the user of ``url`` and return the permission errors NATS reported."""
    errors: list[str] = []

    async def on_error(err: Exception) -> None:
        errors.append(str(err))

    nc = await nats.connect(url, error_cb=on_error, inbox_prefix=_prefix_of(url), tls=tls)
    try:
        await attempts(nc)
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return [e for e in errors if "permissions violation" in e.lower()]


def _prefix_of(url: str) -> str:
    service, code = re.match(r"(?:nats|tls)://([a-z]+)-(\d+):", url).groups()
    return inbox_prefix(code, service)


async def _refused(call) -> bool:
    try:
        await call
    except (TimeoutError, NatsError):
        return True
    return False


async def test_a_county_user_can_neither_read_nor_write_another_county(deployed):
    deployment, _ = deployed
    wenling = deployment.service_url("intake", WENLING)

    async def attempts(nc: nats.NATS) -> None:
        js = nc.jetstream(timeout=1)
        await nc.subscribe("duban.evt.intake.331082.*")
        await nc.subscribe("duban.x.331082.>")
        await nc.subscribe("_INBOX.>")  # other users' replies, and the events they fetch
        await nc.publish("duban.evt.intake.331082.forged", b"{}")
        await nc.publish("duban.x.331000.331082.matter-handed-over", b"{}")
        assert await _refused(js.stream_info("INTAKE_331082"))
        assert await _refused(nc.request("$JS.linhai.API.STREAM.INFO.INTAKE_331082", b"", timeout=1))
        assert await _refused(nc.request("$JS.linhai.API.DIRECT.GET.OUTBOX_331082", b'{"seq":1}', timeout=1))

    errors = await _violations(wenling, attempts, deployment.tls())
    for denied in (
        'subscription to "duban.evt.intake.331082.*"',
        'subscription to "duban.x.331082.>"',
        'subscription to "_inbox.>"',
        'publish to "duban.evt.intake.331082.forged"',
        'publish to "duban.x.331000.331082.matter-handed-over"',
        'publish to "$js.api.stream.info.intake_331082"',
        'publish to "$js.linhai.api.stream.info.intake_331082"',
        'publish to "$js.linhai.api.direct.get.outbox_331082"',
    ):
        assert any(denied in error.lower() for error in errors), (denied, errors)

    # and 温岭市's users are unknown to 临海市's leaf node
    linhai_port = deployment.leaves[LINHAI].port
    password = deployment.secrets[generate.password_var("intake-331081")]
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(
            f"tls://intake-331081:{password}@127.0.0.1:{linhai_port}", allow_reconnect=False, tls=deployment.tls()
        )


async def test_a_township_reads_its_inbox_on_the_county_leaf_and_nothing_else_of_the_county(deployed):
    deployment, _ = deployed
    url = deployment.service_url("intake", ZEGUO)
    readable = {}

    async def attempts(nc: nats.NATS) -> None:
        js = nc.jetstream(timeout=1)
        # its INBOX on 温岭市's leaf, made by provisioning: it may read it, not make or change streams
        readable["inbox"] = await js.stream_info(subjects.inbox_stream(ZEGUO))
        outbox = subjects.outbox_stream(ZEGUO)
        assert await _refused(js.add_stream(name=f"{outbox}_X", subjects=["duban.forged.>"]))
        assert await _refused(js.update_stream(StreamConfig(name=outbox, subjects=[subjects.outbox_wildcard(ZEGUO)])))
        assert await _refused(js.purge_stream(subjects.event_stream("intake", ZEGUO)))
        assert await _refused(js.delete_stream(outbox))
        for stream in (
            "INTAKE_331081",
            "TRACKING_331081",
            "OUTBOX_331081",
            "INBOX_331081",
            "KV_SNAPSHOTS_INTAKE_331081",
        ):
            assert await _refused(js.stream_info(stream)), stream
        assert await _refused(js.pull_subscribe("duban.evt.intake.331081.*", durable="peek", stream="INTAKE_331081"))
        assert await _refused(nc.request("$JS.API.DIRECT.GET.INTAKE_331081", b'{"seq":1}', timeout=1))
        await nc.subscribe("duban.evt.intake.331081.*")
        await nc.subscribe("duban.x.331081.>")

    errors = await _violations(url, attempts, deployment.tls())
    assert readable["inbox"].config.name == "INBOX_331081100"
    for denied in (
        'publish to "$js.api.stream.info.intake_331081"',
        'publish to "$js.api.stream.info.outbox_331081"',
        'publish to "$js.api.stream.info.inbox_331081"',
        'publish to "$js.api.direct.get.intake_331081"',
        'publish to "$js.api.stream.create.outbox_331081100_x"',
        'publish to "$js.api.stream.update.outbox_331081100"',
        'publish to "$js.api.stream.purge.intake_331081100"',
        'publish to "$js.api.stream.delete.outbox_331081100"',
        'subscription to "duban.evt.intake.331081.*"',
        'subscription to "duban.x.331081.>"',
    ):
        assert any(denied in error.lower() for error in errors), (denied, errors)


async def test_a_plain_text_client_is_refused_by_every_server(deployed):
    deployment, _ = deployed
    password = deployment.secrets[generate.password_var("admin")]
    for server in [*deployment.hub, *deployment.leaves.values()]:
        with pytest.raises(Exception):  # noqa: B017 - whatever nats-py makes of the refused handshake
            await nats.connect(
                f"nats://admin:{password}@127.0.0.1:{server.port}",
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
            )
        # the same user over TLS with the CA gets in
        nc = await nats.connect(f"tls://admin:{password}@127.0.0.1:{server.port}", tls=deployment.tls())
        await nc.close()


async def test_a_leaf_node_without_a_certificate_of_the_ca_is_not_let_in(deployed, tmp_path):
    deployment, _ = deployed
    hub = deployment.hub[0]
    leaf_port = next(
        int(m.group(1))
        for m in [re.search(r"leafnodes \{\s*listen: 127\.0\.0\.1:(\d+)", hub.config_text)]
        if m is not None
    )
    seed = deployment.secrets[generate.leaf_seed_var(WENLING)]  # even with a county's real nkey
    strangers = generate.tls_files(deployment.topology)  # another CA altogether
    (tmp_path / "tls").mkdir()
    for name in ("ca.pem", "nats-331081.pem", "nats-331081-key.pem"):
        (tmp_path / "tls" / name).write_bytes(strangers[name])
    rogues = {
        "no-tls": "",
        "other-ca": (
            f'tls {{\n cert_file: "{tmp_path}/tls/nats-331081.pem"\n key_file: "{tmp_path}/tls/nats-331081-key.pem"\n'
            f' ca_file: "{deployment.ca_file}"\n }}'
        ),
    }
    started = []
    try:
        for name, tls in rogues.items():
            client, monitor = free_port(), free_port()
            config = "\n".join(
                [
                    f"server_name: rogue-{name}",
                    f"listen: 127.0.0.1:{client}",
                    f"http: 127.0.0.1:{monitor}",
                    "leafnodes {",
                    "  remotes: [",
                    "    {",
                    f'      url: "nats-leaf://127.0.0.1:{leaf_port}"',
                    '      account: "DUBAN"',
                    f'      nkey: "{seed}"',
                    f"      {tls}",
                    "    }",
                    "  ]",
                    "}",
                    'accounts: { DUBAN: { users: [ { user: "x", password: "y" } ] } }',
                    "",
                ]
            )
            rogue = ConfiguredNats(tmp_path / name, config, port=client, monitor_port=monitor, health_query="")
            await asyncio.to_thread(rogue.start, 20)
            started.append(rogue)
        await asyncio.sleep(3)  # several attempts to dial the hub
        leafz = f"http://127.0.0.1:{hub.monitor_port}/leafz"
        connected = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(leafz).read()))
        names = [leaf.get("name") for leaf in connected.get("leafs") or []]
        assert not [n for n in names if n and n.startswith("rogue")], names
        refusals = hub.log_path.read_text(errors="replace")
        assert "TLS leafnode handshake error" in refusals  # the hub said why
        assert "certificate signed by unknown authority" in refusals  # the other CA's certificate
        for rogue in started:  # and each rogue's link was closed on it, again and again
            assert "Leafnode connection closed" in rogue.log_tail(40), rogue.log_tail(40)
    finally:
        for rogue in started:
            rogue.stop()


async def test_provisioning_while_a_hub_node_is_still_starting_waits_for_it_and_makes_every_stream(tmp_path, caplog):
    """An operator provisions right after starting the hub, one node not up yet: the cluster
    refuses three replicas ("no suitable peers for placement"), and provisioning waits for the
    node instead of failing halfway."""
    deployment = await boot(tmp_path, held_back=1)
    try:
        provisioning = asyncio.create_task(provision_levels(deployment))
        await asyncio.sleep(3)
        if provisioning.done():
            provisioning.result()  # what it failed with
            pytest.fail("three replicas placed with a node of the hub never started")
        assert "no peers for the replicas yet" in caplog.text
        late = deployment.hub[-1]
        late.launch()
        await asyncio.to_thread(late.wait_healthy, 60)
        await asyncio.wait_for(provisioning, 120)
        nc = await admin(deployment, TAIZHOU)
        try:
            info = await nc.jetstream().stream_info(subjects.event_stream("intake", TAIZHOU))
        finally:
            await nc.close()
        assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
    finally:
        deployment.stop()
