"""The trial lock: whatever trains a trial holds ``.lock`` in its folder while it does.

A local launcher takes it before it starts a trial's processes; rank 0 of a SLURM job waits for it
before its job trains. So a ``cluster=local`` launch and a SLURM job, or two launchers, never train one
folder at once. ``status`` and ``plan=true`` only look (:func:`held`), and looking never takes the lock,
so a job that starts while someone looks never finds it taken by the looker.

Which lock: an open file description lock (Linux's ``F_OFD_SETLK`` / ``F_OFD_GETLK`` through ``fcntl``),
a whole-file write lock. Why this one:

- ``F_OFD_GETLK`` asks whether the lock could be taken *without taking it*. ``flock`` has no such
  question: it can only be answered by taking the lock, and a job starting during that moment would find
  the lock taken (``/proc/locks`` would answer without taking it, but only for this machine's locks; a
  SLURM job on a compute node holds its lock on another machine).
- It works across machines where the file system supports POSIX locks: NFS sends the lock and the test to
  the server (NFS emulates ``flock`` with the same locks, so this is what ``flock`` gets there anyway);
  Lustre needs ``-o flock`` for either kind.
- Unlike classic POSIX (``F_SETLK``) locks, it belongs to the open file, not the process: closing another
  descriptor of the file (as :func:`held` does) never drops a lock this process holds, and two takes in
  one process exclude each other, as two launchers do.

The kernel releases the lock when its holder dies (or closes the file), so a killed holder leaves no stale
lock. The descriptor is close-on-exec: a trial's child processes do not hold it. Linux 3.15 or later.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import tempfile
import time
from pathlib import Path

from xfer.store.files import LOCK

# struct flock on 64-bit Linux: l_type, l_whence (short), l_start, l_len (off_t), l_pid (int), padding.
_FLOCK = "hhqqi4x"
# What a file system without working locks answers (Lustre mounted without -o flock: ENOSYS).
UNSUPPORTED = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


class LocksUnsupported(RuntimeError):
    """The file system cannot lock files, so nothing could keep two launchers off one trial."""


def _whole_file(kind: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)  # l_len 0: to the end; l_pid must be 0 for OFD locks


def _unsupported(path: Path, err: OSError) -> LocksUnsupported:
    return LocksUnsupported(
        f"{path.parent}: its file system cannot lock files ({err.strerror or err}), so nothing keeps two launchers "
        "from training one trial. Put output_root on a file system with locks, or mount this one with them "
        "(Lustre: -o flock; NFS: without -o nolock)"
    )


class TrialLock:
    """A held trial lock; :meth:`release` (or leaving a ``with`` block) gives it back."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock back (closing the file does); a second call does nothing."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TrialLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _take_file(path: Path) -> TrialLock | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _whole_file(fcntl.F_WRLCK))
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):  # someone holds it
            return None
        if e.errno in UNSUPPORTED:
            raise _unsupported(path, e) from e
        raise
    return TrialLock(path, fd)


def take(trial_dir: Path) -> TrialLock | None:
    """The trial's lock, now held by this process; None when someone else holds it. Never waits."""
    return _take_file(Path(trial_dir) / LOCK)


def wait(trial_dir: Path, timeout_s: float, poll_s: float = 1.0, name: str = LOCK) -> TrialLock | None:
    """The trial's lock (or the folder's lock file ``name``) once its holder lets go; None when it is still held
    after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        lock = _take_file(Path(trial_dir) / name)
        if lock is not None or time.monotonic() >= deadline:
            return lock
        time.sleep(max(min(poll_s, deadline - time.monotonic()), 0))


def held(trial_dir: Path) -> bool:
    """Whether someone (any process, on any machine sharing the file system) holds the trial's lock now.
    Asks the kernel whether the lock could be taken, without taking it (``F_OFD_GETLK``)."""
    path = Path(trial_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # a holder creates the file before it locks it
        return False
    try:
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _whole_file(fcntl.F_WRLCK))
    except OSError as e:
        if e.errno in UNSUPPORTED:
            raise _unsupported(path, e) from e
        raise
    finally:
        os.close(fd)
    return struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK


def problem(folder: Path) -> str:
    """"" when files in ``folder`` (or, before it exists, in the nearest folder above it that does) can be
    locked; else one message naming the file system problem and the fix. Locks a probe file and removes it."""
    where = Path(folder).absolute()
    while not where.is_dir() and where != where.parent:
        where = where.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".xfer-lock-probe-", dir=where)
    except OSError as e:
        return f"{folder}: cannot create a file in {where} to check that it can be locked ({e.strerror or e})."
    os.close(fd)
    try:
        lock = _take_file(Path(probe))
        if lock is not None:
            lock.release()
    except LocksUnsupported as e:
        return f"{e}."
    finally:
        os.unlink(probe)
    return ""
