"""Where each trial of a sweep stands, read from its folder, and how to show it.

A trial's folder says it all: ``result.json`` (done, with its AP), ``failure.json`` (failed, with the
cause), ``progress.json`` (iteration and phase, kept current by rank 0 while it trains). The local
launcher's live view and the ``status`` command both read these files, so they agree with each other
and with a launcher that died.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from xfer.files import FAILURE, PROGRESS, RESULT, read_json

STATES = ("queued", "elsewhere", "running", "done", "failed", "stopped")


@dataclass
class TrialStatus:
    """One row of the view; ``state`` is one of :data:`STATES` (elsewhere: another launcher runs it)."""

    label: str
    state: str = "queued"
    devices: list[str] = field(default_factory=list)
    iteration: int | None = None
    max_iter: int | None = None
    phase: str = ""
    eta_s: float | None = None
    metrics: dict | None = None
    cause: str = ""


def eta_s(progress: dict, now: float) -> float | None:
    """Seconds left at the pace of this run so far (None before two points of progress exist)."""
    done = progress["iteration"] - progress["start_iter"]
    spent = progress["updated_at"] - progress["started_at"]
    if done <= 0 or spent <= 0:
        return None
    left = (progress["max_iter"] - progress["iteration"]) * spent / done
    return max(left - (now - progress["updated_at"]), 0.0)


def refresh(status: TrialStatus, trial_dir: Path, now: float | None = None) -> TrialStatus:
    """Fill a running trial's iteration, phase and ETA, a done trial's AP, a failed trial's cause."""
    now = time.time() if now is None else now
    if status.state in ("running", "elsewhere", "stopped"):
        progress = read_json(trial_dir / PROGRESS)
        if progress:
            status.iteration, status.max_iter = progress["iteration"], progress["max_iter"]
            status.phase = progress["phase"]
            status.eta_s = eta_s(progress, now) if progress["phase"] == "training" else None
    elif status.state == "done":
        result = read_json(trial_dir / RESULT) or {}
        status.metrics = result.get("metrics")
        status.max_iter = status.iteration = (result.get("run") or {}).get("max_iter")
    elif status.state == "failed":
        status.cause = (read_json(trial_dir / FAILURE) or {}).get("cause", status.cause)
    return status


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def ap_line(metrics: dict | None) -> str:
    """``AP50/AP/AP75``, the seed's own notation."""
    if not metrics:
        return ""
    return "/".join("—" if metrics.get(k) is None else f"{metrics[k]:.2f}" for k in ("AP50", "AP", "AP75"))


def describe(s: TrialStatus) -> str:
    """The state column: what a researcher glancing at the sweep wants to know about this trial."""
    if s.state in ("running", "elsewhere") and s.iteration is not None:
        where = " (another launcher)" if s.state == "elsewhere" else ""
        if s.phase == "evaluating":
            return f"evaluating{where}"
        eta = f", ETA {duration(s.eta_s)}" if s.eta_s is not None else ""
        return f"{s.iteration}/{s.max_iter}{eta}{where}"
    if s.state == "elsewhere":
        return "running (another launcher)"
    if s.state == "stopped" and s.iteration is not None:
        return f"stopped at {s.iteration}/{s.max_iter} (resumable)"
    return s.state


def table(statuses: list[TrialStatus], title: str = "") -> Table:
    """One row per trial; the devices and cause columns only when some trial has one."""
    columns = {"trial": [s.label for s in statuses], "state": [describe(s) for s in statuses],
               "devices": [",".join(s.devices) for s in statuses], "AP50/AP/AP75": [ap_line(s.metrics) for s in statuses],
               "cause": [s.cause for s in statuses]}  # fmt: skip
    shown = [name for name, values in columns.items() if name in ("trial", "state") or any(values)]
    t = Table(title=title or None, show_edge=False, pad_edge=False)
    for name in shown:
        t.add_column(name, overflow="fold")
    colours = {"done": "green", "failed": "red", "running": "cyan", "stopped": "yellow"}
    for i, s in enumerate(statuses):
        cells = [Text(columns[name][i]) for name in shown]  # Text: a label's [brackets] are not markup
        cells[1].stylize(colours.get(s.state, ""))
        t.add_row(*cells)
    return t


def counts(statuses: list[TrialStatus]) -> str:
    """``2 running, 3 queued, 4 done, 1 failed``: the states present, in a fixed order."""
    n = {state: sum(s.state == state for s in statuses) for state in STATES}
    return ", ".join(f"{n[state]} {state}" for state in STATES if n[state])


def console(stdout=None) -> Console:
    """Where the view goes: live and coloured on a terminal, plain lines in logs and tests."""
    out = Console(file=stdout, highlight=False)
    if not out.is_terminal:
        out.width = 200  # a log file has no edge to fold at
    return out
