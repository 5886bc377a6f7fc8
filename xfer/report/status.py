"""Where each trial of a sweep stands, read from its folder, and how to show it.

Where a trial stands is decided by ``xfer.store.state``, for the local launcher's live view, the ``status``
command, plan and collect alike, so they agree with each other and with a launcher that died. This module
adds what a view shows: ``progress.json`` (iteration, phase, pace and ETA of a running trial), a done trial's
metrics, a failed trial's cause, SLURM's job id and state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from xfer.report import schedule
from xfer.store import locks, queue, state, sweeps
from xfer.store.files import FAILURE, PROGRESS, measured, read_json, slurm_job
from xfer.store.records import label

# The store's states (``xfer.store.state.STATES``), and the local launcher's words for a trial it leaves to another
# launcher (elsewhere) or stopped on Ctrl-C (stopped), and ``unknown`` (SLURM's queue could not be read).
STATES = (*state.STATES, "elsewhere", "stopped", "unknown")


@dataclass
class TrialStatus:
    """One row of the view; ``state`` is one of :data:`STATES` (elsewhere: another launcher runs it;
    partial: started once, has a checkpoint, nothing runs it now; requeued: SLURM queued its job again)."""

    label: str
    state: str = "to run"
    devices: list[str] = field(default_factory=list)
    iteration: int | None = None
    max_iter: int | None = None
    phase: str = ""
    eta_s: float | None = None
    metrics: dict | None = None  # a done trial's, named and ordered by its result's metric_names
    cause: str = ""
    s_per_iter: float | None = None  # running: its pace so far; done: over its whole run (wall time / iterations)
    job: str = ""  # SLURM: job id and state
    pace_key: tuple[str, str] = ("", "")  # (benchmark, backbone): the trials whose pace prices this one's
    path: Path | None = None  # the trial's folder


def eta_s(progress: dict, now: float) -> float | None:
    """Seconds left at the pace of this run so far (None before two points of progress exist)."""
    done = progress["iteration"] - progress["start_iter"]
    spent = progress["updated_at"] - progress["started_at"]
    if done <= 0 or spent <= 0:
        return None
    left = (progress["max_iter"] - progress["iteration"]) * spent / done
    return max(left - (now - progress["updated_at"]), 0.0)


# Nothing runs these now: a run of them resumes from their checkpoint, so that is where they are (and what plan
# and the relaunch say), not where progress.json last was (a trial killed between checkpoints trains the rest again)
RESUMABLE = ("stopped", "partial", "requeued")


def refresh(status: TrialStatus, trial_dir: Path, now: float | None = None) -> TrialStatus:
    """Fill a running trial's iteration, phase and ETA, a done trial's AP, a failed trial's cause. A trial nothing
    runs (:data:`RESUMABLE`) is at the iteration a run of it resumes from (``xfer.store.state.resumes_at``)."""
    now = time.time() if now is None else now
    if status.state in ("running", "elsewhere", *RESUMABLE):
        progress = read_json(trial_dir / PROGRESS)
        try:
            if progress:
                status.iteration, status.max_iter = progress["iteration"], progress["max_iter"]
                status.phase = progress["phase"]
                status.eta_s = eta_s(progress, now) if progress["phase"] == "training" else None
                done = progress["iteration"] - progress["start_iter"]
                spent = progress["updated_at"] - progress["started_at"]
                status.s_per_iter = spent / done if done > 0 and spent > 0 else None
        except (KeyError, TypeError):  # not the progress.json the ranks write: it tells nothing
            status.phase = status.eta_s = status.s_per_iter = None
        if status.state in RESUMABLE:
            status.iteration, status.eta_s = state.resumes_at(trial_dir, status.max_iter), None
    elif status.state == "done":
        result = state.read_result(trial_dir).record or {}
        status.metrics = measured(result) if result else None
        status.max_iter = status.iteration = (result.get("run") or {}).get("max_iter")
    elif status.state == "failed":
        status.cause = str((read_json(trial_dir / FAILURE) or {}).get("cause", status.cause))
    return status


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def ap_line(metrics: dict | None) -> str:
    """``82.64/58.32/64.60``, the seed's own notation, over the metrics in their order (a done trial's
    :attr:`TrialStatus.metrics` are in its result's ``metric_names`` order); :func:`metrics_header` names them."""
    if not metrics:
        return ""
    return "/".join("—" if v is None else f"{v:.2f}" for v in metrics.values())


