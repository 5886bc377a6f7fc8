"""Where a trial stands: the one place that decides it, from its folder and, when submitted, SLURM's word.

The launcher, the local runner, the SLURM job, ``status``, ``plan`` and collect all ask :func:`of`, so they
never disagree. The states (:data:`STATES`):

- ``done``: a sound ``result.json`` whose recorded identity is the one its folder is launched for;
- ``stale``: a sound ``result.json`` of another identity (the recipe, data or evaluator changed since): kept,
  never pooled, never silently retrained; ``changes`` says what changed;
- ``damaged``: a ``result.json`` that was read whole but is not a result (truncated, no number for a metric);
  the next launch sets it aside and redoes the trial from what it left;
- ``unreadable``: a file that could not be read (EIO, ESTALE, EACCES on another user's file): reported and
  left in place, since the content may be sound;
- ``queued``, ``requeued``, ``running``: SLURM still has the trial's job (its word comes first: a requeue
  leaves the SIGTERM's ``failure.json`` until the job runs again), or a launcher holds the trial's lock;
- ``failed``: ``failure.json`` with its cause, or a SLURM job that ended without a result or a failure record;
- ``partial``: a checkpoint to resume from, nothing running it; ``to run``: nothing yet.

``conflict`` (two different results for one trial in the folders collect reads, or two jobs of one sweep
sharing a folder with different identities) is decided where both are seen: collect and the launcher.
Looking never takes a lock (``xfer.store.locks.held``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from xfer.store import identity, locks
from xfer.store.files import FAILURE, LAST_CHECKPOINT, PROGRESS, RESULT, result_problem
from xfer.store.redo import checkpoint_iteration

STATES = ("to run", "queued", "requeued", "running", "partial", "done", "failed", "damaged", "stale", "conflict",
          "unreadable")  # fmt: skip
FINISHED = ("done", "stale")  # a sound result.json: nothing runs it again unless asked
ACTIVE = ("queued", "requeued", "running")  # something will run it, or runs it now


class Job(Protocol):
    """What SLURM says of a trial's job (``xfer.store.queue.JobState``)."""

    state: str
    restarts: int

    @property
    def active(self) -> bool: ...

    @property
    def running(self) -> bool: ...


@dataclass(frozen=True)
class ResultFile:
    """``result.json`` as read: ``record`` when sound; else ``kind`` says why not (missing, damaged,
    unreadable) and ``cause`` how."""

    kind: str  # "sound", "missing", "damaged", "unreadable"
    record: dict | None = None
    cause: str = ""


def read_result(trial_dir: Path) -> ResultFile:
    """The trial's ``result.json``. Only content that was read whole and is wrong is damaged; an I/O error is
    unreadable (the file may be sound: it must not be moved aside on a bad day of the file system)."""
    path = Path(trial_dir) / RESULT
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():  # a link into storage that is gone or not mounted: the result may well exist
            return ResultFile("unreadable", cause=f"unreadable {RESULT}: a link to {os.readlink(path)}, which is "
                                                  "not there (storage not mounted?)")  # fmt: skip
        return ResultFile("missing")
    except OSError as e:
        return ResultFile("unreadable", cause=f"unreadable {RESULT} ({type(e).__name__}: {e.strerror or e})")
    try:
        record = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return ResultFile("damaged", cause=f"damaged {RESULT}: not JSON ({e}; {len(raw)} bytes)" if raw
                          else f"damaged {RESULT}: empty")  # fmt: skip
    problem = result_problem(record)
    if problem:
        return ResultFile("damaged", cause=f"damaged {RESULT}: {problem}")
    return ResultFile("sound", record)


def finished(trial_dir: Path) -> bool:
    """Whether the trial's processes wrote a sound ``result.json``: from then on nothing that happens to them (a
    rank failing in teardown, a signal) makes it a failed trial. (Whether it is also of the identity launched
    now is :func:`of`'s question.)"""
    return read_result(trial_dir).kind == "sound"


