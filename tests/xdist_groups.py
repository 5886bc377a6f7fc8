"""pytest-xdist for this suite (`make test`: ``-n auto --dist loadgroup``): tests sharing a wide fixture run on one worker.

A session's sweep or a module's trained models (a fixture wider than one test, of the suite's own) is made once
per worker that runs one of its tests: the tests that share it form one group, and one worker runs a group.
xdist 3.8's own ``loadgroup`` reads groups from a suffix it writes into each test's node id, which pytest 9 no
longer lets a plugin change; so the workers leave each test's group (its ``xdist_group`` mark, set here from the
fixtures it uses) in a folder the controller named, and the controller's scheduler (:func:`scheduler`) reads
them there. The slow tier goes first, then the launch tier, so that long tests start early and short ones fill
in at the end.

tests/conftest.py imports the hooks below, which makes them its own.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

GROUPS = "XFER_XDIST_GROUPS"  # environment: the folder where each worker leaves {test: group}

# Wide fixtures that need no group: made once for all workers (a lock), or cheap and private enough for each worker
# to make its own (a SLURM cluster: free ports, its own folder; seconds to start), so that their tests spread.
MADE_PER_WORKER = {"_smoke_fast_cache", "slurm", "small_slurm"}


def shared_fixtures(item: pytest.Item) -> list[str]:
    """The suite's own fixtures wider than one test that ``item`` uses, but for ``MADE_PER_WORKER``."""
    defs = getattr(item, "_fixtureinfo", None)
    shared = []
    for name, fixturedefs in (defs.name2fixturedefs.items() if defs else ()):
        fixturedef = fixturedefs[-1]
        ours = getattr(fixturedef.func, "__module__", "").startswith("tests.") and name not in MADE_PER_WORKER
        if ours and fixturedef.scope != "function":
            shared.append(f"{fixturedef.baseid}::{name}")
    return shared


def groups_of(uses: dict[str, list[str]]) -> dict[str, str]:
    """Test -> group: tests linked by a shared fixture, directly or through other tests, are one group, named by
    the first (sorted) fixture in it. Tests sharing none have no group."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    for keys in uses.values():
        for key in keys:
            parent[root(key)] = root(keys[0])
    name: dict[str, str] = {}
    for key in sorted(parent):
        name.setdefault(root(key), key)
    return {test: name[root(keys[0])] for test, keys in uses.items() if keys}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run on one pytest-xdist worker with its group")  # as xdist
    if getattr(config.option, "dist", "no") == "loadgroup" and not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[GROUPS] = tempfile.mkdtemp(prefix="xfer-xdist-")  # the workers inherit it


def pytest_unconfigure(config: pytest.Config) -> None:
    if GROUPS in os.environ and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ.pop(GROUPS), ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks each test's group (``xdist_group``), puts the slow tier first, and in a worker leaves the groups
    (every ``xdist_group`` mark, these and any written by hand) for the controller."""
    groups = groups_of({item.nodeid: shared_fixtures(item) for item in items})
    for item in items:
        if item.nodeid in groups:
            item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, item.get_closest_marker("launch") is None))
    folder, worker = os.environ.get(GROUPS), os.environ.get("PYTEST_XDIST_WORKER")
    if folder and worker:
        marked = {item.nodeid: mark.args[0] if mark.args else mark.kwargs.get("name", "default")
                  for item in items if (mark := item.get_closest_marker("xdist_group"))}  # fmt: skip
        partial = Path(folder) / f"{worker}.partial"
        partial.write_text(json.dumps(marked))
        partial.replace(Path(folder) / f"{worker}.json")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup``: xdist's scope scheduling over the groups the workers left (a test without one is
    its own scope), in collection order (slow tier first), a worker given its next group only when down to its
    last test, so that a long group waits in the queue, not behind another long one on a busy worker."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return scheduler(config, log)


def scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def __init__(self, config: pytest.Config, log) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False  # keep the collection order
            self.groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # read once every worker has collected (schedule() runs then)
                self.groups = {}
                for path in sorted(Path(os.environ[GROUPS]).glob("*.json")):
                    self.groups.update(json.loads(path.read_text()))
            return f"group:{self.groups[nodeid]}" if nodeid in self.groups else nodeid

        def _reschedule(self, node) -> None:
            if not node.shutting_down and self.workqueue and self._pending_of(self.assigned_work[node]) > 1:
                return  # more than the one test a worker holds back until it knows its next
            super()._reschedule(node)

    return GroupScheduling(config, log)
