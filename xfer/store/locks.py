"""The trial lock: whatever trains a trial holds ``.lock`` in its folder while it does.

A local launcher takes it before it starts a trial's processes; rank 0 of a SLURM job takes it before its
job trains. So a ``cluster=local`` launch and a SLURM job, or two launchers, never train one folder at
once. It is an OS file lock (``filelock``: ``fcntl`` on Linux), which the kernel releases when its holder
dies, so a killed holder leaves no stale lock behind.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from xfer.store.files import LOCK


def take_lock(trial_dir: Path) -> FileLock | None:
    """The trial's lock, now held by this process; None when someone else holds it."""
    lock = FileLock(str(Path(trial_dir) / LOCK))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return None
    return lock


def lock_held(trial_dir: Path) -> bool:
    """Whether someone holds the trial's lock now (so it is running, on this machine or one sharing the
    file system)."""
    if not (Path(trial_dir) / LOCK).exists():
        return False
    lock = take_lock(trial_dir)
    if lock is None:
        return True
    lock.release()
    return False
