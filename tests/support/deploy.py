"""deploy/'s NATS configurations as local processes: the 3-node hub and the county leaf nodes.

The files are used as they are, with only their ports and store directories rewritten and every
listener (and every address a node dials) on 127.0.0.1; the secrets they name come from
``deploy/generate.py``'s ``secrets()``, as an operator's ``deploy/.env`` would give them. A
county's leaf link can be routed through a :class:`LinkProxy`, which the tests cut and restore
to play a broken line between a county and Taizhou.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.tools.nats_server import ConfiguredNats
from services.runtime.tools.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def load_generator():
    """``deploy/generate.py`` as a module (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("duban_deploy_generate", DEPLOY / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


generate = load_generator()


def staff(code: str):
    """A level's committee staff (代表工委), as the deploy tests act."""
    from services.runtime.http.auth import Principal, Role

    return Principal(sub=f"committee-{code}", name="工委", roles=[Role.committee], jurisdiction=code)


def station(code: str):
    """A level's liaison station (代表联络站), entering what deputies collected."""
    from services.runtime.http.auth import Principal, Role

    return Principal(sub=f"station-{code}", name="代表联络站", roles=[Role.liaison_station], jurisdiction=code)


class LinkProxy:
    """A TCP relay from a local port to ``target``: a leaf node's line to one hub node.

    ``cut()`` closes every connection through it and stops listening (the leaf's redials are
    refused, as with a broken line); ``restore()`` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._pipes: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> LinkProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    restore = start

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.sleep(0)


@dataclass
class Deployment:
    """The hub's three nodes and the county leaf nodes, running from deploy/nats/."""

    workdir: Path
    secrets: dict[str, str]
    topology: object
    hub: list[ConfiguredNats] = field(default_factory=list)
    leaves: dict[str, ConfiguredNats] = field(default_factory=dict)
    proxies: dict[str, list[LinkProxy]] = field(default_factory=dict)

    def url(self, code: str, user: str | None = None) -> str:
        """The client URL of the server ``code``'s services use, as ``user`` (password included):
        TLS, checked against the deployment's CA (``ca_file``)."""
        county = self.topology.county_of(code)
        server = self.leaves[county.code] if county else self.hub[0]
        if user is None:
            return f"tls://127.0.0.1:{server.port}"
        password = self.secrets[generate.password_var(user)]
        return f"tls://{user}:{password}@127.0.0.1:{server.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def level_env(self, code: str) -> dict[str, str]:
        """What compose sets for every service of level ``code``: its JetStream domain, its
        neighbours' domains and, at the hub, the levels it keeps mirrors of."""
        topology = self.topology
        env = {
            "DUBAN_JETSTREAM_DOMAIN": topology.domain_of(code),
            "DUBAN_LEVEL_DOMAINS": json.dumps(topology.level_domains(code)),
        }
        if code == topology.hub and topology.mirrored_levels():
            env["DUBAN_MIRRORED_LEVELS"] = json.dumps(topology.mirrored_levels())
        return env

    def service_url(self, service: str, code: str) -> str:
        return self.url(code, generate.user(service, code))

    def stop(self) -> None:
        for server in [*self.leaves.values(), *self.hub]:
            server.stop()


def _rewrite(text: str, addresses: dict[str, int], store: Path) -> str:
    """Point every ``host:port`` of deploy's files at 127.0.0.1 and the given local ports, and the
    JetStream store at ``store``; nothing else changes."""

    def replace(match: re.Match) -> str:
        key = f"{match.group(1)}:{match.group(2)}"
        if key not in addresses:
            raise KeyError(f"no local port for {key}")
        return f"127.0.0.1:{addresses[key]}"

    text = re.sub(r"\b(0\.0\.0\.0|nats-[a-z0-9-]+):(\d+)\b", replace, text)
    text = text.replace('store_dir: "/data/jetstream"', f'store_dir: "{(store / "jetstream").as_posix()}"')
    text = text.replace(generate.TLS_DIR, (store.parent / "tls").as_posix())
    assert "0.0.0.0" not in text and "/data/" not in text and "/etc/nats/tls" not in text
    return text


async def boot(workdir: Path, *, proxied: tuple[str, ...] = (), held_back: int = 0) -> Deployment:
    """Start the hub cluster and every county's leaf node from deploy/nats/, the leaf links of the
    counties in ``proxied`` through :class:`LinkProxy` relays, and provision every level; with
    ``held_back`` the last hub nodes are neither launched nor anything provisioned (the caller
    does both, as an operator whose hub is still starting)."""
    topology = generate.Topology.load()
    secrets = generate.secrets(topology)
    generate.write_tls(workdir / "tls", topology)  # what `python deploy/generate.py tls` makes
    env = {**os.environ, **secrets}
    deployment = Deployment(workdir=workdir, secrets=secrets, topology=topology)
    ports = {node: {p: free_port() for p in ("client", "cluster", "leaf", "monitor")} for node in topology.hub_nodes}
    routes = {f"{node}:{generate.CLUSTER_PORT}": ports[node]["cluster"] for node in topology.hub_nodes}
    for index, node in enumerate(topology.hub_nodes):
        mine = ports[node]
        addresses = {
            f"0.0.0.0:{generate.CLIENT_PORT}": mine["client"],
            f"0.0.0.0:{generate.CLUSTER_PORT}": mine["cluster"],
            f"0.0.0.0:{generate.LEAF_PORT}": mine["leaf"],
            f"0.0.0.0:{generate.MONITOR_PORT}": mine["monitor"],
            **routes,
        }
        store = workdir / node
        store.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / "nats" / "hub-accounts.conf", store / "hub-accounts.conf")  # the include, unchanged
        text = _rewrite((DEPLOY / "nats" / f"hub-{index + 1}.conf").read_text(), addresses, store)
        server = ConfiguredNats(
            store, text, port=mine["client"], monitor_port=mine["monitor"], env=env, health_query=""
        )
        deployment.hub.append(server)
    started = deployment.hub[: len(deployment.hub) - held_back]
    for server in started:
        server.launch()
    for server in started:
        await asyncio.to_thread(server.wait_healthy, 60)
    for county in topology.counties:
        leaf_ports = {node: ports[node]["leaf"] for node in topology.hub_nodes}
        if county.code in proxied:
            proxies = [await LinkProxy(port).start() for port in leaf_ports.values()]
            deployment.proxies[county.code] = proxies
            leaf_ports = {node: proxy.port for node, proxy in zip(topology.hub_nodes, proxies, strict=True)}
        client, monitor = free_port(), free_port()
        addresses = {
            f"0.0.0.0:{generate.CLIENT_PORT}": client,
            f"0.0.0.0:{generate.MONITOR_PORT}": monitor,
            **{f"{node}:{generate.LEAF_PORT}": port for node, port in leaf_ports.items()},
        }
        store = workdir / county.host
        text = _rewrite((DEPLOY / "nats" / f"leaf-{county.code}.conf").read_text(), addresses, store)
        server = ConfiguredNats(store, text, port=client, monitor_port=monitor, env=env)
        await asyncio.to_thread(server.start, 30)
        deployment.leaves[county.code] = server
    if not held_back:
        await provision_levels(deployment)
    return deployment


async def provision_levels(deployment: Deployment) -> None:
    """What compose's ``provision-<code>`` does before a level's services start: its streams and
    buckets, made on its server by the administrator, with its domains and replicas."""
    import nats

    from services.runtime.bus.accounts import provision
    from services.runtime.bus.levels import LevelTopology
    from services.runtime.settings import Settings

    topology = deployment.topology
    # The hub first (the counties' INBOX source its OUTBOX), then the counties, then the hub again
    # with its mirrors of their streams, made by then (a stream sourced or mirrored before it exists
    # is retried after 10 s, 20 s, …): as an operator provisions the hub before the counties are
    # deployed, and again once they are.
    for code, mirrors in [(topology.hub, False), *((c, False) for c in topology.levels[1:]), (topology.hub, True)]:
        settings = Settings(jurisdiction=code, stream_replicas=topology.replicas if code == topology.hub else 1)
        domains = LevelTopology(
            jetstream_domain=topology.domain_of(code),
            level_domains=topology.level_domains(code),
            mirrored_levels=topology.mirrored_levels() if mirrors else {},
        )
        nc = await nats.connect(deployment.url(code, "admin"), tls=deployment.tls())
        try:
            await provision(nc, [code], settings=settings, topology=domains)
        finally:
            await nc.close()


async def cut(proxies: list[LinkProxy]) -> None:
    for proxy in proxies:
        await proxy.cut()


async def restore(proxies: list[LinkProxy]) -> None:
    for proxy in proxies:
        with contextlib.suppress(OSError):
            await proxy.restore()
