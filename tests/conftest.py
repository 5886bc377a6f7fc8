"""Shared helpers: run the real launch.py in a subprocess, compose real Hydra configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Launch:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def launch(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600) -> Launch:
    """Run ``python launch.py ARGS`` exactly as a user would."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Launch(proc.returncode, proc.stdout, proc.stderr)


def imported(run: Launch) -> set[str]:
    """The modules a launch run with ``env={"PYTHONPROFILEIMPORTTIME": "1"}`` imported (Python's own report)."""
    return {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


def results_under(root: Path) -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted(Path(root).rglob("result.json"))}


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> tuple[Path, Launch]:
    """The smoke sweep of the README, 2 pretrains x 2 seeds, run once for the session."""
    out = tmp_path_factory.mktemp("sweep")
    run = launch("-m", "benchmark=smoke", "pretrain=densecl,regioncl", "seed=0-1", f"output_root={out}")
    assert run.returncode == 0, run.output[-4000:]
    return out, run


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real SLURM for the session; skipped only outside CI when its packages are not installed."""
    from tests import slurm_cluster

    if not slurm_cluster.available():
        if os.environ.get("CI"):
            pytest.fail("SLURM packages missing in CI: .ci/run installs munge slurmctld slurmd slurm-client")
        pytest.skip("SLURM not installed here (apt-get install munge slurmctld slurmd slurm-client)")
    cluster = slurm_cluster.SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    old = {k: os.environ.get(k) for k in cluster.env}
    os.environ.update(cluster.env)
    yield cluster
    cluster.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
