"""How ``make test`` shares the suite's files between its workers (pytest-xdist, ``--dist loadfile``).

Each test file is one unit of work, as ``--dist loadfile`` makes it (its module fixtures start
once), except the files of a group in ``GROUPS``: they are one unit, run one after the other in
one worker, so that the session fixture they share (the ``duban up`` of
tests/support/shared_up.py) starts once. (pytest-xdist's own ``--dist loadgroup`` does not group
anything under pytest 9.2: it renames the items in a way pytest no longer reads.)

The units are handed out longest first: a worker that picks up a three-minute file near the end
runs alone for minutes while the other has nothing left to do, and pytest-xdist's own order (by
number of tests) puts the files of one long test last. ``LONGEST`` names the files that take
longest on two cores, longest first; every other file follows in the order pytest collected it.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from tests.support.shared_up import FILES as SHARED_UP_FILES

#: Files that run in one worker, one after the other (file name → group).
GROUPS = dict.fromkeys(SHARED_UP_FILES, "shared duban up")

#: The longest files on two cores (roughly their seconds with ``--durations``), longest first.
LONGEST = (
    "test_chaos.py",  # 200: two runs of 21 processes
    "test_refusals_in_chinese.py",  # 120: the OpenAPI fuzz
    "test_plans_up.py",  # 110: duban up of three levels, seeds 000 and 001 through the API
    *SHARED_UP_FILES,  # 130 together
    "test_http_workers.py",  # 60
    "test_web_pages.py",  # 60
    "test_restore.py",  # 60
    "test_crashes.py",  # 40
    "test_deploy_nats.py",  # 35
    "test_notify_notices.py",  # 35
    "test_signin.py",  # 30
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first (stable: a file's tests keep their order)."""
    rank = {name: index for index, name in enumerate(LONGEST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST)))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With ``--dist loadfile``: a unit per file or per group, in the order collected."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return GROUPS.get(PurePosixPath(path).name, path)

    config.option.loadscopereorder = False  # keep the order collected: the longest first
    return FilesAndGroups(config, log)
