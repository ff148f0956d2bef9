"""Every level's streams kept a second time outside that level: JetStream mirrors on the hub.

A county (and the townships on its leaf node) keeps its streams on one server's disk. The hub
cluster keeps a mirror of each of them (``MIRROR_<stream>``: ``MIRROR_INTAKE_331081``, …), made
by the hub's ``duban provision`` for the levels ``DUBAN_MIRRORED_LEVELS`` names (compose sets it
from deploy/topology.toml) and replicated like the hub's own streams. A mirror pulls through the
other domain's API (``$JS.<domain>.API``), so what a county stores while its line is cut is copied
when the line is back. Mirrors have no subjects (nobody can publish into one), deny deletes and
purges, and no county user's permissions name the hub's domain: read-only copies the county cannot
alter. A mirror keeps the stream sequences of its origin, which ``duban restore`` relies on.

Not mirrored: the snapshot buckets (a memory cache, rebuilt by loads) and the consumers (each
service makes its own again; see ``restore.py``).

**When the line comes back** (:class:`MirrorKeeper`). A mirror pulls through a consumer it asks the
origin's server for; while a county's line is cut each request goes nowhere, and nats-server
(2.15) waits 30 s for an answer, then tries again after 10 s more per failure so far, two minutes
at most. When the county's leaf node dials in again the hub retries its stalled mirrors at once,
except one whose request is still waiting: that one waits out those 30 s and then its backoff,
measured here as 40-50 s after a cut of one minute, and up to two and a half minutes after a
long one. Every escalation of the county waits as long (the hub's INBOX takes them from the
mirror). So the hub's intake keeps its mirrors going: a mirror that has not heard from its
origin for ``stalled_s`` while the origin's domain answers (``$JS.<domain>.API.INFO``, asked once
a round per domain, only while one of its mirrors is stalled) has its leader stepped down, and
the new leader asks the origin at once. Moving a stream's leader loses and changes nothing of its
messages; it is done at most every ``nudge_every_s`` per mirror, never on a mirror of one replica
(which has no other leader), and only after the server's own retry had a round's time to work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from contracts import subjects
from services.runtime.es.eventstore import ensure_stream

PREFIX = "MIRROR_"

log = logging.getLogger("duban.mirrors")


def mirror_name(stream: str) -> str:
    return PREFIX + stream


def kept_mirrors(levels: Iterable[str]) -> list[str]:
    """The names of the mirrors of every stream of ``levels``."""
    return [mirror_name(stream) for code in sorted(levels) for stream in subjects.level_streams(code)]


def mirror_config(stream: str, domain: str, replicas: int) -> StreamConfig:
    """The hub's copy of ``stream``, which lives in JetStream domain ``domain``."""
    return StreamConfig(
        name=mirror_name(stream),
        mirror=StreamSource(name=stream, external=ExternalStream(api=f"$JS.{domain}.API")),
        storage=StorageType.FILE,
        num_replicas=replicas,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        description=f"duban: a copy of {stream} (domain {domain}) for duban restore",
    )


async def ensure_mirrors(js: JetStreamContext, levels: dict[str, str], replicas: int) -> list[str]:
    """A mirror of every stream of each level in ``levels`` (code → its JetStream domain)."""
    made = []
    for code, domain in sorted(levels.items()):
        for stream in subjects.level_streams(code):
            config = mirror_config(stream, domain, replicas)
            await ensure_stream(js, config)
            made.append(config.name)
    return made


def nudge_subjects(levels: dict[str, str]) -> list[str]:
    """What the hub's intake publishes to keep the mirrors of ``levels`` (code → domain) going:
    each origin domain's account info (does it answer?) and each mirror's leader stepdown."""
    domains = sorted(set(levels.values()))
    return [
        *(f"$JS.{domain}.API.INFO" for domain in domains),
        *(f"$JS.API.STREAM.LEADER.STEPDOWN.{name}" for name in kept_mirrors(levels)),
    ]


class MirrorKeeper:
    """Gets the hub's stalled mirrors of a county going as soon as the county answers again (see
    the module's docstring): a loop of the hub's intake, a round every ``every_s``."""

    def __init__(
        self,
        nc: NATS,
        levels: dict[str, str],
        *,
        every_s: float = 1.0,
        stalled_s: float = 10.0,
        nudge_every_s: float = 30.0,
        probe_timeout_s: float = 1.0,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.levels = dict(levels)
        self.every_s = every_s
        self.stalled_s = stalled_s
        self.nudge_every_s = nudge_every_s
        self.probe_timeout_s = probe_timeout_s
        #: The domains that answered in the last round while one of their mirrors was stalled.
        self._answering: set[str] = set()
        #: When a stalled mirror may be stepped down again: a mirror a stepdown did not bring
        #: back (its origin stream missing, say) waits twice as long each time, ten minutes at most.
        self._next: dict[str, tuple[float, float]] = {}
        #: Every mirror stepped down so far.
        self.nudged: list[str] = []

    async def run(self) -> None:
        failing = False
        while True:
            try:
                await self.round()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as err:  # NATS away: the next round tries again (said once)
                (log.debug if failing else log.warning)("mirror check failed", extra={"error": repr(err)})
                failing = True
            await asyncio.sleep(self.every_s)

    async def stalled(self) -> dict[str, list[str]]:
        """The mirrors of more than one replica that have not heard from their origin for
        ``stalled_s``, by the origin's domain (the others are forgotten: they flow)."""
        found: dict[str, list[str]] = {}
        for code, domain in sorted(self.levels.items()):
            for stream in subjects.level_streams(code):
                name = mirror_name(stream)
                try:
                    info = await self.js.stream_info(name)
                except Exception:
                    continue  # not made (yet): provisioning's business
                mirror = info.mirror
                if mirror is None or (info.config.num_replicas or 1) < 2:
                    continue
                active = mirror.active if mirror.active is not None else -1
                if active < 0 or active / 1e9 > self.stalled_s:
                    found.setdefault(domain, []).append(name)
                else:
                    self._next.pop(name, None)
        return found

    async def answers(self, domain: str) -> bool:
        """Whether the origin's JetStream domain answers now (the county's line is up)."""
        try:
            await self.nc.request(f"$JS.{domain}.API.INFO", b"", timeout=self.probe_timeout_s)
        except Exception:
            return False
        return True

    async def step_down(self, name: str) -> bool:
        try:
            answer = await self.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{name}", b"", timeout=5)
            return bool(json.loads(answer.data).get("success"))
        except Exception as err:
            log.warning("mirror not stepped down", extra={"mirror": name, "error": repr(err)})
            return False

    async def round(self) -> list[str]:
        """One look at every mirror; the mirrors stepped down in it."""
        stalled = await self.stalled()
        answering = {domain for domain in stalled if await self.answers(domain)}
        # a domain answering for the first time: the server's own retry (on the leaf node's
        # connect) goes first, a round before ours
        ready, self._answering = answering & self._answering, answering
        now = time.monotonic()
        stepped = []
        for domain in sorted(ready):
            for name in stalled[domain]:
                at, wait = self._next.get(name, (now, self.nudge_every_s))
                if now < at:
                    continue
                self._next[name] = (now + wait, min(wait * 2, 600.0))
                if await self.step_down(name):
                    stepped.append(name)
        if stepped:
            self.nudged += stepped
            log.warning("stalled mirrors restarted: their origin answers again", extra={"mirrors": stepped})
        return stepped
