"""The trial lock between real processes: looking never takes it, waiting gives up, a file system without locks
is named before anything runs, and a SLURM job's rank 0 leaves a trial someone else keeps."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import REPO, launch
from tests.test_results import DENSECL, trial
from xfer.store import locks
from xfer.trial import slurm_job

HOLDER = """\
import sys
from xfer.store import locks
lock = locks.take(sys.argv[1])
print("held" if lock else "refused", flush=True)
sys.stdin.readline()  # hold until told
"""

TAKER = """\
import sys, time
from xfer.store import locks
refused = 0
for _ in range(int(sys.argv[2])):
    lock = locks.take(sys.argv[1])
    if lock is None:
        refused += 1
    else:
        lock.release()
    time.sleep(0.0005)  # as a starting job would: take once, now and then
print(refused, flush=True)
"""

LOOKER = """\
import sys, threading
from xfer.store import locks
stop, looks = threading.Event(), 0
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
print(locks.held(sys.argv[1]), flush=True)
while not stop.is_set():
    locks.held(sys.argv[1])
    looks += 1
print(looks, flush=True)
"""


def python(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, text=True, stdout=subprocess.PIPE, **kw)


@pytest.fixture
def holder(tmp_path):
    """Another process holding ``tmp_path``'s trial lock until its stdin closes."""
    proc = python(HOLDER, str(tmp_path), stdin=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.stdin.close()
    proc.wait()


def test_held_sees_another_process_hold_the_lock_and_its_end(tmp_path, holder):
    assert locks.held(tmp_path)
    assert locks.take(tmp_path) is None
    holder.stdin.close()
    holder.wait()
    assert not locks.held(tmp_path)  # the kernel let go when the holder exited
    with locks.take(tmp_path) as lock:
        assert lock is not None and locks.held(tmp_path)
    assert not locks.held(tmp_path)


def test_looking_never_keeps_a_starter_out(tmp_path):
    """A looker calling held() without pause in one process while another takes and gives back the lock 2000
    times: no take is ever refused. (A looker that takes the lock to look refused hundreds of them here.)"""
    (tmp_path / ".lock").touch()
    looker = python(LOOKER, str(tmp_path), stdin=subprocess.PIPE)
    try:
        assert looker.stdout.readline().strip() == "False"  # looking from here on
        refused = int(python(TAKER, str(tmp_path), "2000").communicate(timeout=300)[0])
    finally:
        looker.stdin.close()
    looks = int(looker.stdout.read())
    looker.wait()
    assert looks > 0 and refused == 0, f"{refused} of 2000 takes refused while looking {looks} times"


def test_looking_in_the_holders_own_process_keeps_its_lock(tmp_path):
    """held() opens and closes the lock file; a classic POSIX lock would be dropped by that close."""
    lock = locks.take(tmp_path)
    assert lock is not None and locks.held(tmp_path)
    other = python(HOLDER, str(tmp_path), stdin=subprocess.DEVNULL)
    assert other.stdout.readline().strip() == "refused"
    other.wait()
    lock.release()
    lock.release()  # a second release does nothing
    assert not locks.held(tmp_path)


def test_wait_gives_up_while_held_and_gets_the_lock_when_let_go(tmp_path, holder):
    assert locks.wait(tmp_path, timeout_s=0.3, poll_s=0.1) is None
    got = []
    waiter = threading.Thread(target=lambda: got.append(locks.wait(tmp_path, timeout_s=300, poll_s=0.05)))
    waiter.start()
    holder.stdin.close()  # the holder exits: the waiter gets the lock
    waiter.join()
    assert got[0] is not None and locks.held(tmp_path)
    got[0].release()


def no_locks(monkeypatch) -> None:
    """The one fake here: no file system without locks (Lustre without -o flock) exists on this machine, so
    the OS call answers as such a file system does (ENOSYS); the files themselves are real."""
    real = fcntl.fcntl

    def fcntl_without_locks(fd, cmd, arg=0):
        if cmd in (fcntl.F_OFD_SETLK, fcntl.F_OFD_GETLK):
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
        return real(fd, cmd, arg)

    monkeypatch.setattr(locks.fcntl, "fcntl", fcntl_without_locks)


def test_problem_names_a_file_system_without_locks(tmp_path, monkeypatch):
    later = tmp_path / "sweep" / "not yet"
    assert locks.problem(tmp_path) == "" and locks.problem(later) == ""
    assert not later.exists() and list(tmp_path.iterdir()) == []  # probed above it, nothing left behind
    no_locks(monkeypatch)
    message = locks.problem(later)
    assert message.startswith(f"{tmp_path}: its file system cannot lock files (Function not implemented)")
    assert "Lustre: -o flock" in message and "output_root" in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(locks.LocksUnsupported, match="cannot lock files"):
        locks.take(tmp_path)


def test_a_job_kept_out_leaves_the_trial_and_says_why(tmp_path, holder):
    lock, why = slurm_job.claim(tmp_path, "77_3", lock_wait_s=0.2)
    assert lock is None and why.startswith("lock held by another launcher for 0.2 s")
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert failure["cause"] == why and failure["job_id"] == "77_3"


def test_a_job_that_finds_its_trial_done_ends_without_a_failure(tmp_path):
    done = trial(tmp_path, DENSECL, 0, (82.64, 58.32, 64.60))  # a sound result.json, as a finished trial leaves it
    lock, why = slurm_job.claim(done, "77_4", lock_wait_s=0)
    assert lock is None and why == "trial done already"
    assert not (done / "failure.json").exists() and not locks.held(done)


NO_LOCKS = """\
import errno, fcntl, os

_real = fcntl.fcntl


def _fcntl(fd, cmd, arg=0):  # as Lustre without -o flock answers (see no_locks)
    if cmd in (fcntl.F_OFD_SETLK, fcntl.F_OFD_GETLK):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    return _real(fd, cmd, arg)


fcntl.fcntl = _fcntl
"""


@pytest.mark.slow
def test_a_launch_names_a_file_system_without_locks_before_anything_runs(tmp_path):
    """The launcher's check, in a real launch whose OS answers locks with ENOSYS (a ``sitecustomize`` on
    PYTHONPATH, which Python imports at start-up: the fake of :func:`no_locks`, nothing else)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(NO_LOCKS)
    out = tmp_path / "out"
    run = launch("-m", "benchmark=smoke_fast", "pretrain=densecl", "seed=0-1", f"output_root={out}",
                 env={"PYTHONPATH": f"{hooks}{os.pathsep}{REPO}"})  # fmt: skip
    assert run.returncode == 2, run.output[-3000:]
    assert "its file system cannot lock files (Function not implemented)" in run.stderr
    assert "Lustre: -o flock" in run.stderr and "nothing was run" in run.stderr
    assert not list(out.rglob("trial.yaml")) and not list(out.rglob(".xfer-lock-probe-*"))
