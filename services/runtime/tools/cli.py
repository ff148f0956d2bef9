"""The ``duban`` command line.

One parser with a subcommand per task; each subcommand is a small function taking the parsed
arguments and returning the exit code, registered in :func:`build_parser`::

    duban contracts export [--out DIR]   write JSON Schemas and the AsyncAPI document
    duban contracts check  [--out DIR]   exit 1 when the committed files differ from the code
    duban up [--data-dir DIR] [--levels CODES] [--services NAMES] [--demo] [--dev-tokens]
                                         the whole system on this machine (embedded NATS)
    duban serve SERVICE --jurisdiction CODE [--settings FILE]   one service of one level
    duban token PERSON [--level CODE]    a development sign-in: a person's access token
    duban keys rotate --level CODE       a new signing key for a level's tokens
    duban backup --level CODE --out FILE a level's streams to a file (manifest, checksums)
    duban restore --level CODE (--from FILE | --from-mirror --mirror-nats URL)
                                         a level's streams back on a fresh server
    duban rebuild SERVICE [--jurisdiction CODE] [--projection NAME]
                                         a service's read models built again, then swapped in
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
    from services.runtime.settings import Settings

    from . import up

    return up.run(
        args.data_dir or Settings().data_dir,
        args.nats_port,
        levels=tuple(args.levels.split(",")) if args.levels else up.DEFAULT_LEVELS,
        http_base=args.http_port_base,
        demo=args.demo,
        services=args.services,
        dev_tokens=args.dev_tokens,
    )


def _service_list(text: str) -> list[str]:
    """``--services``: comma-separated names among :data:`SERVICES`."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVICES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated names among {','.join(SERVICES)}")
    return names


def _add_up(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="run the whole system on this machine (embedded NATS, every service of every level)",
        description="Start the embedded nats-server and every service that exists for each level, each its own "
        "supervised process; write DATA_DIR/run.json; stop everything with Ctrl-C. 台州市, its counties and their "
        "townships are built in; other levels (a new township) are given by JSON files named in "
        "DUBAN_JURISDICTIONS_FILES (see contracts/jurisdictions.py).",
    )
    up.add_argument(
        "--data-dir", type=Path, default=None, help="where data persists (default: DUBAN_DATA_DIR, else .duban)"
    )
    up.add_argument("--nats-port", type=int, default=4222, help="port of the embedded nats-server (default 4222)")
    up.add_argument(
        "--http-port-base",
        type=int,
        default=8100,
        metavar="PORT",
        help="intake at PORT + level index, tracking at PORT+100 + …, evaluation +200, notify +300, "
        "directory +400, web +500 (default 8100)",
    )
    up.add_argument(
        "--levels",
        help="comma-separated codes (default 331000,331081,331081100; others from DUBAN_JURISDICTIONS_FILES)",
    )
    up.add_argument(
        "--services",
        type=_service_list,
        metavar="NAMES",
        help="comma-separated services to run, among intake,tracking,evaluation,notify,directory,web "
        "(default: every one installed)",
    )
    up.add_argument("--demo", action="store_true", help="also load a demo built from the seeds (idempotent)")
    up.add_argument(
        "--dev-tokens",
        action="store_true",
        help="also write a development token per role and level into run.json (scripts; else: duban token)",
    )
    up.set_defaults(func=_up)


#: The services ``serve`` knows; one runs when ``services.<name>.app`` exists and has ``serve``.
SERVICES = ("intake", "tracking", "evaluation", "notify", "directory", "web")


def settings_file_values(path: Path) -> dict[str, str]:
    """The variables a settings file sets: YAML (``.yaml``/``.yml``), TOML (``.toml``) or an env
    file (anything else: ``KEY=VALUE`` lines, ``#`` comments, optional ``export`` and quotes).

    A lower-case key is a field of :class:`~services.runtime.settings.Settings` (``nats_url`` →
    ``DUBAN_NATS_URL``); an upper-case key is taken as it is (``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``DUBAN_LEVEL_DOMAINS``). Lists and mappings become JSON, as the environment carries them."""
    import json
    import tomllib

    import yaml

    text = path.read_text(encoding="utf-8")
    if path.suffix in {".yaml", ".yml"}:
        data = yaml.safe_load(text) or {}
    elif path.suffix == ".toml":
        data = tomllib.loads(text)
    else:
        data = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.removeprefix("export ").partition("=")
            if not sep:
                raise ValueError(f"{path}:{number}: expected KEY=VALUE")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            data[key.strip()] = value
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    values = {}
    for key, value in data.items():
        name = key if key.isupper() else f"DUBAN_{key.upper()}"
        if isinstance(value, bool):
            values[name] = "true" if value else "false"
        elif isinstance(value, dict | list):
            values[name] = json.dumps(value, ensure_ascii=False)
        else:
            values[name] = str(value)
    return values


