"""The README's walkthrough, run as it is written, against ``duban up``: the contract with a new user.

The ``sh`` block that starts with ``# walkthrough`` is taken from README.md and run with bash
(``-e -o pipefail``: any refused step fails it) in a folder where ``duban up`` keeps its
``.duban/run.json``, as a new user runs it beside ``make run`` (here: ``make demo``, the
``duban up --demo`` tests/test_up.py uses too, tests/support/shared_up.py). It must end with the
township's record of the matter closed and its outcome printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.slow


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```sh\n(# walkthrough\n.*?)```", readme, re.S)
    assert found, "README.md has no ```sh block starting with # walkthrough"
    return found.group(1)


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path, shared_up):
    assert shutil.which("curl"), "the walkthrough uses curl"
    system = shared_up.running()
    # the folder of a clone: its .venv (where `duban token` is) beside duban up's .duban
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / ".duban").symlink_to(system.data_dir)
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", walkthrough()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{system.log()}"
    lines = done.stdout.strip().splitlines()
    assert lines == ["closed", "园区主干道已修复，货车通行恢复正常。"], done.stdout
