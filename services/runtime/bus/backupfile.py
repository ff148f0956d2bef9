"""``duban backup`` files: every stream of some levels, with a manifest and checksums.

A backup is one tar file::

    manifest.json            what is in it: levels, when, and per stream its sequences, message
                             count, the configuration it had, its file and the file's SHA-256
    streams/<STREAM>.jsonl   one JSON object per stored message: seq, subject, headers, body
                             (base64), time

Each stream is read up to the last sequence it had when its reading began, so it is consistent in
itself (the streams of a level are read one after another; an event stored in between is in the
later streams only, which a restore handles like any message still to be reacted to). Before
anything is restored every file's checksum and message count is checked against the manifest: a
damaged or altered backup is refused as a whole, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import subjects

from .restore import StoredMessage, read_stream

FORMAT = "duban-backup/1"
MANIFEST = "manifest.json"


class BackupRefused(Exception):
    """The backup file cannot be restored as it is (damaged, altered, or not a duban backup)."""


@dataclass
class StreamEntry:
    name: str
    file: str
    messages: int
    first_seq: int
    last_seq: int
    sha256: str
    bytes: int
    config: dict[str, Any]


async def write_backup(
    js: JetStreamContext,
    levels: list[str],
    path: Path,
    *,
    server: str = "",
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Read every stream of ``levels`` from ``js`` into the backup file ``path``; the manifest."""
    entries: list[StreamEntry] = []
    with tempfile.TemporaryDirectory(prefix="duban-backup-") as scratch:
        folder = Path(scratch)
        for code in levels:
            for stream in subjects.level_streams(code):
                try:
                    info = await js.stream_info(stream)
                except NotFoundError:
                    raise BackupRefused(f"{stream} is not on this server: is {code} provisioned here?") from None
                file = f"streams/{stream}.jsonl"
                target = folder / file
                target.parent.mkdir(parents=True, exist_ok=True)
                digest, count, size = hashlib.sha256(), 0, 0
                last = info.state.last_seq
                with target.open("wb") as out:
                    async for message in read_stream(js, stream, upto=last):
                        line = json.dumps(message.as_record(), ensure_ascii=False).encode() + b"\n"
                        out.write(line)
                        digest.update(line)
                        count += 1
                        size += len(line)
                entries.append(
                    StreamEntry(
                        name=stream,
                        file=file,
                        messages=count,
                        first_seq=info.state.first_seq,
                        last_seq=last,
                        sha256=digest.hexdigest(),
                        bytes=size,
                        config=info.config.as_dict(),
                    )
                )
                say(f"backed up {stream}: {count} messages to sequence {last}")
        manifest = {
            "format": FORMAT,
            "made_at": datetime.now(UTC).isoformat(),
            "server": server,
            "levels": levels,
            "streams": [entry.__dict__ for entry in entries],
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        partial = path.with_name(path.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(folder / MANIFEST, arcname=MANIFEST)
            for entry in entries:
                tar.add(folder / entry.file, arcname=entry.file)
        partial.replace(path)  # a backup file is whole or not there
    return manifest


class BackupFile:
    """A backup file opened for restoring: checked whole before anything is read from it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r")
        except (OSError, tarfile.TarError) as err:
            raise BackupRefused(f"{path} is not a readable backup file: {err}") from None
        self.manifest = self._manifest()
        self.streams = {entry["name"]: entry for entry in self.manifest["streams"]}

    def _manifest(self) -> dict[str, Any]:
        try:
            member = self._tar.extractfile(MANIFEST)
            manifest = json.loads(member.read()) if member else None
        except (KeyError, ValueError, tarfile.TarError) as err:
            raise BackupRefused(f"{self.path}: no readable {MANIFEST} ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BackupRefused(f"{self.path} is not a duban backup ({MANIFEST} does not say {FORMAT})")
        return manifest

    @property
    def levels(self) -> list[str]:
        return list(self.manifest["levels"])

    def verify(self) -> None:
        """Every stream file there, of the size, checksum and message count the manifest says."""
        for entry in self.manifest["streams"]:
            digest, count, size = hashlib.sha256(), 0, 0
            for line in self._lines(entry):
                digest.update(line)
                count += 1
                size += len(line)
            if digest.hexdigest() != entry["sha256"] or size != entry["bytes"]:
                raise BackupRefused(
                    f"{self.path}: {entry['file']} does not match its checksum in {MANIFEST} "
                    f"(sha256 {digest.hexdigest()[:16]}…, expected {entry['sha256'][:16]}…): "
                    "the file is damaged or was altered; nothing was restored"
                )
            if count != entry["messages"]:
                raise BackupRefused(
                    f"{self.path}: {entry['file']} holds {count} messages, {MANIFEST} says {entry['messages']}"
                )

    def _lines(self, entry: dict[str, Any]):
        try:
            member = self._tar.extractfile(entry["file"])
        except KeyError:
            member = None
        if member is None:
            raise BackupRefused(f"{self.path}: {entry['file']} is missing; nothing was restored")
        yield from member

    def has(self, stream: str) -> bool:
        return stream in self.streams

    async def messages(self, stream: str) -> tuple[int, AsyncIterator[StoredMessage]]:
        entry = self.streams[stream]

        async def each() -> AsyncIterator[StoredMessage]:
            for line in self._lines(entry):
                yield StoredMessage.from_record(json.loads(line))

        return entry["last_seq"], each()

    def close(self) -> None:
        self._tar.close()
