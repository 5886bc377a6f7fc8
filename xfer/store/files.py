"""The files of a trial's folder: the contract between the stages, which meet only on disk.

The launcher writes ``trial.yaml``; the trial's processes write ``progress.json`` while training and
``result.json`` (done) or ``failure.json`` (failed, with the cause) at the end; the launcher holds
``.lock`` while the trial runs. Collect and status read them. Writes are atomic (a temporary file,
then a rename), so a reader or a killed writer never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

JOB_CONFIG = "trial.yaml"  # the composed trial config (resolved) and its setting's overrides
RESULT = "result.json"  # metrics plus everything needed to trust them; written last
FAILURE = "failure.json"  # why the latest run of the trial failed, with its log tail
PROGRESS = "progress.json"  # iteration and phase of a running trial (rank 0)
LOCK = ".lock"  # held by the launcher running the trial, so no other runs it too
SLURM_RECORD = "slurm.json"  # the SLURM job id of the trial's latest submission
# What the VOC evaluator measures, in the seed's order (its tables' columns). Also what a result.json without
# ``metric_names`` measured: xfer wrote those before it recorded the names, and VOC was then its only benchmark.
VOC_METRICS = ("AP50", "AP", "AP75")
SETTING_KEYS = ("benchmark", "backbone", "pretrain")  # what it measured them on; collect groups by these
FINAL_WEIGHTS = "model_final.pth"  # detectron2's checkpoint after the last iteration
LAST_CHECKPOINT = "last_checkpoint"  # detectron2's pointer to the checkpoint a resume starts from
KEEP_CHECKPOINTS = ("final", "all", "none")  # trial.keep_checkpoints: what a finished trial keeps


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` holds ``text`` whole or keeps what it held: a temporary file, flushed to disk (fsync) before
    the rename, so a crash or power loss right after never leaves an empty or half-written file under the
    name. The folder is synced too (best effort) so the rename itself survives."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; best effort: some file systems refuse it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict | None:
    """The file's content, or None when it is missing (or, briefly, unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def record_failure(trial_dir: Path, cause: str, detail: str = "", **extra) -> None:
    """``failure.json``: one line of cause (what the status shows) and the log's tail (what to read next)."""
    record = {"cause": cause, "detail": detail[-4000:], "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    write_json_atomic(Path(trial_dir) / FAILURE, record)


def metric_names(record: dict) -> tuple[str, ...]:
    """The metrics a result says it measured, in the order its tables show them: its ``metric_names``.

    A result.json written by an older xfer has no ``metric_names``: it measured VOC's three
    (:data:`VOC_METRICS`), the only metrics xfer had then, so it reads as having named those. Whether the
    names are sound (a non-empty list of distinct strings) is :func:`result_problem`'s to say."""
    names = record.get("metric_names", VOC_METRICS)
    return tuple(names) if isinstance(names, list | tuple) else ()


def result_problem(record: object) -> str:
    """Why ``record`` (a parsed ``result.json``) is not a finished trial's result, or "" when it is one.

    Finished means what collect needs: the setting it measured, the names of what it measured (at least one;
    :func:`metric_names`) and a number for every one of them (a bool is not a number, though JSON's
    ``true`` is Python's 1)."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    setting, metrics = record.get("setting"), record.get("metrics")
    if not isinstance(setting, dict) or not all(isinstance(setting.get(k), str) for k in SETTING_KEYS):
        return "no setting"
    names = metric_names(record)
    if not names or not all(isinstance(m, str) and m for m in names) or len(set(names)) != len(names):
        return f"metric_names is not a list of distinct names: {record.get('metric_names')!r}"
    if not isinstance(metrics, dict):
        return "no metrics"
    missing = [m for m in names if isinstance(metrics.get(m), bool) or not isinstance(metrics.get(m), int | float)]
    return f"no number for {', '.join(missing)}" if missing else ""


def measured(record: dict) -> dict[str, float]:
    """A finished result's metrics, named and ordered by its :func:`metric_names` (``result.json`` itself is
    written with sorted keys, so the order of its ``metrics`` says nothing); anything else it holds is not
    part of what the trial measured. Only for a record :func:`result_problem` finds sound."""
    return {m: float(record["metrics"][m]) for m in metric_names(record)}


def read_result(trial_dir: Path) -> dict | None:
    """The trial's result when it is done: ``result.json`` readable, with its setting and metrics.

    This is what "done" means everywhere (launch, plan, status, the SLURM job): a truncated or otherwise
    damaged file does not count, so the next launch redoes the trial (see :func:`set_aside_damaged`)."""
    try:
        record = json.loads((Path(trial_dir) / RESULT).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None if result_problem(record) else record


def damage(trial_dir: Path) -> str:
    """Why the trial's ``result.json`` is damaged; "" when it is missing or sound."""
    path = Path(trial_dir) / RESULT
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    try:
        return result_problem(json.loads(text))
    except json.JSONDecodeError as e:
        return f"not JSON ({e}; {len(text)} bytes)" if text else "empty"


@dataclass(frozen=True)
class Redo:
    """How a trial with a damaged ``result.json`` is redone: where the damaged file went, and from what."""

    cause: str  # why the file was damaged
    kept_as: Path | None  # the damaged file, set aside (None: not moved yet, a plan)
    start: str  # what the redo starts from, in words

    def describe(self, name: str) -> str:
        kept = f"kept as {self.kept_as.name}" if self.kept_as else "the launch keeps it as result.json.damaged-<time>"
        return f"{RESULT} of {name} is damaged ({self.cause}): {kept}, {self.start}"


def finished(trial_dir: Path) -> bool:
    """Whether the trial is done (:func:`read_result`). Then nothing that happens to its processes afterwards
    (a rank failing in teardown, a signal) makes it a failed trial."""
    return read_result(trial_dir) is not None


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


def set_aside_damaged(trial_dir: Path, max_iter: int | None = None) -> Redo | None:
    """Move a damaged ``result.json`` aside (``result.json.damaged-<time>``, never overwriting an earlier
    one) so the trial runs again and nothing is lost; None when there is nothing damaged."""
    cause = damage(trial_dir)
    if not cause:
        return None
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
