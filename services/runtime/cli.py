"""The ``duban`` command line.

One parser with a subcommand per task; each subcommand is a small function taking the parsed
arguments and returning the exit code, registered in :func:`build_parser`::

    duban contracts export [--out DIR]   write JSON Schemas and the AsyncAPI document
    duban contracts check  [--out DIR]   exit 1 when the committed files differ from the code
    duban up [--data-dir DIR]            the whole system on this machine (embedded NATS)
    duban serve SERVICE --jurisdiction CODE   one service of one level
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import contracts as _contracts

#: The committed schemas (``schema_export.SCHEMAS_DIR``, which imports FastStream: loaded only when used).
SCHEMAS_DIR = Path(_contracts.__file__).parent / "schemas"

#: At most this many lines of diff are printed by ``contracts check``; the rest is summarised.
_MAX_DIFF_LINES = 200


def _contracts_export(args: argparse.Namespace) -> int:
    from . import schema_export

    changes = schema_export.write(args.out)
    for line in changes:
        print(line)
    print(f"contracts exported to {args.out} ({len(changes)} file(s) changed)")
    return 0


def _contracts_check(args: argparse.Namespace) -> int:
    from . import schema_export

    report = schema_export.compare(args.out)
    if not report:
        print(f"contracts in {args.out} are up to date")
        return 0
    for line in report[:_MAX_DIFF_LINES]:
        print(line)
    if len(report) > _MAX_DIFF_LINES:
        print(f"... {len(report) - _MAX_DIFF_LINES} more line(s)")
    files = [line for line in report if line.startswith(("missing: ", "stale: ", "changed: "))]
    print(
        f"{len(files)} file(s) in {args.out} differ from what the code generates: run `duban contracts export`",
        file=sys.stderr,
    )
    return 1


def _add_contracts(subparsers: argparse._SubParsersAction) -> None:
    contracts = subparsers.add_parser("contracts", help="export or check the JSON Schemas and AsyncAPI document")
    actions = contracts.add_subparsers(dest="action", required=True, metavar="ACTION")
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument(
        "--out", type=Path, default=SCHEMAS_DIR, metavar="DIR", help=f"schemas folder (default: {SCHEMAS_DIR})"
    )
    export = actions.add_parser("export", parents=[folder], help="write the files (and remove stale ones)")
    export.set_defaults(func=_contracts_export)
    check = actions.add_parser("check", parents=[folder], help="exit 1 when the committed files are out of date")
    check.set_defaults(func=_contracts_check)


def _up(args: argparse.Namespace) -> int:
    from . import up

    args.data_dir.mkdir(parents=True, exist_ok=True)
    return up.run(args.data_dir, args.nats_port)


def _add_up(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("up", help="run the whole system on this machine (embedded NATS)")
    up.add_argument("--data-dir", type=Path, default=Path(".duban"), help="where data persists (default .duban)")
    up.add_argument("--nats-port", type=int, default=4222, help="port of the embedded nats-server (default 4222)")
    up.set_defaults(func=_up)


SERVICES = ("intake", "tracking")  # the services that have landed; the others join as they do


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import importlib

    from .logs import setup_logging
    from .settings import Settings

    setup_logging()
    overrides = {"jurisdiction": args.jurisdiction} if args.jurisdiction else {}
    settings = Settings(**overrides)
    app = importlib.import_module(f"services.{args.service}.app")
    asyncio.run(app.serve(settings, host=args.host, port=args.port))
    return 0


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run one service of one level (what a deployment runs)")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--jurisdiction", help="the level's code (default: DUBAN_JURISDICTION)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)


def build_parser() -> argparse.ArgumentParser:
    from . import ops

    parser = argparse.ArgumentParser(prog="duban", description="督办: duban's command line")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_contracts(subparsers)
    _add_up(subparsers)
    _add_serve(subparsers)
    ops.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
