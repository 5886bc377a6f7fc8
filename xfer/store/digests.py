"""What is slow to read from a big file, kept while the file is provably the same: its sha256 above all.

A checkpoint is hundreds of MB and a COCO instances JSON too; a sweep asks for their digest (or checks) once
per trial, so the answer is kept, in this process and on disk (under ``paths.cache``), under the file's
*state*: its resolved path, device, inode, size, modification time and status-change time (ctime), all in ns.

The ctime is what makes the state trustworthy. A file rewritten at the same size with its old mtime put back
(``cp -p``, ``rsync -t``, ``tar -x`` do that, and so does ``os.utime``) keeps path, size and mtime, so a key
of those alone would keep answering the old content's digest, and the conversion cache (keyed by it) would
train the old weights under the new file's name. User space cannot set a ctime: any write, and the utime
call itself, moves it to the kernel's clock. A file replaced by a rename (``rsync`` without ``--inplace``,
``tar``) gets a new inode as well. The one rewrite a state cannot see is one that finishes within the same
tick of the file system's clock (a few ms) as the write it replaces, impossible for files of this size; and
the trial job hashes its weights itself anyway (``xfer.trial.runner.weights_sha256``).

Every call takes the state afresh (one stat), so an answer is never older than the file. Entries on disk are
written atomically and synced; one that is damaged or unreadable is simply computed again.
This module imports neither torch nor OmegaConf: the launcher, collect and the conversion cache share it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from xfer.store.files import write_text_atomic

FileState = tuple[str, int, int, int, int, int]  # (resolved path, st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MEMO: dict[FileState, str] = {}  # this process's digests, by the state they were read in


def file_state(path: Path) -> FileState:
    """The file's state now: equal states mean unchanged content (see the module's docstring for why the
    device, inode and ctime are in it). FileNotFoundError when it is missing."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    return str(resolved), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def state_entry(folder: Path, state: tuple) -> Path:
    """The file under ``folder`` that keeps what was read from a file in ``state`` (:func:`file_state`, or a
    longer tuple starting with it)."""
    return Path(folder) / hashlib.sha256(repr(state).encode()).hexdigest()[:32]


def _kept(entry: Path) -> str | None:
    """The digest an on-disk entry keeps (its name says for which state); None when there is none, or a
    damaged one."""
    try:
        digest = entry.read_text().split(" ", 1)[0]
    except (OSError, UnicodeDecodeError):
        return None
    return digest if _HEX64.fullmatch(digest) else None


def _read_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path, store: Path | None = None, *, reread: bool = False) -> str:
    """sha256 of a file's content. Kept in this process, and on disk when ``store`` (a folder) is given, under
    the file's state: an unchanged file is read at most once per process, and at most once at all with a store.

    ``reread``: read the file now whatever is kept (the trial job's own check of its weights); the result is
    kept in this process, so later calls for the same state (the conversion cache's) agree with it. A file
    that changes while it is read gets its digest returned but kept nowhere: it matches no single state.
    FileNotFoundError when the file is missing: the caller says where the weights were looked for."""
    state = file_state(path)
    entry = state_entry(store, state) if store is not None else None
    if not reread:
        digest = _MEMO.get(state) or (_kept(entry) if entry is not None else None)
        if digest:
            _MEMO[state] = digest
            return digest
    digest = _read_sha256(state[0])
    if file_state(path) != state:
        return digest
    _MEMO[state] = digest
    if entry is not None and _kept(entry) != digest:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(entry, f"{digest} {state!r}\n")  # the state for people: the name stands for it
    return digest
