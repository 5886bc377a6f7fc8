"""The plan of a sweep (``plan=true``): what would run, what is done, and what it will cost, before anything runs.

Per trial: its state as ``xfer.store.state`` decides it (done, stale, running, partial k/N, failed, to run, ...). The cost is device-hours of training left: iterations left × device-seconds per
iteration × devices per trial / 3600. Device-seconds per iteration are measured from this sweep's finished
trials of the same benchmark and backbone (wall time × processes / iterations, so evaluation is included),
and otherwise taken from the benchmark's ``device_s_per_iter`` (documented there: where it was measured).
The wall time is the schedule's: each trial left takes its iterations left × device-seconds per iteration /
its devices, and the trials, longest first, fill the device groups that run at once (``xfer.report.schedule.makespan``, which the sweep's ETA in ``status`` shares), so
it is never below the longest trial left, however many groups there are.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from xfer.report.schedule import makespan
from xfer.report.status import duration
from xfer.store import state as trial_state


@dataclass(frozen=True)
class Entry:
    """One trial of the plan."""

    key: str  # setting key
    backbone: str
    seed: int
    dir: Path
    max_iter: int
    default_s_per_iter: float | None  # the benchmark's documented figure for this backbone
    state: trial_state.TrialState | None = None  # read by the launcher against what it launches now

    @property
    def pace_key(self) -> tuple[str, str]:
        """What shares a pace: the benchmark (the setting key's first part) and the backbone. A sweep over two
        benchmarks must not price a COCO trial at a VOC trial's pace."""
        return self.key.split("/", 1)[0], self.backbone

    def progress(self) -> tuple[str, int]:
        """(state, iterations already trained), as ``xfer.store.state`` decides it (``state``, read by the
        launcher against the identity it launches now; read from the folder alone when absent)."""
        s = self.state or trial_state.of(self.dir, max_iter=self.max_iter)
        if s.finished:
            return s.state, self.max_iter
        return s.state, s.iteration or 0



def measured(entries: list[Entry]) -> dict[tuple[str, str], tuple[float, int]]:
    """Per benchmark and backbone (:attr:`Entry.pace_key`): median device-seconds per iteration over finished
    trials, and how many there were."""
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in entries:
        s = e.state or trial_state.of(e.dir, max_iter=e.max_iter)  # the one reader of a result (a stale one paces too)
        run = ((s.result or {}).get("run") or {}) if s.finished else {}
        if run.get("iterations_run") and run.get("wall_time_s"):
            found[e.pace_key].append(run["wall_time_s"] * run.get("world_size", 1) / run["iterations_run"])
    return {b: (statistics.median(v), len(v)) for b, v in found.items()}


@dataclass(frozen=True)
class Estimate:
    """What the trials left will cost: device-hours in all, the wall time on the device groups, and per
    backbone (per benchmark and backbone when the trials span several benchmarks) where its pace comes from."""

    device_hours: float
    wall_s: float
    sources: dict[str, str]


def estimate(entries: list[Entry], devices_per_trial: int, at_once: int, device: str = "device",
             states: dict[Path, tuple[str, int]] | None = None) -> Estimate:  # fmt: skip
    """The cost of the trials not done, from each trial's iterations left and its backbone's pace (trials
    with no pace are named in ``sources`` and left out of both figures). ``states``: their
    :meth:`Entry.progress` where the caller has read it already."""
    pace = measured(entries)
    several = len({e.pace_key[0] for e in entries}) > 1
    left, sources = [], {}
    for e in entries:
        state, done = states[e.dir] if states else e.progress()
        if state in ("done", "stale", "unreadable"):  # none of them runs (a stale one only when asked)
            continue
        per_iter, n = pace.get(e.pace_key, (e.default_s_per_iter, 0))
        name = " ".join(e.pace_key) if several else e.backbone  # sources name the benchmark when there are several
        if per_iter is None:
            sources[name] = "no estimate (no finished trial, no device_s_per_iter in the benchmark)"
            continue
        what = f"measured on {n} finished trial(s)" if n else "the benchmark's device_s_per_iter"
        sources[name] = f"{per_iter:.3f} {device}-s/iter, {what}"
        left.append((e.max_iter - done) * per_iter)  # device-seconds already count every device
    per_trial = max(devices_per_trial, 1)
    return Estimate(sum(left) / 3600, makespan([s / per_trial for s in left], at_once), sources)


def render(entries: list[Entry], devices_per_trial: int, at_once: int, device: str) -> str:
    """The settings × seeds matrix, the counts, and the device-hours left."""
    states = {e.dir: e.progress() for e in entries}
    seeds = sorted({e.seed for e in entries})
    by_key: dict[str, dict[int, Entry]] = defaultdict(dict)
    for e in entries:
        by_key[e.key][e.seed] = e
    lines = ["| setting | " + " | ".join(f"seed{s}" for s in seeds) + " |", "|---" * (len(seeds) + 1) + "|"]
    for key in sorted(by_key):
        cells = []
        for s in seeds:
            e = by_key[key].get(s)
            state, done = states[e.dir] if e else ("—", 0)
            shown = state in ("partial", "running", "requeued") or (state == "damaged" and done)
            cells.append(f"{state} {done}/{e.max_iter}" if shown else state)
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    order = ("done", "stale", "running", "requeued", "queued", "partial", "failed", "damaged", "unreadable", "to run")
    count = {s: sum(st == s for st, _ in states.values()) for s in order}
    lines.append("")
    lines.append(f"{len(entries)} trials: " + ", ".join(f"{n} {s}" for s, n in count.items() if n)
                 + f"; {devices_per_trial} {device} device(s) per trial, {at_once} trial(s) at a time")  # fmt: skip
    cost = estimate(entries, devices_per_trial, at_once, device, states)
    lines.append(f"estimate: {cost.device_hours:.2f} {device}-hours of training left "
                 f"({duration(cost.device_hours * 3600)}), about {duration(cost.wall_s)} of wall time")  # fmt: skip
    lines += [f"  {backbone}: {src}" for backbone, src in sorted(cost.sources.items())]
    return "\n".join(lines) + "\n"
