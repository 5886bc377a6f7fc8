"""The files of a trial's folder: the contract between the stages, which meet only on disk.

The launcher writes ``trial.yaml``; the trial's processes write ``progress.json`` while training and
``result.json`` (done) or ``failure.json`` (failed, with the cause) at the end; the launcher holds
``.lock`` while the trial runs. Collect and status read them. Writes are atomic (a temporary file,
then a rename), so a reader or a killed writer never leaves half a file behind.
"""

from __future__ import annotations

import json
import math
import os
import time
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


def write_text_atomic(path: Path, text: str | bytes) -> None:
    """``path`` holds ``text`` whole or keeps what it held: a temporary file, flushed to disk (fsync) before
    the rename, so a crash, a full disk or power loss never leaves an empty or half-written file under the
    name. The folder is synced too (best effort) so the rename itself survives. Bytes are written as they are."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a write's error names no file: the one the caller asked for is the one to name
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
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
    """The file's object, or None when it is missing, unreadable or holds no JSON object (half written by
    hand, another tool's file): every record xfer writes is one, and a reader of a view must not trip on it."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def slurm_job(trial_dir: Path) -> str | None:
    """The SLURM job id of the trial's latest submission (``slurm.json``); None when it was never submitted."""
    record = read_json(Path(trial_dir) / SLURM_RECORD)
    return str(record["job_id"]) if isinstance(record, dict) and record.get("job_id") else None


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
    missing = [m for m in names if not _is_number(metrics.get(m)) or math.isinf(metrics[m])]  # NaN: no instance of it
    return f"no number for {', '.join(missing)}" if missing else _field_problem(record, names)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_seed(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


RUN_NUMBERS = ("max_iter", "iterations_run", "start_iter", "wall_time_s", "world_size", "global_batch",
               "started_unix", "finished_unix")  # fmt: skip
IDENTITY_PARTS = ("recipe", "weights", "data", "evaluator")


def _field_problem(record: dict, names: tuple[str, ...]) -> str:
    """What of the rest of a result the readers would trip on (a hand edit, another tool's file): each field they
    read, where present, has the type xfer writes it with; "" when all do. Absent fields are an older xfer's."""
    seed = record.get("seed")
    if "seed" in record and not _is_seed(seed):
        return f"seed is not a non-negative integer: {seed!r}"
    if not isinstance(record["setting"].get("overrides", ""), str):
        return f"setting.overrides is not a string: {record['setting']['overrides']!r}"
    ident = record.get("identity")
    if ident is not None:
        if not isinstance(ident, dict):
            return f"identity is not an object: {ident!r}"[:200]
        bad = [k for k in IDENTITY_PARTS if k in ident and not isinstance(ident[k], dict)]
        if bad or ("seed" in ident and not _is_seed(ident["seed"])):
            return f"identity.{(bad or ['seed'])[0]} is not what xfer records"
    run = record.get("run")
    if "run" in record and not isinstance(run, dict):
        return f"run is not an object: {run!r}"[:200]
    bad = [k for k in RUN_NUMBERS if (run or {}).get(k) is not None and not _is_number(run[k])]
    if bad:
        return f"run.{bad[0]} is not a number: {run[bad[0]]!r}"[:200]
    published = record.get("published")
    if published is not None and not _is_published(published, names):
        return f"published is not the published numbers xfer records: {published!r}"[:200]
    if record.get("trials_expected") is not None and not _is_count(record["trials_expected"]):
        return f"trials_expected is not a positive integer: {record['trials_expected']!r}"
    return ""


def _is_published(published: object, names: tuple[str, ...]) -> bool:
    """``published`` as :func:`xfer.store.records.published_record` writes it: a number (or null) per metric, and
    where a spread is stated, ``std`` numbers and their ``n``."""
    if not isinstance(published, dict):
        return False
    std = published.get("std") or {}
    return (all(published.get(m) is None or _is_number(published[m]) for m in names) and isinstance(std, dict)
            and all(_is_number(v) for v in std.values()) and (published.get("n") is None or _is_count(published["n"])))


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def measured(record: dict) -> dict[str, float]:
    """A finished result's metrics, named and ordered by its :func:`metric_names` (``result.json`` itself is
    written with sorted keys, so the order of its ``metrics`` says nothing); anything else it holds is not
    part of what the trial measured. Only for a record :func:`result_problem` finds sound."""
    return {m: float(record["metrics"][m]) for m in metric_names(record)}
