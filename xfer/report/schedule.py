"""When a sweep will end: the trials left, at their measured pace, scheduled on the device groups that run at once.

The schedule is the plan's (``xfer.launch.plan`` prices a sweep before it runs with :func:`makespan`): each trial
left, longest first, starts on whichever group frees up first. Here the running trials hold their groups until
their own ETA, so the sweep's ETA is never below the longest remaining trial, and with one group it is the sum.

A trial's pace is its own where it runs (seconds per iteration so far); a trial that waits takes the median
wall seconds per iteration of its benchmark and backbone's finished trials, else of those running now; with
neither it has no estimate and the sweep's ETA says how many trials it leaves out.
"""

from __future__ import annotations

import heapq
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WAITING = ("to run", "queued", "requeued", "partial", "stopped")  # will run (again) from where they are
RUNNING = ("running", "elsewhere")


def makespan(durations: Iterable[float], groups: int, busy: Sequence[float] = ()) -> float:
    """When the last of ``durations`` ends if each, longest first, starts on whichever of ``groups`` frees up
    first (LPT; within 4/3 of the best schedule). ``busy``: the seconds until each group that runs a trial now
    frees up (they are among the ``groups``). One trial takes its own time on any number of groups."""
    ends = [*busy, *[0.0] * (max(groups, 1) - len(busy))]
    heapq.heapify(ends)
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(ends, ends[0] + d)  # ends[0]: the group free first
    return max(ends)


@dataclass(frozen=True)
class Left:
    """One trial of the sweep as the schedule sees it."""

    state: str
    pace_key: tuple[str, str]  # (benchmark, backbone): trials that share a pace
    iteration: int | None = None  # trained so far
    max_iter: int | None = None
    eta_s: float | None = None  # a running trial's own estimate
    s_per_iter: float | None = None  # its pace: measured so far (running) or over the whole run (done)


@dataclass(frozen=True)
class SweepEta:
    """``seconds`` until the last trial left ends (None: nothing left, or nothing could be estimated);
    ``trials``: how many are left; ``unpriced``: of those, how many have no pace to go by (left out)."""

    seconds: float | None
    trials: int
    unpriced: int
    groups: int


def paces(trials: Sequence[Left]) -> dict[tuple[str, str], float]:
    """Wall seconds per iteration per benchmark and backbone: the median over finished trials, else over running."""
    done, running = defaultdict(list), defaultdict(list)
    for t in trials:
        if t.s_per_iter and t.state == "done":
            done[t.pace_key].append(t.s_per_iter)
        elif t.s_per_iter and t.state in RUNNING:
            running[t.pace_key].append(t.s_per_iter)
    return {k: statistics.median(v) for k, v in {**running, **done}.items()}


def sweep_eta(trials: Sequence[Left], groups: int) -> SweepEta:
    """The sweep's ETA on ``groups`` device groups (trials that run at once; at least the trials running now)."""
    pace = paces(trials)
    busy, waiting, unpriced = [], [], 0
    for t in trials:
        if t.state in RUNNING:
            per_iter = t.s_per_iter or pace.get(t.pace_key)
            left = t.eta_s if t.eta_s is not None else _left(t, per_iter)
            if left is None:
                unpriced += 1
            else:
                busy.append(left)
        elif t.state in WAITING:
            left = _left(t, pace.get(t.pace_key))
            if left is None:
                unpriced += 1
            else:
                waiting.append(left)
    n = sum(t.state in RUNNING or t.state in WAITING for t in trials)
    groups = max(groups, len(busy), 1)
    seconds = makespan(waiting, groups, busy) if busy or waiting else None
    return SweepEta(seconds, n, unpriced, groups)


def _left(t: Left, per_iter: float | None) -> float | None:
    if per_iter is None or not t.max_iter:
        return None
    return max(t.max_iter - (t.iteration or 0), 0) * per_iter
