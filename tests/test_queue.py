"""xfer.store.queue against a real SLURM (the ``small_slurm`` fixture: MaxArraySize=5, ended jobs forgotten
after 2 s): jobs held, running, requeued, array tasks, ended long ago, never known; its limits; its errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from xfer.store import queue

pytestmark = pytest.mark.slow


@pytest.fixture
def on_small(small_slurm, monkeypatch):
    """queue's commands (which inherit this process's environment) ask the small cluster."""
    monkeypatch.setenv("SLURM_CONF", small_slurm.env["SLURM_CONF"])
    return small_slurm


def sbatch(*args: str) -> str:
    return subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", *args], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def squeue(job: str) -> subprocess.CompletedProcess:
    return subprocess.run(["squeue", "-h", "-t", "all", "-o", "%T|%r", "-j", job], capture_output=True, text=True)


def until(predicate, what: str, limit: int = 600) -> None:
    """Poll SLURM until ``predicate`` holds; fail after ``limit`` polls (a scheduler that stopped moving)."""
    for _ in range(limit):
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"SLURM never got to: {what}")


def test_states_and_active_of_jobs_in_every_state(on_small):
    ended = sbatch("--wrap", "true")
    until(lambda: "Invalid job id specified" in squeue(ended).stderr, "forgetting the ended job")  # MinJobAge
    held, running = sbatch("-H", "--wrap", "true"), sbatch("--wrap", "sleep 600")
    array = sbatch("-H", "-a", "0-2", "--wrap", "true")
    try:
        until(lambda: squeue(running).stdout.startswith("RUNNING"), "the sleeping job to run")
        ids = [ended, held, running, f"{array}_1", array, "999999"]
        assert queue.active(ids) == {held, running, f"{array}_1", array}  # an array is active through its tasks
        assert queue.active([ended]) == set()  # alone: squeue exits 1 ("Invalid job id specified")
        assert queue.active([ended, "999999"]) == set()  # together: squeue exits 0 and lists neither
        assert queue.states(ids) == {held: queue.JobState("PENDING"), running: queue.JobState("RUNNING"),
                                     f"{array}_1": queue.JobState("PENDING")}  # fmt: skip
        assert queue.states([held])[held].active and not queue.states([held])[held].running
        queue.requeue(running)
        until(lambda: queue.states([running]).get(running, queue.JobState("")).restarts == 1, "the requeue")
        assert running in queue.active([running])
        with pytest.raises(queue.QueueUnreadable, match=r"`scontrol requeue 999999` exited with status 1: .*Invalid"):
            queue.requeue("999999")
    finally:
        subprocess.run(["scancel", held, running, array], check=True)


def test_limits_and_partitions(on_small):
    assert queue.limits() == queue.Limits(max_array_size=5, max_submit_jobs=None)  # MaxArraySize=5 in its slurm.conf
    assert queue.partitions() == ["debug", "other"]


def test_every_command_fails_the_same_way(on_small, monkeypatch):
    with pytest.raises(queue.QueueUnreadable, match=r"`squeue .* -j abc` exited with status 1: .*Invalid job id: abc"):
        queue.active(["abc"])
    monkeypatch.setenv("SLURM_CONF", "/nonexistent/slurm.conf")  # SLURM's clients retry such a file for 60 s
    monkeypatch.setattr(queue, "TIMEOUT_S", 2)
    for ask in (lambda: queue.states(["1"]), queue.partitions, queue.limits):
        with pytest.raises(queue.QueueUnreadable, match=r"` gave no answer in 2 s"):
            ask()
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # the venv alone: no SLURM commands
    with pytest.raises(queue.QueueUnreadable, match="squeue is not on PATH") as e:
        queue.active(["1"])
    assert "slurm.json" in e.value.fix
