"""Redoing a trial that cannot stand as it is, without losing what it left: a damaged ``result.json`` is set
aside and the trial resumes from its checkpoints; a stale trial's files go aside and it runs from the start.
And what a finished trial keeps of its checkpoints (``trial.keep_checkpoints``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from xfer.store import files, handover
from xfer.store.files import FINAL_WEIGHTS, JOB_CONFIG, KEEP_CHECKPOINTS, LAST_CHECKPOINT, LOCK, RESULT, SLURM_RECORD


@dataclass(frozen=True)
class Redo:
    """How a trial with a damaged ``result.json`` is redone: where the damaged file went, and from what."""

    cause: str  # why the file was damaged
    kept_as: Path | None  # the damaged file, set aside (None: not moved yet, a plan)
    start: str  # what the redo starts from, in words

    def describe(self, name: str) -> str:
        cause = self.cause.removeprefix(f"damaged {RESULT}: ")  # state's words; here the file is named already
        kept = f"kept as {self.kept_as.name}" if self.kept_as else "the launch keeps it as result.json.damaged-<time>"
        return f"{RESULT} of {name} is damaged ({cause}): {kept}, {self.start}"


def checkpoint_iteration(name: str, max_iter: int) -> int:
    """Iterations a detectron2 checkpoint name stands for: ``model_0000499.pth`` -> 500, final -> max."""
    stem = Path(name).stem
    if stem == "model_final":
        return max_iter
    try:
        return int(stem.rsplit("_", 1)[1]) + 1
    except (IndexError, ValueError):
        return 0


def redo_start(trial_dir: Path, max_iter: int | None = None) -> str:
    """What a redo of the trial starts from, in words: its final weights (re-evaluated, not retrained), an
    earlier checkpoint (training resumes there), or nothing (trained from the start). detectron2 resumes
    from the checkpoint ``last_checkpoint`` names; ``model_0000499.pth`` stands for 500 iterations done."""
    last = Path(trial_dir) / LAST_CHECKPOINT
    name = last.read_text().strip() if last.exists() else ""
    if not name or not (Path(trial_dir) / name).exists():
        return "retraining from the start (no checkpoint left)"
    if Path(name).stem == "model_final" or (max_iter is not None and checkpoint_iteration(name, max_iter) >= max_iter):
        return f"re-evaluating from {name}"
    return f"resuming training from {name}"


def set_aside_damaged(trial_dir: Path, cause: str, max_iter: int | None = None) -> Redo | None:
    """Move the ``result.json`` that ``xfer.store.state`` found damaged (``cause``) aside, as
    ``result.json.damaged-<time>`` (never overwriting an earlier one), so the trial runs again and nothing is
    lost; None when another launcher moved it first. A file that cannot be read is unreadable, not damaged,
    and is never moved."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kept, n = Path(trial_dir) / f"{RESULT}.damaged-{stamp}", 1
    while kept.exists():
        n += 1
        kept = Path(trial_dir) / f"{RESULT}.damaged-{stamp}-{n}"
    try:
        os.replace(Path(trial_dir) / RESULT, kept)
    except FileNotFoundError:  # another launcher of the sweep set it aside first
        return None
    return Redo(cause, kept, redo_start(trial_dir, max_iter))


def set_aside_stale(trial_dir: Path) -> Path:
    """Move a stale trial's files (its result, checkpoints, logs) into ``_stale-<time>/`` inside its folder, so it
    runs again from the start and nothing it measured is lost (collect skips folders starting with ``_``). The
    lock and the SLURM record stay. The hand-over (``trial.yaml``: the config and identity the old trial ran with)
    is copied there and stays in place too, so the folder is still a trial until the launcher writes the new one
    (:func:`_old_handover`)."""
    trial_dir = Path(trial_dir)
    kept = trial_dir / f"_stale-{time.strftime('%Y%m%dT%H%M%S')}"
    n = 1
    while kept.exists():
        n += 1
        kept = trial_dir / f"_stale-{time.strftime('%Y%m%dT%H%M%S')}-{n}"
    kept.mkdir()
    if _old_handover(trial_dir):
        shutil.copy2(trial_dir / JOB_CONFIG, kept / JOB_CONFIG)
    for item in sorted(trial_dir.iterdir()):
        if item != kept and item.name not in (JOB_CONFIG, LOCK, SLURM_RECORD) and not item.name.startswith("_stale-"):
            os.replace(item, kept / item.name)
    files.fsync_dir(kept)
    return kept


def _old_handover(trial_dir: Path) -> bool:
    """Whether the folder's ``trial.yaml`` is the hand-over of the trial whose ``result.json`` is set aside: it is
    there and names the identity the result recorded (the trial copies it from there), or either records none (an
    older xfer). The launcher sets a stale trial aside before it writes the new hand-over; one already written
    for the new identity is not the old trial's, and stays only in place."""
    try:
        handed = handover.read(trial_dir).identity
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):  # unreadable: keep it as it is
        return True
    try:
        recorded = json.loads((trial_dir / RESULT).read_text()).get("identity")
    except (OSError, ValueError, AttributeError):
        recorded = None
    digest = lambda i: i.get("digest") if isinstance(i, dict) else None  # noqa: E731
    return digest(handed) is None or digest(recorded) is None or digest(handed) == digest(recorded)


def prune_checkpoints(trial_dir: Path, keep: str) -> list[str]:
    """Delete what ``keep`` (``trial.keep_checkpoints``) does not keep of a finished trial's checkpoints;
    returns the names deleted. ``all``: nothing goes. ``final``: the final weights (what re-evaluating a
    damaged result needs) and ``last_checkpoint``, with the file it names, stay. ``none``: all go."""
    if keep not in KEEP_CHECKPOINTS:
        raise ValueError(f"trial.keep_checkpoints={keep!r}: use one of {', '.join(KEEP_CHECKPOINTS)}")
    if keep == "all":
        return []
    trial_dir, kept = Path(trial_dir), set()
    last = trial_dir / LAST_CHECKPOINT
    if keep == "final":
        kept = {FINAL_WEIGHTS, last.read_text().strip()} if last.exists() else {FINAL_WEIGHTS}
    gone = sorted(p.name for p in trial_dir.glob("model_*.pth") if p.name not in kept)
    if keep == "none" and last.exists():
        gone.append(LAST_CHECKPOINT)
    for name in gone:
        (trial_dir / name).unlink(missing_ok=True)
    return gone