def metrics_header(metrics: dict | None) -> str:
    """``AP50/AP/AP75``: the names of the values :func:`ap_line` shows, in its order."""
    return "/".join(metrics or ())


def describe(s: TrialStatus) -> str:
    """The state column: what a researcher glancing at the sweep wants to know about this trial."""
    if s.state in ("running", "elsewhere") and s.iteration is not None:
        where = " (another launcher)" if s.state == "elsewhere" else ""
        if s.phase == "evaluating":
            return f"evaluating{where}"
        pace = f", {s.s_per_iter:.2f} s/it" if s.s_per_iter else ""
        eta = f", ETA {duration(s.eta_s)}" if s.eta_s is not None else ""
        return f"{s.iteration}/{s.max_iter}{pace}{eta}{where}"
    if s.state == "elsewhere":
        return "running (another launcher)"
    if s.state in ("stopped", "partial", "requeued") and s.iteration is not None:
        return f"{s.state} at {s.iteration}/{s.max_iter} (resumable)"
    return s.state


def table(statuses: list[TrialStatus], title: str = "") -> Table:
    """One row per trial; the devices and cause columns only when some trial has one. Done trials show their
    metrics in a column named after them (``AP50/AP/AP75``); trials that measured other metrics (a COCO
    sweep beside a VOC one) get a column of their own, so no value sits under another metric's name."""
    kinds = dict.fromkeys(metrics_header(s.metrics) for s in statuses if s.metrics)
    columns = {"trial": [s.label for s in statuses], "state": [describe(s) for s in statuses],
               "devices": [",".join(s.devices) for s in statuses],
               **{kind: [ap_line(s.metrics) if metrics_header(s.metrics) == kind else "" for s in statuses]
                  for kind in kinds},
               "job": [s.job for s in statuses], "cause": [s.cause for s in statuses]}  # fmt: skip
    shown = [name for name, values in columns.items() if name in ("trial", "state") or any(values)]
    t = Table(title=Text(title) if title else None, show_edge=False, pad_edge=False)  # a folder's [brackets] too
    for name in shown:
        t.add_column(name, overflow="fold")
    colours = {"done": "green", "failed": "red", "damaged": "red", "unreadable": "red", "conflict": "red",
               "stale": "magenta", "running": "cyan", "stopped": "yellow", "partial": "yellow", "requeued": "yellow",
               "unknown": "yellow"}  # fmt: skip
    for i, s in enumerate(statuses):
        cells = [Text(columns[name][i]) for name in shown]  # Text: a label's [brackets] are not markup
        cells[1].stylize(colours.get(s.state, ""))
        t.add_row(*cells)
    return t


def counts(statuses: list[TrialStatus]) -> str:
    """``2 running, 3 queued, 4 done, 1 failed``: the states present, in a fixed order. A trial in conflict shows
    one row per folder holding it and counts once, as collect counts it."""
    n = {state: sum(s.state == state for s in statuses) for state in STATES}
    n["conflict"] = len({s.label for s in statuses if s.state == "conflict"})
    return ", ".join(f"{n[state]} {state}" for state in STATES if n[state])


def console(stdout=None) -> Console:
    """Where the view goes: live and coloured on a terminal, plain lines in logs and tests."""
    out = Console(file=stdout, highlight=False)
    if not out.is_terminal:
        out.width = 200  # a log file has no edge to fold at
    return out



