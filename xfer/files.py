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
from pathlib import Path

JOB_CONFIG = "trial.yaml"  # the composed trial config (resolved) and its setting's overrides
RESULT = "result.json"  # metrics plus everything needed to trust them; written last
FAILURE = "failure.json"  # why the latest run of the trial failed, with its log tail
PROGRESS = "progress.json"  # iteration and phase of a running trial (rank 0)
LOCK = ".lock"  # held by the launcher running the trial, so no other runs it too
SLURM_RECORD = "slurm.json"  # the SLURM job id of the trial's latest submission


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
