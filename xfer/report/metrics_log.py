"""A trial's training curves from detectron2's ``metrics.json``, read at a bounded cost, and their mean.

detectron2's JSONWriter appends one JSON object per logging step (every 20 iterations here: 1,200 lines for
VOC's 24k iterations, 9,000 for a COCO 2x, about 0.5 KB each), plus one per evaluation. A plot of a
2,000-trial sweep cannot parse gigabytes of these, and a plot cannot show more than a few hundred points per
line anyway: a file longer than :data:`WHOLE_BYTES` is read as :data:`SAMPLES` evenly spaced windows (one
complete line from each) and its last :data:`TAIL_BYTES` whole, so its cost does not grow with its length. The
end is where the final evaluation and the last iterations are; what lies between is subsampled, evaluation
lines in the middle of a long run included. Shorter files (every smoke and test trial) are read whole.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

CURVES_FILE = "metrics.json"  # detectron2's JSON lines, one dict per logging or evaluation step
# metrics.json key -> our series name; AP comes from the evaluation lines only
SERIES = {"total_loss": "total_loss", "lr": "lr", "bbox/AP50": "AP50", "bbox/AP": "AP", "bbox/AP75": "AP75"}
WHOLE_BYTES = 32 * 1024  # up to here a file is read whole: ~60 lines, every point of a short run
SAMPLES = 48  # windows of a longer file, one line each: enough for a curve a few hundred pixels wide
WINDOW_BYTES = 2048  # a logging line is ~0.5 KB; a window without a complete line adds no point
TAIL_BYTES = 8 * 1024  # the end of a longer file, read whole: the last ~15 iterations and the final evaluation

Series = list[tuple[int, float]]
Curves = dict[str, Series]


def _sampled(f, size: int) -> list[bytes]:
    """One complete line from each of :data:`SAMPLES` windows spread over the file before its tail, then every
    complete line of the tail (its first, cut, line dropped; a last line being written fails to parse later)."""
    lines = []
    step = (size - TAIL_BYTES) / SAMPLES
    for k in range(SAMPLES):
        f.seek(int(k * step))
        parts = f.read(WINDOW_BYTES).split(b"\n")
        complete = parts[:-1] if k == 0 else parts[1:-1]  # window 0 starts at a line's start; the others mid-line
        if complete:
            lines.append(complete[0])
    f.seek(size - TAIL_BYTES)
    return lines + f.read().split(b"\n")[1:]


def _lines(path: Path) -> list[bytes]:
    """The file's lines, or a sample of them when it is longer than :data:`WHOLE_BYTES`; ``[]`` without a file."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(0)
            return f.read().splitlines() if size <= WHOLE_BYTES else _sampled(f, size)
    except OSError:
        return []


def _point(record: dict, key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None  # detectron2 writes NaN AP when nothing was detected: no point, not a gap at 0
    return float(value)


def read_curves(trial_dir: Path) -> Curves:
    """The series of a trial's ``metrics.json`` as sorted (iteration, value) lists; ``{}`` without one.

    The file is written while training runs, so its last line may be cut off; such lines are skipped, as are
    lines that are not JSON objects. A resumed trial logs some iterations twice: the later line wins, so each
    curve is a function. A long file is sampled (see the module's docstring).
    """
    points: dict[str, dict[int, float]] = {}
    for line in _lines(trial_dir / CURVES_FILE):
        try:
            record = json.loads(line)
        except ValueError:  # UnicodeDecodeError included
            continue
        if not isinstance(record, dict):
            continue
        it = record.get("iteration")
        if isinstance(it, bool) or not isinstance(it, int | float) or not math.isfinite(it):
            continue
        for key, name in SERIES.items():
            value = _point(record, key) if key in record else None  # most lines: the loss and lr only
            if value is not None:
                points.setdefault(name, {})[int(it)] = value
    return {name: sorted(by_it.items()) for name, by_it in points.items()}


def mean_curve(series: list[Series], points: int = 200) -> tuple[list[float], list[float]]:
    """The mean of several trials' series of one quantity, as (iterations, means).

    Trials log at slightly different iterations once sampled, so each is interpolated linearly onto a common
    grid: the iterations any of them logged if there are at most ``points``, else ``points`` evenly spaced from
    the first to the last. A trial counts only within its own range (a shorter, unfinished one does not pull
    the mean's end down); a grid point no trial covers is left out.
    """
    import numpy as np

    series = [s for s in series if s]
    if not series:
        return [], []
    logged = sorted({it for s in series for it, _ in s})
    grid = np.array(logged, float) if len(logged) <= points else np.linspace(logged[0], logged[-1], points)
    stacked = np.full((len(series), len(grid)), np.nan)
    for row, s in zip(stacked, series, strict=True):
        its, values = np.array(s, float).T
        inside = (grid >= its[0]) & (grid <= its[-1])
        row[inside] = np.interp(grid[inside], its, values)
    count = np.isfinite(stacked).sum(axis=0)
    covered = count > 0
    means = np.nansum(stacked, axis=0)[covered] / count[covered]
    return grid[covered].tolist(), means.tolist()