class _StopSignals:
    """SIGINT and SIGTERM for a served service: stop cleanly, once.

    uvicorn catches both while it serves and, after it has stopped, raises the signal again with
    the handlers it found. With Python's defaults that re-raised SIGTERM kills the process (and
    SIGINT raises KeyboardInterrupt) before the service has drained its workers and closed its
    connections; with these handlers it is a no-op and the service stops cleanly, exit code 0. A
    signal that comes while the service is still starting is kept and passed on to uvicorn as soon
    as it serves, so that too ends in a clean stop."""

    def __init__(self) -> None:
        import signal

        self.signal = signal
        self.pending: list[int] = []
        self.serving = False
        self._handler = self._handle

    def install(self) -> None:
        for signum in (self.signal.SIGINT, self.signal.SIGTERM):
            self.signal.signal(signum, self._handler)

    def _handle(self, signum: int, frame: object) -> None:
        if not self.serving:
            self.pending.append(signum)

    async def hand_over(self) -> None:
        """Wait until uvicorn has its own handlers, then pass it a signal that came before."""
        import asyncio

        # uvicorn tells no one when it installs its handlers: look
        while self.signal.getsignal(self.signal.SIGTERM) is self._handler:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self.serving = True
        if self.pending:
            self.signal.raise_signal(self.pending[0])


#: The services that sign tokens themselves (the directory: its key ring) or verify none (the
#: pages hold sessions and call the others with the person's token).
KEY_HOLDERS = ("directory", "web")


def key_refusal(service: str, settings) -> str | None:
    """Why ``service`` must not start with ``settings``: a service that checks people's tokens
    needs a key to check them with (the directory's JWKS, or a public key); without one, only the
    development sign-in (``DUBAN_DEV_SIGNIN``, which ``duban up`` sets) may run it, never silently
    on the published development secret."""
    if service in KEY_HOLDERS or settings.dev_signin or settings.jwks_url or settings.jwt_public_key:
        return None
    return (
        "no key to verify tokens with: set DUBAN_JWKS_URL (the level's directory, "
        "http://<directory>/.well-known/jwks.json) or DUBAN_JWT_PUBLIC_KEY; DUBAN_DEV_SIGNIN=true only for "
        "development (it accepts tokens signed with the development secret)"
    )


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import importlib
    import os

    from services.runtime.observe.logs import setup_logging
    from services.runtime.settings import Settings

    setup_logging()
    if args.settings:
        for name, value in settings_file_values(args.settings).items():
            os.environ.setdefault(name, value)  # the environment wins over the file
    overrides = {"jurisdiction": args.jurisdiction} if args.jurisdiction else {}
    settings = Settings(**overrides)
    if (refusal := key_refusal(args.service, settings)) is not None:
        print(f"duban serve: {refusal}", file=sys.stderr)
        return 2
    try:
        app = importlib.import_module(f"services.{args.service}.app")
    except ModuleNotFoundError as err:
        print(f"duban: the {args.service} service is not installed here ({err})", file=sys.stderr)
        return 2
    signals = _StopSignals()
    signals.install()

    async def main() -> None:
        watcher = asyncio.create_task(signals.hand_over())
        try:
            await app.serve(settings, host=args.host, port=args.port)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    asyncio.run(main())
    return 0


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run one service of one level (what a deployment runs)",
        description="Run one service of one level until SIGTERM/SIGINT, which stop it cleanly (exit code 0). "
        "Settings come from the environment (DUBAN_*) and, for what the environment does not set, from --settings.",
    )
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--jurisdiction", help="the level's code (default: DUBAN_JURISDICTION)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help="a settings file: YAML, TOML or KEY=VALUE lines (field names or environment variable names)",
    )
    serve.set_defaults(func=_serve)


def build_parser() -> argparse.ArgumentParser:
    from . import ops, rebuild, recovery, signin

    parser = argparse.ArgumentParser(prog="duban", description="督办: duban's command line")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_contracts(subparsers)
    _add_up(subparsers)
    _add_serve(subparsers)
    ops.add_commands(subparsers)
    recovery.add_commands(subparsers)
    signin.add_commands(subparsers)
    rebuild.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