def scan(dirs: list[Path], now: float | None = None, trials: list | None = None) -> list[TrialStatus]:
    """Every trial under ``dirs``, in the state ``xfer.store.state`` gives it with SLURM's word for the trials
    submitted there (``slurm.json``): SLURM is asked once for all of them, and a queue that cannot be read
    makes those trials ``unknown`` (not failed, not queued). Conflicting copies are ``conflict``. Sorted by
    setting and seed. Looking never takes a trial's lock. ``trials``: those under ``dirs`` where the caller has
    read them already (``xfer.report.results.read_trials``)."""
    from xfer.report import results

    trials = sorted(results.read_trials(dirs) if trials is None else trials, key=lambda t: (t.setting.key, t.seed is None, t.seed or 0))
    jobs = {t.path: slurm_job(t.path) for t in trials}
    try:
        known, unreadable = queue.states([j for j in jobs.values() if j]), ""
    except queue.QueueUnreadable as e:  # whether SLURM still runs them is unknown: not failed, not queued
        known, unreadable = {}, f"SLURM's queue could not be read: {e}"
    out, recipes = [], {}
    for t in trials:
        s = TrialStatus(label(t.setting.key, t.seed) if t.setting.benchmark != "?" else str(t.path), cause=t.cause,
                        path=t.path)
        job_id = jobs[t.path]
        job = known.get(job_id) if job_id else None
        s.job = f"{job_id} {job.state if job else ''}".strip() if job_id else ""
        if t.conflict:
            s.state = "conflict"
            out.append(s)
            continue
        if unreadable and job_id and not state.FINISHED.count(t.state) and not locks.held(t.path):
            s.state, s.cause = "unknown", unreadable
            out.append(s)
            continue
        now_state = state.of(t.path, job=job) if job is not None else None
        s.state = now_state.state if now_state else t.state
        s.cause = now_state.cause if now_state else t.cause
        if now_state:
            s.iteration, s.max_iter = now_state.iteration, now_state.max_iter
        s.pace_key = (t.setting.benchmark, t.setting.backbone)
        if s.state in state.FINISHED:
            run = t.record.get("run") or {}
            s.metrics = t.metrics
            s.max_iter = s.iteration = run.get("max_iter")
            if run.get("iterations_run") and run.get("wall_time_s"):
                s.s_per_iter = run["wall_time_s"] / run["iterations_run"]
            out.append(s)
            continue
        if s.max_iter is None:  # the recipe it was launched with says how long it is (progress.json, if any, too)
            if t.path.parent not in recipes:
                recipes[t.path.parent] = (state.expected(t.path) or {}).get("recipe") or {}
            s.max_iter = recipes[t.path.parent].get("SOLVER.MAX_ITER")
        s = refresh(s, t.path, now)
        if s.iteration is None and s.state == "damaged":  # its redo resumes from its checkpoint
            s.iteration = state.resumes_at(t.path, s.max_iter)
        out.append(s)
    return out


def groups_of(dirs: list[Path]) -> int:
    """How many trials the sweep in ``dirs`` runs at once, as its latest launch said (``sweep.json``; the most of
    any folder given, or of the sweep folders in it: ``status outputs`` reads ``outputs/<benchmark>``'s); 0 when
    none says."""
    folders = [*dirs, *(sub for d in dirs if d.is_dir() for sub in d.iterdir() if sub.is_dir())]
    return max([r.at_once for r in map(sweeps.read, folders) if r], default=0)


def sweep_eta(statuses: list[TrialStatus], groups: int) -> schedule.SweepEta:
    """When the sweep will end (``xfer.report.schedule``): on ``groups`` device groups (:func:`groups_of`), at least
    those running now."""
    left = [schedule.Left(s.state, s.pace_key, s.iteration, s.max_iter, s.eta_s, s.s_per_iter) for s in statuses]
    return schedule.sweep_eta(left, groups)


def eta_line(eta: schedule.SweepEta) -> str:
    """``sweep ETA 1h05m (12 trials left, 4 at a time)``; "" when nothing is left."""
    if not eta.trials:
        return ""
    unpriced = f", {eta.unpriced} without a pace yet" if eta.unpriced else ""
    when = duration(eta.seconds) if eta.seconds is not None else "unknown"
    return f"sweep ETA {when} ({eta.trials} trial(s) left, {eta.groups} at a time{unpriced})"


def show(dirs: list[Path], watch: bool = False, every_s: float = 2.0, out: Console | None = None,
         on_scan: Callable[[list, list[TrialStatus]], None] | None = None) -> list[TrialStatus]:  # fmt: skip
    """Print the status table once, or keep it current (``watch``) until Ctrl-C. ``on_scan``: called with the
    trials read and their statuses after every scan (``python -m xfer status`` refreshes the report pages)."""
    from xfer.report import conflicts, results

    out = out or console()
    title = lambda rows: "; ".join(filter(None, [f"{', '.join(map(str, dirs))}: {counts(rows) or 'no trials'}",  # noqa: E731
                                                 eta_line(sweep_eta(rows, groups_of(dirs)))]))

    def look() -> list[TrialStatus]:
        found = results.read_folders(dirs)
        trials = conflicts.one_per_identity(found)
        rows = scan(dirs, trials=conflicts.with_unfinished_copies(found, trials))
        if on_scan is not None:
            on_scan(trials, rows)
        return rows

    rows = look()
    if not watch:
        out.print(table(rows, title(rows)))
        return rows
    from rich.live import Live

    with Live(table(rows, title(rows)), console=out, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(every_s)
                rows = look()
                live.update(table(rows, title(rows)), refresh=True)
        except KeyboardInterrupt:
            pass
    return rows
