"""One ``duban up --demo`` (every service at the three default levels, the demo loaded) shared by
the test files that only use it: tests/test_up.py and tests/test_readme.py.

Starting it takes half a minute of both cores, so it starts once, the first time a test asks for
it. ``make test`` runs the files using it (``FILES``) in one worker, one after the other
(tests/support/scheduling.py). A test that stops it (Ctrl-C in test_up.py) stops it for good: the
next test that asks gets a new one. Whatever each test makes there it makes under its own title
and key, and counts only that.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.runtime.tools.up import DEFAULT_LEVELS, discover_services
from tests.support.processes import Up, free_port_block, processes_mentioning, wait_for

#: The files that share it, in the order they run: test_up.py stops it last.
FILES = ("test_readme.py", "test_up.py")


class SharedUp:
    """The running shared system, started when first asked for (and again after a test stopped it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.system: Up | None = None
        self.started = 0

    def running(self) -> Up:
        if self.system is not None and self.system.process.poll() is not None:
            code, log = self.system.process.returncode, self.system.log().splitlines()
            print(f"duban up {self.started} had stopped (exit code {code}); its log ends:", *log[-5:], sep="\n  ")
            self.system = None
        if self.system is None:
            self.system = self._start()
        return self.system

    def _start(self) -> Up:
        self.started += 1
        present, _ = discover_services()
        data_dir = self.folder / f"up-{self.started}" / ".duban"
        data_dir.parent.mkdir(parents=True)
        system = Up(data_dir, free_port_block(len(DEFAULT_LEVELS)), "--demo")
        began = time.monotonic()
        try:
            wait_for(
                lambda: (
                    system.process.poll() is not None
                    or "demo: loaded" in system.log()
                    or "demo stopped" in system.log()
                ),
                150,
                "duban up --demo to be ready and the demo loaded",
            )
            assert system.process.poll() is None, system.log()
            assert "demo: loaded" in system.log(), system.log()
        except BaseException:
            system.stop()
            raise
        took = time.monotonic() - began
        print(f"duban up: {len(present) * len(DEFAULT_LEVELS)} processes healthy and the demo loaded in {took:.1f}s")
        return system

    def stop(self) -> None:
        """Stop it, and leave no process of it behind."""
        if self.system is None:
            return
        self.system.stop()
        assert self.system.process.returncode == 0, self.system.log()
        assert processes_mentioning(str(self.system.data_dir)) == []


@pytest.fixture(scope="session")
def shared_up(tmp_path_factory) -> SharedUp:
    shared = SharedUp(tmp_path_factory.mktemp("shared-up"))
    yield shared
    shared.stop()
