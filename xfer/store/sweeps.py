"""``sweep.json``: what the latest launch into a sweep's folder was, for the views that come after it.

``status`` and the report page read it for the sweep's ETA (how many trials run at once, on how many devices
each) and for provenance (the command, when). The launcher writes it after the checks pass, before anything runs
or is submitted; a later launch into the same folder replaces it. A folder without one (a sweep launched by an
older xfer, or copied without it) still shows everything else.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from xfer.store.files import write_json_atomic

SWEEP = "sweep.json"


@dataclass(frozen=True)
class SweepRecord:
    """The latest launch into a sweep's folder."""

    command: str  # as Hydra got it, e.g. ``python launch.py -m pretrain=densecl,regioncl 'seed=range(0,5)'``
    cluster: str  # local or slurm
    device: str  # what a trial runs on: GPU, cpu, ...
    devices_per_trial: int
    at_once: int  # trials that run side by side: the local device groups, or SLURM's array_parallelism
    launched_at: float  # unix time

    @property
    def launched(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.launched_at))


def write(folder: Path, record: SweepRecord) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(folder) / SWEEP, asdict(record))


def read(folder: Path) -> SweepRecord | None:
    """The folder's record; None when there is none or it cannot be read as one (views go on without it)."""
    try:
        found = json.loads((Path(folder) / SWEEP).read_text())
        return SweepRecord(**{f.name: found[f.name] for f in fields(SweepRecord)})
    except (OSError, ValueError, KeyError, TypeError):
        return None
