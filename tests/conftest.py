"""Shared helpers: run the real launch.py in a subprocess, compose real Hydra configs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

# pytest-xdist (`make test`): the hooks that keep tests sharing a wide fixture on one worker; imported, they are this
# conftest's own.
from tests.xdist_groups import (  # noqa: F401
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_unconfigure,
    pytest_xdist_make_scheduler,
)

REPO = Path(__file__).resolve().parents[1]

# The suite tests the same paths on every machine, CPU-only or with GPUs visible: no process it starts sees a
# GPU (launch.py, the trial processes, SLURM jobs: they inherit this environment), and neither does this one,
# whose torch has not counted devices yet. CUDA's own switch, not a mock: torch.cuda.device_count() is 0.
# Tests about counting GPUs opt back in with ``host_env()`` (``launch(..., gpus=True)``).
HOST_CUDA_VISIBLE_DEVICES = os.environ.get("CUDA_VISIBLE_DEVICES")
os.environ["CUDA_VISIBLE_DEVICES"] = ""


def host_env() -> dict[str, str]:
    """This process's environment with the machine's own GPUs visible again (as it was before the suite hid them)."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    if HOST_CUDA_VISIBLE_DEVICES is not None:
        env["CUDA_VISIBLE_DEVICES"] = HOST_CUDA_VISIBLE_DEVICES
    return env


@dataclass
class Launch:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


_LAUNCHES: list[tuple[str, ...]] = []  # the launch.py runs of the test being run (its setup included)


def pytest_runtest_setup(item: pytest.Item) -> None:
    _LAUNCHES.clear()


@pytest.hookimpl(trylast=True)  # after the item's own teardown, which must still run
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """The fast tier (``make test-fast``: neither ``slow`` nor ``launch``) runs in this process only, so it stays
    fast as tests are added: a test that runs launch.py, or uses a fixture that does, says so with a mark."""
    if _LAUNCHES and not (item.get_closest_marker("launch") or item.get_closest_marker("slow")):
        raise pytest.fail.Exception(f"{item.nodeid} ran launch.py {len(_LAUNCHES)} time(s) (first: "
                                    f"{' '.join(_LAUNCHES[0])}) but is marked neither launch nor slow: mark it "
                                    "@pytest.mark.launch (or the module: pytestmark)", pytrace=False)  # fmt: skip


