"""The hub's intake gets a stalled mirror of a county going again once the county answers
(``mirrors.MirrorKeeper``): what it decides, round by round, on a server it is told about.

That a stepdown loses and doubles nothing, and that the hub's intake may do it under deploy/'s
permissions, is shown on the real topology (tests/test_deploy_nats.py, a cut line)."""

from __future__ import annotations

import asyncio
import itertools
import json
from types import SimpleNamespace

from nats.js.api import StreamSourceInfo

from services.runtime.bus.levels import service_permissions
from services.runtime.bus.mirrors import MirrorKeeper

WENLING, LINHAI = "331081", "331082"
LEVELS = {WENLING: "wenling", LINHAI: "linhai"}


class Server:
    """What the keeper reads and asks: every mirror's info, each domain's answer, stepdowns."""

    def __init__(self) -> None:
        self.heard = {}  # mirror → seconds since its origin was heard (-1: never)
        self.replicas = {}
        self.up: set[str] = set()
        self.stepped: list[str] = []

    def jetstream(self):
        return self

    async def stream_info(self, name: str):
        if name not in self.heard:
            raise LookupError(name)
        seconds = self.heard[name]
        mirror = StreamSourceInfo(name=name, lag=0, active=-1 if seconds < 0 else int(seconds * 1e9))
        return SimpleNamespace(mirror=mirror, config=SimpleNamespace(num_replicas=self.replicas.get(name, 3)))

    async def request(self, subject: str, data: bytes, timeout: float):
        if subject.endswith(".API.INFO"):
            if subject.split(".")[1] not in self.up:
                raise TimeoutError(subject)
            return SimpleNamespace(data=b"{}")
        assert subject.startswith("$JS.API.STREAM.LEADER.STEPDOWN."), subject
        self.stepped.append(subject.rsplit(".", 1)[-1])
        return SimpleNamespace(data=json.dumps({"success": True}).encode())


def keeper_on(server: Server, **options) -> MirrorKeeper:
    return MirrorKeeper(server, LEVELS, **options)  # type: ignore[arg-type]


async def test_a_stalled_mirror_is_stepped_down_once_its_county_answers_a_round_after_the_servers_own_retry():
    server = Server()
    server.heard = {
        "MIRROR_OUTBOX_331081": 50.0,  # stalled: the line to 温岭市 was cut
        "MIRROR_INTAKE_331081": 0.4,  # heard a moment ago: flowing
        "MIRROR_OUTBOX_331082": 80.0,  # stalled too, 临海市 still cut off
        "MIRROR_NOTIFY_331081": -1,  # never heard
        "MIRROR_TRACKING_331081": 50.0,
    }
    server.replicas["MIRROR_TRACKING_331081"] = 1  # a hub of one server: no other leader to take over
    keeper = keeper_on(server)
    assert await keeper.round() == []  # nobody answers: a cut line, nothing to do
    server.up.add("wenling")
    assert await keeper.round() == []  # 温岭市 is back: the server's own retry goes first
    assert sorted(await keeper.round()) == ["MIRROR_NOTIFY_331081", "MIRROR_OUTBOX_331081"]
    assert sorted(server.stepped) == ["MIRROR_NOTIFY_331081", "MIRROR_OUTBOX_331081"]
    assert await keeper.round() == []  # not again at once


async def test_a_mirror_a_stepdown_did_not_bring_back_waits_longer_each_time_until_it_flows():
    server = Server()
    server.heard = {"MIRROR_OUTBOX_331081": 50.0}
    server.up.add("wenling")
    keeper = keeper_on(server, nudge_every_s=0.05)
    await keeper.round()
    rounds = []
    for _ in range(12):
        rounds.append(await keeper.round())
        await asyncio.sleep(0.025)
    nudges = [i for i, stepped in enumerate(rounds) if stepped]
    assert len(nudges) >= 2 and all(b - a >= 2 for a, b in itertools.pairwise(nudges))
    assert nudges[-1] - nudges[-2] > nudges[1] - nudges[0]  # 0.05 s, then 0.1 s, then 0.2 s...
    server.heard["MIRROR_OUTBOX_331081"] = 0.2  # it flows: forgotten
    await keeper.round()
    server.heard["MIRROR_OUTBOX_331081"] = 60.0  # cut again and back: a nudge a round later, as at first
    server.stepped.clear()
    assert await keeper.round() == []
    assert await keeper.round() == ["MIRROR_OUTBOX_331081"]


def test_only_the_hubs_intake_may_ask_a_county_domain_and_step_its_mirrors_down():
    allowed = service_permissions("331000", "intake", LEVELS)["publish"]["allow"]
    assert "$JS.wenling.API.INFO" in allowed and "$JS.API.STREAM.LEADER.STEPDOWN.MIRROR_OUTBOX_331081" in allowed
    assert not [s for s in allowed if ".API.STREAM.UPDATE." in s or ".API.STREAM.DELETE." in s]
    for service in ("tracking", "notify"):
        assert not [s for s in service_permissions("331000", service, LEVELS)["publish"]["allow"] if "STEPDOWN" in s]
    assert not [s for s in service_permissions("331081", "intake")["publish"]["allow"] if "STEPDOWN" in s]