def expected(trial_dir: Path) -> dict | None:
    """The identity (less the seed) the trial's folder was last launched for (``identity.json`` beside its seed
    folders); None where no launch recorded one (an older xfer, or a folder copied without it)."""
    try:
        found = json.loads((Path(trial_dir).parent / identity.IDENTITY).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


@dataclass(frozen=True)
class TrialState:
    """One trial's state (one of :data:`STATES`) and what goes with it."""

    state: str
    cause: str = ""  # why it failed, is damaged, unreadable or stale; who runs it
    result: dict | None = None  # done or stale: the parsed result.json
    # of max_iter: while something runs the trial, how far it is (progress.json); else where a run of it resumes
    # (:func:`resumes_at`: the iterations its checkpoint holds), whatever progress.json says
    iteration: int | None = None
    max_iter: int | None = None
    job: Job | None = None
    changes: tuple[str, ...] = ()  # stale: what differs from the identity launched now

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def describe(self) -> str:
        """The state in a few words, e.g. ``partial 500/24000``, ``stale: SOLVER.BASE_LR 0.02 → 0.01``."""
        if self.state in ("partial", "running", "requeued", "damaged") and self.iteration is not None and self.max_iter:
            return f"{self.state} {self.iteration}/{self.max_iter}"
        if self.state == "stale":
            return "stale: " + "; ".join(self.changes)
        return self.state


def resumes_at(trial_dir: Path, max_iter: int | None = None) -> int | None:
    """The iteration a run of the trial starts from, which is also how many iterations its checkpoint holds; None
    without a checkpoint (it starts from 0). The one definition of a partial trial's k in ``partial k/N``.

    detectron2 resumes from the checkpoint ``last_checkpoint`` names (``DefaultTrainer.resume_or_load``): the
    checkpoint saved after iteration i (0-based) is ``model_{i:07d}.pth`` holding ``iteration`` i
    (``PeriodicCheckpointer.step``, and xfer's stop on request), and training restarts at ``iteration + 1``; so
    ``model_0000019.pth`` resumes at 20, and ``model_final.pth`` leaves ``max_iter`` (only the evaluation).
    ``progress.json`` may be further on (a trial killed between checkpoints): those iterations are trained again."""
    try:
        name = (Path(trial_dir) / LAST_CHECKPOINT).read_text().strip()
    except OSError:
        return None
    return checkpoint_iteration(name, max_iter or 0) if name else None


def _progress(trial_dir: Path, max_iter: int | None, live: bool = True) -> tuple[int | None, int | None]:
    """(iteration, max_iter): while something runs the trial (``live``), how far it is, from its ``progress.json``;
    else, and failing that, where a run of it resumes (:func:`resumes_at`). ``progress.json`` gives max_iter where
    the caller does not."""
    try:
        p = json.loads((trial_dir / PROGRESS).read_text())
        if live:
            return int(p["iteration"]), int(p["max_iter"])
        max_iter = max_iter or int(p["max_iter"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return resumes_at(trial_dir, max_iter), max_iter


def _failure_cause(trial_dir: Path) -> str | None:
    """The cause ``failure.json`` gives; None without one."""
    try:
        record = json.loads((trial_dir / FAILURE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"unreadable {FAILURE}: {e}"
    return str(record.get("cause", "")) if isinstance(record, dict) else f"unreadable {FAILURE}"


def _seed_moved(trial_dir: Path, record: dict) -> tuple[str, ...]:
    """A result of another seed than its folder's (a folder copied or renamed by hand): the folder's trial has not
    run, whatever the result says, so it is stale, with the seed that changed."""
    folder = re.fullmatch(r"seed(\d+)", trial_dir.name)
    ran = (record.get("identity") or {}).get("seed", record.get("seed"))
    if folder is None or ran is None or int(folder[1]) == ran:
        return ()
    return (f"seed {ran} → {folder[1]}: folder {trial_dir.name} holds seed {ran}'s result",)


FROM_FOLDER = object()  # of(): compare with the folder's identity.json


def of(trial_dir: Path, launched: dict | None | object = FROM_FOLDER, job: Job | None = None,
       max_iter: int | None = None) -> TrialState:  # fmt: skip
    """The state of the trial in ``trial_dir``.

    ``launched``: the identity its folder is launched for now (the launcher passes what it composed); by default
    the folder's ``identity.json`` (what the latest launch asked for); None: compare with nothing. ``job``: what
    SLURM says of the trial's latest job, where it was submitted (``slurm.json``) and the queue was read.
    ``max_iter``: the recipe's, for ``partial k/N`` where no ``progress.json`` says it."""
    trial_dir = Path(trial_dir)
    result = read_result(trial_dir)
    if result.kind == "unreadable":
        return TrialState("unreadable", result.cause, job=job)
    if result.kind == "sound":
        want = expected(trial_dir) if launched is FROM_FOLDER else launched
        record = result.record or {}
        runs = (record.get("run") or {}).get("max_iter")
        changes = _seed_moved(trial_dir, record)
        changes += tuple(identity.changes(record.get("identity"), want, with_seed=False)) if want else ()
        if changes:
            return TrialState("stale", "; ".join(changes), record, runs, runs, job, changes)
        return TrialState("done", "", record, runs, runs, job)
    if job is not None and job.active:  # SLURM's word first: it will run the trial (again)
        if job.running or locks.held(trial_dir):
            return TrialState("running", "", None, *_progress(trial_dir, max_iter), job)
        iteration, top = _progress(trial_dir, max_iter, live=False)  # waits: it resumes from its checkpoint
        return TrialState("requeued" if job.restarts else "queued", "", None, iteration, top, job)
    if locks.held(trial_dir) and result.kind != "damaged":
        return TrialState("running", "", None, *_progress(trial_dir, max_iter), job)
    iteration, top = _progress(trial_dir, max_iter, live=False)
    if result.kind == "damaged":  # the redo starts from what it left: iteration says how far it got
        return TrialState("damaged", result.cause, None, iteration, top, job)
    cause = _failure_cause(trial_dir)
    if cause is not None:
        return TrialState("failed", cause, None, iteration, top, job)
    if job is not None:  # its job ended, and left neither a result nor a failure record
        return TrialState("failed", f"SLURM job ended ({job.state or 'state unknown'}) without a result or a failure "
                          "record; its log is under the sweep's _slurm folder", None, iteration, top, job)  # fmt: skip
    if iteration:
        return TrialState("partial", "", None, iteration, top, job)
    return TrialState("to run", "", None, None, top, job)
