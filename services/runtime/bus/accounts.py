"""Who may use a level's NATS: one user per service and level with the permissions of
``levels.service_permissions``, an administrator (provisioning, operators' tools) and the system
account, as deploy/ configures them; and the streams an administrator makes before any service
starts (``provision``).

``duban up`` runs its embedded nats-server with these users, so the development default is as
closed as production: a process without credentials cannot connect, a service cannot publish
another context's events or write another context's snapshots, and no service can create,
change, delete or purge a stream. The passwords are generated once into the data directory
(``nats/credentials.json``, readable by its owner only) and given to each service in its
``DUBAN_NATS_URL``; the server's configuration file, which names them, is owner-only too.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from nats.js.api import StreamConfig

from contracts import subjects
from contracts.jurisdictions import JurisdictionRegistry, default_registry

from ..settings import Settings
from .levels import SERVICES, LevelTopology, service_permissions

ADMIN = "admin"
SYSTEM = "sys"


def user_name(service: str, code: str) -> str:
    return f"{service}-{code}"


class Credentials:
    """The passwords of a level set's NATS users, kept in one owner-only JSON file."""

    def __init__(self, path: Path, passwords: dict[str, str]) -> None:
        self.path = path
        self.passwords = passwords

    @classmethod
    def ensure(cls, path: Path, levels: Iterable[str]) -> Credentials:
        """The file's passwords, with one made for every user it lacks (written owner-only)."""
        passwords: dict[str, str] = {}
        if path.exists():
            passwords = json.loads(path.read_text(encoding="utf-8"))
        wanted = [ADMIN, SYSTEM, *(user_name(service, code) for code in levels for service in SERVICES)]
        missing = [name for name in wanted if name not in passwords]
        for name in missing:
            passwords[name] = secrets.token_urlsafe(24)
        if missing or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, json.dumps(passwords, indent=2))
        return cls(path, passwords)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        return cls(path, json.loads(path.read_text(encoding="utf-8")))

    def url(self, base: str, name: str) -> str:
        """``base`` (``nats://host:port``) with the user ``name`` and its password in it."""
        parts = urlsplit(base)
        netloc = f"{quote(name, safe='')}:{quote(self.passwords[name], safe='')}@{parts.hostname}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def accounts_config(self, levels: Iterable[str]) -> str:
        """The ``accounts`` block of a nats-server configuration: the DUBAN account with the
        administrator and every service user of ``levels``, and the system account."""
        users = [{"user": ADMIN, "password": self.passwords[ADMIN], "allowed_connection_types": ["STANDARD"]}]
        for code in levels:
            for service in SERVICES:
                name = user_name(service, code)
                users.append(
                    {
                        "user": name,
                        "password": self.passwords[name],
                        "allowed_connection_types": ["STANDARD"],
                        "permissions": service_permissions(code, service),
                    }
                )
        accounts = {
            "DUBAN": {"jetstream": "enabled", "users": users},
            "SYS": {"users": [{"user": SYSTEM, "password": self.passwords[SYSTEM]}]},
        }
        return f"accounts: {json.dumps(accounts, ensure_ascii=False, indent=2)}\nsystem_account: SYS\n"


def admin_url(run: dict) -> str | None:
    """The administrator's NATS URL of a running ``duban up`` (its ``run.json``), or None when the
    run names no credentials file that exists."""
    path = run.get("nats_credentials")
    if not run.get("nats_url") or not path or not Path(path).exists():
        return None
    return Credentials.load(Path(path)).url(run["nats_url"], ADMIN)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (from the first byte)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)


def level_stream_configs(
    code: str,
    settings: Settings,
    registry: JurisdictionRegistry | None = None,
    topology: LevelTopology | None = None,
) -> list[StreamConfig]:
    """Every stream of level ``code`` as ``duban provision`` makes it: each context's events, the
    OUTBOX, the INBOX sourcing the neighbours' OUTBOX, the dead letters and the mends (the snapshot
    buckets aside: a cache). ``duban restore`` makes them the same way."""
    from ..es.eventstore import event_stream_config
    from ..es.mends import mends_config
    from .deadletters import stream_config as deadletter_config
    from .levels import level_inbox_config, outbox_config

    registry = registry or default_registry()
    topology = topology or LevelTopology()
    level = settings.model_copy(update={"jurisdiction": code})
    return [
        *(event_stream_config(context, code, level) for context in subjects.CONTEXTS),
        outbox_config(code, level),
        level_inbox_config(code, registry, level, topology),
        deadletter_config(code, level.stream_replicas),
        mends_config(code, level.stream_replicas),
    ]


async def provision(
    nc,
    levels: Iterable[str],
    *,
    settings: Settings | None = None,
    registry: JurisdictionRegistry | None = None,
    topology: LevelTopology | None = None,
    say=lambda line: None,
) -> list[str]:
    """Make (or bring to their configuration) every stream and bucket of ``levels``: each
    context's events and snapshot bucket, the OUTBOX, the INBOX sourcing the neighbours' OUTBOX,
    the dead letters, the mends; and, on a server that keeps other levels' copies
    (``topology.mirrored_levels``, the hub), a mirror of each of their streams. Run with an
    administrator's connection; services only look at them. ``topology``: the domains of the level
    and of its neighbours (default: from the environment, as the level's services read them)."""
    from ..es.eventstore import EventStore, ensure_stream
    from .mirrors import ensure_mirrors

    settings = settings or Settings()
    topology = topology or LevelTopology()
    made: list[str] = []
    if topology.mirrored_levels:  # first: the INBOX sources the neighbours' OUTBOX from them
        mirrors = await ensure_mirrors(nc.jetstream(), topology.mirrored_levels, settings.stream_replicas)
        made += mirrors
        say(f"mirrors of {', '.join(sorted(topology.mirrored_levels))}: {len(mirrors)} streams kept here")
    for code in levels:
        for config in level_stream_configs(code, settings, registry, topology):
            await ensure_stream(nc.jetstream(), config)
            made.append(config.name)
        level_settings = settings.model_copy(update={"jurisdiction": code})
        for context in subjects.CONTEXTS:
            store = EventStore(nc, context=context, jurisdiction=code, settings=level_settings)
            await store.ensure_snapshot_bucket()
            made.append(f"KV_{store.bucket}")
        say(
            f"provisioned {code}: {len(subjects.CONTEXTS)} event streams and snapshot buckets, "
            "OUTBOX, INBOX, DLQ, MENDS"
        )
    return made