def launch(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600, gpus: bool = False,
           nice: int = 0) -> Launch:
    """Run ``python launch.py ARGS`` exactly as a user would; ``gpus``: with this machine's GPUs visible; ``nice``:
    at that lower CPU priority (``nice -n``), its trials too, so that it takes the cores only where others leave them."""
    _LAUNCHES.append(args)
    proc = subprocess.run(
        ["nice", "-n", str(nice)] * bool(nice) + [sys.executable, str(REPO / "launch.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**(host_env() if gpus else os.environ), **(env or {})},
    )
    return Launch(proc.returncode, proc.stdout, proc.stderr)


def imported(run: Launch) -> set[str]:
    """The modules a launch run with ``env={"PYTHONPROFILEIMPORTTIME": "1"}`` imported (Python's own report)."""
    return {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


def results_under(root: Path) -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted(Path(root).rglob("result.json"))}


SMOKE_SWEEP = ("-m", "benchmark=smoke", "pretrain=scratch,densecl,regioncl", "seed=0-1")  # the README's, 2 seeds


def session_folder(tmp_path_factory) -> Path:
    """The session's folder above pytest-xdist's per-worker ones (the session's own without xdist): what every
    worker may share, through a lock."""
    session = tmp_path_factory.getbasetemp()
    return session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session


def with_shared_pretraining(out: Path, tmp_path_factory) -> Path:
    """``out``, whose ``_cache/smoke_pretraining`` (where a launch with ``output_root={out}`` keeps the smoke
    pretraining) is the session's one: the VOC smoke sweep and the COCO tier fine-tune the same pretraining
    (tests/test_smoke_data.py), so it is trained once a session (35 s of CPU), by whichever launch asks first;
    the other waits on its lock (xfer.smoke.pretraining), as two launches sharing a cache do."""
    shared = session_folder(tmp_path_factory) / "smoke_pretraining"
    shared.mkdir(exist_ok=True)
    (out / "_cache").mkdir(parents=True)
    (out / "_cache" / "smoke_pretraining").symlink_to(shared, target_is_directory=True)
    return out


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> tuple[Path, Launch]:
    """The smoke sweep of the README (it learns: pretraining, then 150 iterations a trial), 2 of its 5 seeds, run
    once for the session, two single-thread trials side by side as ``make smoke`` runs them."""
    out = with_shared_pretraining(tmp_path_factory.mktemp("sweep"), tmp_path_factory)
    run = launch(*SMOKE_SWEEP, "cluster.devices=2", "cluster.gpus_per_trial=1", f"output_root={out}",
                 timeout=1800)  # a hang, not a pace: 426 s on one session's slower machine, beside the other worker  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    return out, run


def start_slurm(root: Path, extra: tuple[str, ...] = ()):
    """A real SLURM started in ``root`` (``extra``: more slurm.conf lines); skipped only outside CI when its
    packages are not installed."""
    from tests import slurm_cluster

    if not slurm_cluster.available():
        if os.environ.get("CI"):
            pytest.fail("SLURM packages missing in CI: .ci/run installs munge slurmctld slurmd slurm-client")
        pytest.skip("SLURM not installed here (apt-get install munge slurmctld slurmd slurm-client)")
    return slurm_cluster.SlurmCluster(root, extra).start()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real SLURM for the session, which its clients find through this process's SLURM_CONF."""
    cluster = start_slurm(tmp_path_factory.mktemp("slurm"))
    old = {k: os.environ.get(k) for k in cluster.env}
    os.environ.update(cluster.env)
    yield cluster
    cluster.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def small_slurm(tmp_path_factory):
    """A second real SLURM, with small limits: arrays of at most 5 tasks (MaxArraySize), ended jobs forgotten
    after 2 s (MinJobAge). Its clients need its ``env`` (the session's SLURM_CONF names the default one)."""
    cluster = start_slurm(tmp_path_factory.mktemp("small_slurm"), ("MaxArraySize=5", "MinJobAge=2"))
    yield cluster
    cluster.stop()


# ---- What a first launch makes, made once --------------------------------------------------------------------


@pytest.fixture(scope="session")
def _smoke_fast_cache(tmp_path_factory) -> Path:
    """The ``_cache`` a first plan of benchmark=smoke_fast and coco_smoke_fast leaves (their datasets, densecl's and
    regioncl's r50 weights, their digests and converted forms, detectron2's defaults), made by a real launch once
    per session: under pytest-xdist, by the first worker to ask, in the session's folder above the workers' own;
    the others wait for it (a lock) and only read it."""
    session = session_folder(tmp_path_factory)
    out = session / "smoke_fast_made"
    with FileLock(f"{out}.lock"):
        if not out.exists():
            partial = session / "smoke_fast_made.partial"
            shutil.rmtree(partial, ignore_errors=True)  # a worker that died making it
            run = launch("-m", "benchmark=smoke_fast,coco_smoke_fast", "pretrain=densecl,regioncl", "seed=0", "plan=true",
                         f"output_root={partial}")  # fmt: skip
            assert run.returncode == 0, run.output[-4000:]
            partial.rename(out)
    return out / "_cache"


@pytest.fixture
def smoke_fast_made(_smoke_fast_cache):
    """``made(root)`` puts a copy of that cache in ``root/_cache``, where a launch with ``output_root={root}`` looks:
    the launch then makes nothing, so it does not import torch (a first smoke_fast plan: 5.2-6.0 s of CPU from
    nothing, 2.0-2.2 s from the copy). For tests of
    what a launch checks or refuses, and of how trials run, are submitted and kept; tests of how inputs are made
    start from nothing. A copy, so tests never share a writable folder (pytest-xdist runs them side by side)."""

    def made(root: Path) -> Path:
        shutil.copytree(_smoke_fast_cache, Path(root) / "_cache", symlinks=True)
        return Path(root)

    return made
