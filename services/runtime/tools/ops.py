"""The operators' commands: ``duban trace``, ``duban status`` and ``duban dead-letters``.

They answer "where is my suggestion?", "is anything stuck?" and "why did this notice not go
out?" without any other tool: ``trace`` reads the span files of the embedded default
(``observe/tracefile.py``), ``status`` asks every service process listed in ``.duban/run.json`` (or the
URLs given) for ``/readyz`` (can it work: NATS, JetStream, its database) and ``/status``, and
``dead-letters`` reads the level's dead-letter stream on NATS and asks the owning service to
replay one (``bus/replay.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from services.runtime.bus.accounts import admin_url
from services.runtime.settings import Settings


def _data_dir(args: argparse.Namespace) -> Path:
    """``--data-dir``, else ``DUBAN_DATA_DIR``, else ``.duban`` (where ``duban up`` keeps its run)."""
    return args.data_dir or Settings().data_dir


def _run_file(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "run.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# -- trace -------------------------------------------------------------------------------------


def _trace(args: argparse.Namespace) -> int:
    from services.runtime.observe.tracefile import journey, read_spans, render

    directory = _data_dir(args) / "traces"
    if not directory.is_dir():
        print(f"no span files in {directory} (is the system running with DUBAN_TRACE_FILES on?)", file=sys.stderr)
        return 1
    roots = journey(read_spans(directory), args.matter_id)
    if not roots:
        print(f"no spans mention {args.matter_id} in {directory}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([_tree(r) for r in roots], ensure_ascii=False, indent=2))
    else:
        print(render(roots))
    return 0


def _tree(node) -> dict[str, Any]:
    return {**node.span, "children": [_tree(c) for c in node.children]}


# -- status ------------------------------------------------------------------------------------


async def _collect(targets: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    import httpx

    async def one(level: str, service: str, url: str) -> dict[str, Any]:
        row: dict[str, Any] = {"level": level, "service": service, "url": url}
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
            try:
                ready = await http.get("/readyz")
                row["healthy"] = ready.status_code == 200
                if not row["healthy"]:
                    row["reasons"] = ready.json().get("reasons", []) if ready.status_code == 503 else []
                    row["error"] = "; ".join(r["message"] for r in row["reasons"]) or f"HTTP {ready.status_code}"
                row.update((await http.get("/status")).json())
            except (httpx.HTTPError, ValueError) as err:
                row.update(healthy=False, error=f"{type(err).__name__}: {err}")
        return row

    return list(await asyncio.gather(*(one(*t) for t in targets)))


def _status(args: argparse.Namespace) -> int:
    if args.url:
        targets = [("?", "?", url) for url in args.url]
    else:
        run = _run_file(_data_dir(args))
        targets = [
            (level, service, url)
            for level, services in run.get("services", {}).items()
            for service, url in services.items()
        ]
        if not targets:
            print(
                f"no services in {_data_dir(args) / 'run.json'}: is `duban up` running? (--data-dir DIR, or --url)",
                file=sys.stderr,
            )
            return 1
    rows = asyncio.run(_collect(targets))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        print(_status_text(rows))
    return 0 if all(r.get("healthy") for r in rows) else 2


def _status_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        health = "ready" if row.get("healthy") else f"NOT READY {row.get('error', '')}".rstrip()
        dead = {k: v for k, v in (row.get("dead_letters") or {}).items() if v}
        lines.append(f"{row['level']:<10} {row['service']:<11} {health}  {row['url']}")
        for s in row.get("streams") or []:
            lines.append(f"    stream   {s['stream']:<32} messages {_n(s['messages'])}  bytes {_n(s['bytes'])}")
        for c in row.get("consumers") or []:
            checkpoint = f"  checkpoint {c['checkpoint']}" if c.get("checkpoint") is not None else ""
            lines.append(
                f"    consumer {c['consumer']:<32} lag {_n(c['lag'])}  unacked {_n(c['ack_pending'])}{checkpoint}"
            )
        for m in row.get("mirrors") or []:
            contact = m.get("last_contact_s")
            seen = "never" if contact is None or contact < 0 else f"{contact:.0f}s ago"
            lines.append(
                f"    mirror   {m['mirror']:<32} messages {_n(m['messages'])}  lag {_n(m['lag'])}  origin heard {seen}"
            )
        for name, count in dead.items():
            lines.append(
                f"    DEAD LETTERS {name}: {int(count)}   (duban dead-letters list --jurisdiction {row['level']})"
            )
        for bad in row.get("undecodable") or []:
            lines.append(
                f"    UNREADABLE {bad['subject']} #{bad['sequence']}: {bad['reason'][:80]}   "
                f"(duban events void --level {row['level']} --subject {bad['subject']} --sequence {bad['sequence']} "
                "--reason ...)"
            )
    return "\n".join(lines)


def _n(value: Any) -> str:
    return "?" if value is None else str(int(value))


# -- dead letters ------------------------------------------------------------------------------


def _tls() -> dict[str, Any]:
    """TLS to NATS when ``DUBAN_NATS_CA_FILE`` is set (deploy/), as the services connect."""
    from services.runtime.bus.levels import client_tls

    tls = client_tls(Settings())
    return {"tls": tls} if tls is not None else {}


def _nats_url(args: argparse.Namespace) -> str:
    """``--nats``, else the administrator of the running ``duban up`` (its credentials file), else
    ``DUBAN_NATS_URL``."""
    if args.nats:
        return args.nats
    run = _run_file(_data_dir(args))
    return admin_url(run) or run.get("nats_url") or Settings().nats_url


async def _dead_letters(args: argparse.Namespace) -> int:
    import nats

    from services.runtime.bus.deadletters import discard_dead_letter, get_dead_letter, list_dead_letters
    from services.runtime.bus.replay import replay_subject

    url = _nats_url(args)

    async def quiet(err: Exception) -> None:  # one line below says what went wrong, not nats-py's tracebacks
        pass

    try:
        nc = await nats.connect(
            url,
            name="duban-ops",
            allow_reconnect=False,
            connect_timeout=3,
            max_reconnect_attempts=1,
            error_cb=quiet,
            **_tls(),
        )
    except Exception as err:
        print(
            f"duban: cannot reach NATS at {url} ({type(err).__name__}): is `duban up` running? (--nats URL)",
            file=sys.stderr,
        )
        return 1
    try:
        js = nc.jetstream()
        if args.action == "list":
            letters = await list_dead_letters(js, args.jurisdiction, context=args.context)
            if args.json:
                print(json.dumps([letter.summary() for letter in letters], ensure_ascii=False, indent=2))
            elif not letters:
                print(f"no dead letters at {args.jurisdiction}")
            for letter in [] if args.json else letters:
                s = letter.summary()
                print(
                    f"{s['sequence']:>6}  {s['context']}/{s['consumer']}  attempts {s['attempts']}  "
                    f"{s['original_subject']}  {s['error']}"
                )
            return 0
        letter = await get_dead_letter(js, args.jurisdiction, args.sequence)
        if letter is None:
            print(f"no dead letter {args.sequence} at {args.jurisdiction}", file=sys.stderr)
            return 1
        if args.action == "show":
            shown = {**letter.summary(), "headers": letter.headers, "data": letter.data.decode("utf-8", "replace")}
            print(json.dumps(shown, ensure_ascii=False, indent=2))
            return 0
        if args.action == "discard":
            await discard_dead_letter(js, args.jurisdiction, args.sequence)
            print(f"dead letter {args.sequence} discarded")
            return 0
        reply = await nc.request(
            replay_subject(args.jurisdiction, letter.context),
            json.dumps({"sequence": args.sequence}).encode(),
            timeout=args.timeout,
        )
        answer = json.loads(reply.data)
        print(json.dumps(answer, ensure_ascii=False))
        return 0 if answer.get("ok") else 1
    finally:
        await nc.close()


# -- mends ------------------------------------------------------------------------------------


async def _void(args: argparse.Namespace) -> int:
    """Void one unreadable commit (an audited mend; the commit itself stays in the stream)."""
    import nats

    from contracts import subjects
    from services.runtime.es.mends import void

    parts = args.subject.split(".")
    if len(parts) != 5 or parts[:2] != ["duban", "evt"] or parts[3] != args.level:
        print(f"duban events void: {args.subject} is not an event subject of {args.level}", file=sys.stderr)
        return 2
    context, aggregate_id = parts[2], parts[4]
    if context not in subjects.CONTEXTS:
        print(f"duban events void: unknown context {context!r}", file=sys.stderr)
        return 2
    url = _nats_url(args)
    nc = await nats.connect(url, max_reconnect_attempts=3, connect_timeout=5, **_tls())
    try:
        mend = await void(
            nc.jetstream(),
            code=args.level,
            context=context,
            aggregate_id=aggregate_id,
            sequence=args.sequence,
            reason=args.reason,
            operator=args.operator,
        )
    finally:
        await nc.close()
    print(json.dumps(mend, ensure_ascii=False))
    return 0


# -- provisioning ------------------------------------------------------------------------------


async def _provision(args: argparse.Namespace) -> int:
    """Make the streams and buckets of the levels, as the administrator (``DUBAN_NATS_URL`` with the
    admin user, or ``--nats``); the level's JetStream domain and neighbours' domains, and the
    replicas, from the same settings its services read."""
    import nats

    from services.runtime.bus.accounts import provision

    settings = Settings()
    levels = args.level or [settings.jurisdiction]
    url = _nats_url(args)
    try:
        nc = await nats.connect(url, max_reconnect_attempts=3, connect_timeout=5, **_tls())
    except Exception as err:
        print(f"duban provision: cannot connect to NATS at {_without_password(url)}: {err}", file=sys.stderr)
        return 1
    try:
        made = await provision(nc, levels, settings=settings, say=lambda line: print(f"duban: {line}", flush=True))
    except Exception as err:
        print(f"duban provision: {type(err).__name__}: {err} (is this the administrator's user?)", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    print(json.dumps({"levels": levels, "streams": made}) if args.json else f"duban: {len(made)} streams ready")
    return 0


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.username + '@' if parts.username else ''}{parts.hostname}:{parts.port}"


# -- the parsers -------------------------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trace``, ``status``, ``provision`` and ``dead-letters`` on duban's command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the data dir of duban up (default: DUBAN_DATA_DIR, else .duban)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")

    trace = subparsers.add_parser("trace", parents=[common], help="print the journey of a matter as a span tree")
    trace.add_argument("matter_id")
    trace.set_defaults(func=_trace)

    status = subparsers.add_parser("status", parents=[common], help="health, streams, lag and dead letters")
    status.add_argument("--url", action="append", help="a service's base URL (default: all in run.json)")
    status.set_defaults(func=_status)

    made = subparsers.add_parser(
        "provision",
        parents=[common],
        help="make a level's streams and buckets as the administrator (before its services start)",
    )
    made.add_argument("--level", action="append", help="a level's code (default: DUBAN_JURISDICTION); repeatable")
    made.add_argument("--nats", help="the administrator's NATS URL (default: run.json's admin, then DUBAN_NATS_URL)")
    made.set_defaults(func=lambda args: asyncio.run(_provision(args)))

    events = subparsers.add_parser("events", help="mend a level's event streams (audited)")
    mends = events.add_subparsers(dest="action", required=True)
    voiding = mends.add_parser(
        "void",
        parents=[common],
        help="void a stored commit no service can read (it stays in the stream; loads skip it)",
    )
    voiding.add_argument("--level", required=True, help="the level's code")
    voiding.add_argument("--subject", required=True, help="its subject, as duban status lists it")
    voiding.add_argument("--sequence", type=int, required=True, help="its stream sequence")
    voiding.add_argument("--reason", required=True, help="why (kept with the mend)")
    voiding.add_argument("--operator", help="who (default: the login name)")
    voiding.add_argument("--nats", help="the administrator's NATS URL (default: run.json's admin, then DUBAN_NATS_URL)")
    voiding.set_defaults(func=lambda args: asyncio.run(_void(args)))

    dead = subparsers.add_parser("dead-letters", help="list, show, replay or discard dead letters of a level")
    actions = dead.add_subparsers(dest="action", required=True)
    for action in ("list", "show", "replay", "discard"):
        parser = actions.add_parser(action, parents=[common])
        parser.add_argument("--jurisdiction", required=True, help="the level's code")
        parser.add_argument("--nats", help="NATS URL (default: run.json's, then DUBAN_NATS_URL)")
        if action == "list":
            parser.add_argument("--context", help="only this service (intake, tracking, evaluation, notify)")
        else:
            parser.add_argument("sequence", type=int)
        if action == "replay":
            parser.add_argument("--timeout", type=float, default=30.0)
        parser.set_defaults(func=lambda args: asyncio.run(_dead_letters(args)))
