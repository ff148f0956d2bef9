"""How the suite's files are shared between ``make test``'s workers (pytest-xdist with
``--dist loadgroup --no-loadscope-reorder``).

Each test file is one unit of work, as with ``--dist loadfile`` (its module fixtures start once),
unless it names a group with ``@pytest.mark.xdist_group``: the files of a group run one after
the other in one worker, so that a session fixture they share (the ``duban up`` of
tests/support/shared_up.py) starts once.

The units are handed out longest first: a worker that picks up a three-minute file near the end
runs alone for minutes while the other has nothing left to do. ``LONGEST`` names the files that
take longest on two cores, longest first (the files of a group side by side); every other file
follows in the order pytest collected it.
"""

from __future__ import annotations

import pytest

#: The longest files on two cores (their seconds with ``--durations``, roughly), longest first.
LONGEST = (
    "test_chaos.py",  # 200: two runs of 21 processes
    "test_refusals_in_chinese.py",  # 120: the OpenAPI fuzz
    "test_plans_up.py",  # 110: duban up of three levels, seeds 000 and 001 through the API
    "test_readme.py",  # together with test_up.py: the shared duban up --demo
    "test_up.py",  # 110
    "test_http_workers.py",  # 60
    "test_web_pages.py",  # 60
    "test_crashes.py",  # 40
    "test_deploy_nats.py",  # 35
    "test_notify_notices.py",  # 35
    "test_signin.py",  # 30
)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if next(item.iter_markers("xdist_group"), None) is None:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    rank = {name: index for index, name in enumerate(LONGEST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST)))  # stable: a file's tests keep their order
