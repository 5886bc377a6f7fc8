"""xfer.store.queue against a real SLURM (the ``small_slurm`` fixture: MaxArraySize=5, ended jobs forgotten
after 2 s): jobs held, running, requeued, array tasks, ended long ago, never known; its limits; its errors.
And how a submission is cut into arrays within those limits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xfer.launch import slurm
from xfer.store import queue


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_limits_and_partitions(on_small):
    assert queue.limits() == queue.Limits(max_array_size=5)  # MaxArraySize=5 in its slurm.conf
    assert queue.partitions() == ["debug", "other"]
    assert queue.time_limits() == ({"debug": "infinite", "other": "infinite"}, "debug")  # MaxTime=INFINITE, Default=YES


@pytest.mark.parametrize("shown,expected", [("infinite", None), ("10:00", 10), ("1:31:00", 91), ("2-12:00:00", 3600),
                                            ("0:30", 0.5), ("n/a", None), ("UNLIMITED", None)])  # fmt: skip
def test_time_limits_read_as_sinfo_shows_them(shown, expected):
    """sinfo's ``%l`` as SLURM printed them for MaxTime=INFINITE, 10, 90:30 (rounded up to 1:31:00), 2-12:00:00 and
    30 seconds; worked out by hand in minutes."""
    assert queue.minutes(shown) == expected


@pytest.mark.slow
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


def test_a_sweep_is_cut_into_arrays_of_at_most_max_array_size():
    cut = lambda n, size: [(r.start, r.stop) for r in slurm.arrays(n, queue.Limits(size))]  # noqa: E731
    assert cut(12, 5) == [(0, 5), (5, 10), (10, 12)]  # indices 0-4 in each: all below MaxArraySize=5
    assert cut(5, 5) == [(0, 5)] and cut(1001, 1001) == [(0, 1001)] and cut(1002, 1001) == [(0, 1001), (1001, 1002)]
    assert cut(3, 0) == [(0, 1), (1, 2), (2, 3)]  # arrays off: one job a trial
    assert cut(0, 5) == []


def test_the_collect_job_waits_for_every_array_and_keeps_the_users_dependency():
    cluster = OmegaConf.create({"sbatch": {"comment": "x"}})
    assert slurm.collect_options(cluster, ["11", "12", "13"]) == {"comment": "x", "dependency": "afterany:11:12:13"}
    cluster = OmegaConf.create({"sbatch": {"dependency": "afterok:7"}})
    assert slurm.collect_options(cluster, ["11"])["dependency"] == "afterany:11,afterok:7"
    one, three = (slurm.Submission(ids, ["t"] * 12, "14", Path(".")) for ids in (["11"], ["11", "12", "13"]))
    assert one.summary() == "submitted 12 trials as SLURM job array 11; job 14 collects the table after it"
    assert three.summary() == "submitted 12 trials as SLURM job arrays 11, 12, 13; job 14 collects the table after them"
    assert three.ids == ["11", "12", "13", "14"]
