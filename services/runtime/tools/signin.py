"""``duban token`` and ``duban keys``: a development sign-in for scripts, and the rotation of a
level's signing keys.

``duban token PERSON [--level CODE]`` asks the level's directory of the running ``duban up``
(``run.json``) to sign in as a person of its directory, as the development sign-in page does
(only where ``DUBAN_DEV_SIGNIN`` is on), and prints the access token (15 minutes).
``duban keys rotate --level CODE`` adds a new signing key to the level's key file; the directory
signs with it from its next token on, and services pick it up from the JWKS by themselves.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path


def _run_info(data_dir: Path) -> dict:
    path = data_dir / "run.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SystemExit(f"duban: no running duban up in {data_dir} (no {path}); start it with make run") from None
    if not info.get("ready"):
        raise SystemExit(f"duban: the duban up of {path} is not ready (or has stopped)")
    return info


def _token(args: argparse.Namespace) -> int:
    import httpx

    from services.runtime.settings import Settings

    info = _run_info(args.data_dir or Settings().data_dir)
    levels = list(info.get("services", {}))
    level = args.level or (levels[-1] if levels else None)
    directory = info.get("services", {}).get(level, {}).get("directory")
    if directory is None:
        print(f"duban: level {level} has no directory in this run (levels: {', '.join(levels)})", file=sys.stderr)
        return 2
    answer = httpx.post(f"{directory}/auth/dev/token", json={"person_id": args.person}, timeout=10)
    if answer.status_code != 200:
        try:
            message = answer.json()["detail"]["message"]
        except (ValueError, KeyError, TypeError):
            message = answer.text[:200]
        print(f"duban: no token for {args.person} at {level}: {message}", file=sys.stderr)
        return 1
    print(answer.json()["access_token"])
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from services.runtime.settings import Settings

    settings = Settings(jurisdiction=args.level)
    keys = importlib.import_module("services.directory.keys")
    path = args.file or settings.data_dir / args.level / "directory" / "signing-keys.json"
    added = keys.rotate(path)
    print(f"duban: {path}: new signing key {added.kid}; the directory signs with it from now on")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    token = subparsers.add_parser(
        "token",
        help="print an access token of a person of a level's directory (development sign-in)",
        description="Sign in as PERSON (an id of the level's directory, e.g. deputy-331081100) at the running "
        "duban up's directory of --level (default: its last level) and print the access token (15 minutes). "
        "Only where development sign-in is on (duban up).",
    )
    token.add_argument("person", metavar="PERSON")
    token.add_argument("--level", metavar="CODE")
    token.add_argument("--data-dir", type=Path, default=None, help="duban up's data dir (default: DUBAN_DATA_DIR)")
    token.set_defaults(func=_token)
    keys = subparsers.add_parser("keys", help="the signing keys of a level's tokens")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = actions.add_parser("rotate", help="add a new signing key (the older ones stay in the JWKS)")
    rotate.add_argument("--level", required=True, metavar="CODE")
    rotate.add_argument("--file", type=Path, default=None, help="the key file (default: in the data dir)")
    rotate.set_defaults(func=_rotate)
