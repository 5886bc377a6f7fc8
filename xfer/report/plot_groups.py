"""The plots of a large sweep: one AP figure and one curves figure per group, and an overview ``ap.png``.

One figure holding 400 settings is 144,000 px wide and takes a minute to draw; nobody can read it either.
A sweep with more than :data:`xfer.report.plots.SMALL` settings is therefore drawn per group (benchmark x
backbone [x overrides]: the settings that differ only by pretrain, :attr:`Setting.group`), at most
:data:`PAGE` settings per figure, under ``plots/``:

- ``plots/<group>_ap.png``/``.svg``: a forest plot, one row per setting (named by its pretrain, as in the
  comparisons), one column per metric: the mean as a dot in the setting's colour, its 95% interval as a bar,
  the published value as an 'x', the group's baseline mean as a dashed vertical line;
- ``plots/<group>_curves.png``/``.svg``: total_loss, lr and AP50 over the iterations, one mean line per
  setting, and each trial's own line, lighter, while the figure has at most :data:`TRIAL_LINES` trials;
- ``ap.png``/``.svg``: the overview, the first metric of each group (the first :data:`OVERVIEW` groups).

``<group>`` is the group's name with ``/`` and ``,`` (and anything else not safe in a file name) as ``_``,
``voc0712_c4_24k_r50``; a group cut into pages adds ``_2``, ``_3``... to the later pages. Every figure's size
is bounded by these caps, whatever the sweep. Drawn with few artists (one errorbar, one scatter per panel)
and without constrained layout, so 400 settings take seconds, not a minute.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xfer.report import comparisons
from xfer.report.canvas import CURVE_PANELS, figure, finished, save
from xfer.report.metrics_log import mean_curve, read_curves
from xfer.report.results import Row

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOTS_DIR = "plots"
PAGE = 50  # settings per figure: a group with more is cut into pages (50 rows: a figure ~1,100 px tall)
OVERVIEW = 24  # groups (columns) in the overview ap.png, in name order; every group has its own figure
TRIAL_LINES = 50  # trials per figure up to which each trial's line is drawn under its setting's mean
# inches: per row, per metric panel, per character of a name, the curves' column, above and below the panels
ROW_IN, PANEL_IN, CHAR_IN, CURVES_IN, TOP_IN, BOTTOM_IN = 0.2, 2.2, 0.07, 3.6, 0.75, 0.5
STYLES = ("-", "--", ":")  # a 21st setting repeats the 1st's colour with the next line style


@dataclass(frozen=True)
class Page:
    """The settings of one group drawn in one figure: ``stem`` names its files under ``plots/``; ``labels`` are
    the rows' names within the group; ``index`` their places among all finished settings (ids ``sI``)."""

    group: str
    stem: str
    names: tuple[str, ...]
    rows: list[Row]
    labels: list[str]
    index: list[int]


def stem(group: str) -> str:
    """A group's name as a file name: anything but letters, digits and ``.=+-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9.=+-]", "_", group)


def pages(rows: list[Row]) -> list[Page]:
    """The finished settings by group and list of metric names (groups in name order, rows in table order),
    cut into pages of at most :data:`PAGE`. Stems are unique: a second list of names in one group (conflicting
    results) or a later page gets ``_2``, ``_3``..."""
    shown = finished(rows)
    place = {id(r): i for i, r in enumerate(shown)}
    by: dict[tuple[str, tuple[str, ...]], list[Row]] = {}
    for r in shown:
        by.setdefault((r.setting.group, r.metric_names), []).append(r)
    out: list[Page] = []
    used: set[str] = set()
    for (group, names), members in sorted(by.items(), key=lambda kv: kv[0][0]):
        label = comparisons._names(members)  # their names in the comparisons
        for start in range(0, len(members), PAGE):
            part = members[start : start + PAGE]
            base, k = stem(group), 1
            name = base
            while name in used:
                k += 1
                name = f"{base}_{k}"
            used.add(name)
            out.append(Page(group, name, names, part, [label[id(r)] for r in part], [place[id(r)] for r in part]))
    return out


@functools.cache
def palette(n: int) -> tuple:
    """``n`` colours: matplotlib's ten for up to ten settings (the small layout's), tab20's twenty beyond
    (repeating every 20: such settings differ by line style, :func:`_style`). Cached: each look-up of a
    colormap copies it."""
    if n <= 10:
        return tuple(f"C{i}" for i in range(n))
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    return tuple(tab20(i % 20) for i in range(n))


def _style(i: int) -> str:
    return STYLES[i // 20 % len(STYLES)]


def _name_width(labels: list[str]) -> float:
    """Inches left of the first panel: a line sample (0.35) and the longest name."""
    return 0.5 + CHAR_IN * max(map(len, labels))


def _axes(fig: Figure, x: float, y: float, w: float, h: float) -> Axes:
    """An axes at (x, y) from the figure's lower left, w x h, all in inches: fixed places, no layout engine
    (constrained layout costs seconds per figure at this scale)."""
    width, height = fig.get_size_inches()
    return fig.add_axes((x / width, y / height, w / width, h / height))


def _names(ax: Axes, page: Page, legend: bool) -> None:
    """The settings' names left of ``ax``, one per row, with ``legend`` each after a line sample in its colour
    and style (the curves' legend): texts, not ticks, which cost five times as much."""
    from matplotlib.collections import LineCollection

    left, n = ax.get_yaxis_transform(), len(page.rows)  # x in the panel's width, y in rows
    sample = (-0.3 / PANEL_IN, -0.08 / PANEL_IN)
    segments = [[(sample[0], y), (sample[1], y)] for y in range(n)]
    if legend:
        ax.add_collection(LineCollection(segments, colors=list(palette(n)), linestyles=[_style(i) for i in range(n)],
                                         linewidths=1.5, transform=left, clip_on=False, gid="names"), autolim=False)  # fmt: skip
    for y, (name, i) in enumerate(zip(page.labels, page.index, strict=True)):
        ax.text(sample[0] - 0.05 / PANEL_IN, y, name, transform=left, ha="right", va="center", fontsize="small",
                gid=f"name-s{i}")  # fmt: skip


def _forest(ax: Axes, page: Page, metric: str, baseline: float | None) -> None:
    """One metric of a page's settings, a row each (the first on top): the mean as a dot in the setting's colour,
    the 95% interval as a bar (n >= 2), the published value as 'x', the baseline's mean as a dashed line. Four
    artists however many rows (gids ``ap-METRIC``, ``ap-METRIC-errK``, ``published-METRIC``, ``baseline-METRIC``)."""
    from matplotlib.ticker import MaxNLocator, NullLocator

    ys = list(range(len(page.rows)))
    summaries = [r.stats[metric] for r in page.rows]
    spread = [(y, s.mean, s.ci95) for y, s in zip(ys, summaries, strict=True) if s.ci95 is not None]
    if spread:
        y, mean, ci = zip(*spread, strict=True)
        bars = ax.errorbar(mean, y, xerr=ci, fmt="none", ecolor="0.45", elinewidth=1, capsize=2)
        for k, part in enumerate([*bars.lines[1], *bars.lines[2]]):
            part.set_gid(f"ap-{metric}-err{k}")
    ax.scatter([s.mean for s in summaries], ys, c=list(palette(len(ys))), s=18, zorder=3, gid=f"ap-{metric}")
    published = [(y, v) for y, r in zip(ys, page.rows, strict=True) if (v := r.published_value(metric)) is not None]
    if published:
        y, v = zip(*published, strict=True)
        ax.plot(v, y, marker="x", markersize=7, linestyle="none", color="black", gid=f"published-{metric}")
    if baseline is not None and math.isfinite(baseline):
        ax.axvline(baseline, color="0.3", linestyle="--", linewidth=0.8, gid=f"baseline-{metric}")
    ax.yaxis.set_major_locator(NullLocator())  # the rows are named once, left of the first panel
    ax.xaxis.set_major_locator(MaxNLocator(3))  # wide numbers of neighbouring panels must not touch
    ax.set_ylim(len(ys) - 0.5, -0.5)
    ax.set_title(metric, fontsize="medium", y=1.0)  # a fixed place: placing it automatically costs 0.1 s a panel
    ax.grid(axis="x", alpha=0.3)


def _curve_panels(curves: list[list[dict]]) -> list[str]:
    """The curves worth a panel: the loss and lr, and AP50 where a trial was evaluated more than once (a single
    final value is the forest's)."""
    least = {"AP50": 2}
    return [p for p in CURVE_PANELS if any(len(c.get(p, ())) >= least.get(p, 1) for cs in curves for c in cs)]


def _curves(ax: Axes, page: Page, curves: list[list[dict]], panel: str, each: bool) -> None:
    """One curve panel: each setting's mean over its trials (gid ``curve-PANEL-sI``) in its colour and style;
    with ``each``, every trial's own line under it, thin and light (``curve-PANEL-sI-tJ``)."""
    from matplotlib.ticker import MaxNLocator

    for i, (trials, colour) in enumerate(zip(curves, palette(len(page.rows)), strict=True)):
        series = [c[panel] for c in trials if panel in c]
        if not series:
            continue
        s = page.index[i]
        if each:
            for j, one in enumerate(series):
                its, values = zip(*one, strict=True)
                ax.plot(its, values, color=colour, linewidth=0.5, alpha=0.35, gid=f"curve-{panel}-s{s}-t{j}")
        its, means = mean_curve(series)
        few = len(its) < 10  # few points: show them
        ax.plot(its, means, color=colour, linewidth=1.2, linestyle=_style(i), marker="o" if few else None,
                markersize=3, gid=f"curve-{panel}-s{s}")  # fmt: skip
    ax.set_title(panel, fontsize="medium", y=1.0)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.grid(alpha=0.3)


def group_figure(page: Page, baseline: dict[str, float]) -> Figure:
    """A page's figure: a forest plot per metric side by side, the settings' names on the left (after a line
    sample: the curves' legend), and the training curves stacked on the right (one mean line per setting)."""
    curves = [[read_curves(t.path) for t in r.done] for r in page.rows]
    panels = _curve_panels(curves)
    left, n, k = _name_width(page.labels), len(page.rows), len(page.names)
    height = max(TOP_IN + BOTTOM_IN + ROW_IN * n, 1.6 + 1.2 * len(panels))
    inner = height - TOP_IN - BOTTOM_IN
    right = left + k * (PANEL_IN + 0.3) + 0.6  # the curves' y tick labels
    width = right + (CURVES_IN + 0.3 if panels else 0.0)
    fig = figure(width, height, layout=None)
    for j, metric in enumerate(page.names):
        ax = _axes(fig, left + j * (PANEL_IN + 0.3), BOTTOM_IN, PANEL_IN, inner)
        _forest(ax, page, metric, baseline.get(metric))
        if j == 0:
            _names(ax, page, legend=bool(panels))
    each = sum(map(len, curves)) <= TRIAL_LINES
    gap, tall = 0.55, (inner - 0.55 * (len(panels) - 1)) / max(len(panels), 1)
    for j, panel in enumerate(panels):
        ax = _axes(fig, right, BOTTOM_IN + (len(panels) - 1 - j) * (tall + gap), CURVES_IN, tall)
        _curves(ax, page, curves, panel, each)
    if panels:
        ax.set_xlabel("iteration", labelpad=1)
    more = ("; curves: mean per setting" + (", light: each trial" if each else "")) if panels else ""
    fig.suptitle(f"{page.group}: mean ± 95% CI (x: published, dashed: baseline){more}",
                 y=1 - 0.12 / height, va="top", fontsize="medium")  # fmt: skip
    return fig


def _overview_cells(firsts: list[Page], baselines: list[dict[str, float]]) -> tuple[list[str], list[list[float]]]:
    """The overview's names (rows, in order of first appearance) and, per row, each column's first metric
    minus its group's baseline mean, or its median where it has no baseline; NaN where the name is missing."""
    import numpy as np

    names: list[str] = []
    for page in firsts:
        names += [name for name in page.labels if name not in names]
    cells = [[math.nan] * len(firsts) for _ in names]
    place = {name: i for i, name in enumerate(names)}
    for j, (page, base) in enumerate(zip(firsts, baselines, strict=True)):
        metric = page.names[0]
        means = [r.stats[metric].mean for r in page.rows]
        ref = base.get(metric, float(np.nanmedian(means)) if any(map(math.isfinite, means)) else math.nan)
        for name, mean in zip(page.labels, means, strict=True):
            cells[place[name]][j] = mean - ref
    return names, cells


def overview_figure(firsts: list[Page], baselines: list[dict[str, float]], groups: int) -> Figure:
    """The overview: one column per group (its first page), one row per setting name, each cell coloured by
    the first metric's difference to the group's baseline (or median); diverging colours centred on 0."""
    import numpy as np
    from matplotlib import colormaps

    names, cells = _overview_cells(firsts, baselines)
    names, cells = names[:PAGE], cells[:PAGE]
    columns = [f"{p.group} {p.names[0]} − {b.get('', 'median')}" for p, b in zip(firsts, baselines, strict=True)]
    left = _name_width(names) - 0.3
    below = 0.3 + CHAR_IN * max(map(len, columns))  # written upwards
    width, height = left + 0.45 * len(columns) + 1.4, TOP_IN + below + ROW_IN * len(names)
    width, height = max(width, 4.5), height + 0.3
    fig = figure(width, height, layout=None)
    ax = _axes(fig, left, below, 0.45 * len(columns), ROW_IN * len(names))
    values = np.array(cells, float)
    reach = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    cmap = colormaps["RdBu"].with_extremes(bad="0.92")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-reach or -1, vmax=reach or 1, aspect="auto",
                      interpolation="nearest", gid="overview")  # fmt: skip
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize="small")
    bar = fig.colorbar(image, cax=_axes(fig, left + 0.45 * len(columns) + 0.2, below, 0.15, ROW_IN * len(names)))
    bar.set_label("difference (points)")
    more = f" ({groups - len(firsts)} more groups not shown)" if groups > len(firsts) else ""
    fig.suptitle(f"Each group's first metric minus its baseline's\n(or the group's median){more}; grey: no result.\n"
                 f"Every metric: {PLOTS_DIR}/<group>.png",
                 y=1 - 0.12 / height, va="top", fontsize="medium")  # fmt: skip
    return fig


def _baseline_means(page: Page, group_rows: list[Row], baseline: str | None) -> dict[str, float]:
    """Each metric's mean of the group's baseline (``xfer.report.comparisons``), and its name under ``""``;
    ``{}`` when the group has no baseline (or several checkpoints of it: which one is meant is not collect's
    to guess)."""
    found = comparisons.baseline_of(group_rows, baseline)
    if len(found) != 1:
        return {}
    return {"": found[0].setting.pretrain} | {m: found[0].stats[m].mean for m in page.names if m in found[0].stats}


def write_groups(rows: list[Row], out_dir: Path, baseline: str | None = None) -> list[Path]:
    """The overview ``ap`` in ``out_dir``, each page's figure under ``out_dir/plots``: the paths written."""
    cut = pages(rows)
    if not cut:
        return []
    members: dict[str, list[Row]] = {}
    for r in finished(rows):
        members.setdefault(r.setting.group, []).append(r)
    baselines = [_baseline_means(p, members[p.group], baseline) for p in cut]
    firsts = [k for k, p in enumerate(cut) if k == 0 or (cut[k - 1].group, cut[k - 1].names) != (p.group, p.names)]
    shown = firsts[:OVERVIEW]
    overview = overview_figure([cut[k] for k in shown], [baselines[k] for k in shown], len(firsts))
    written = save(overview, out_dir / "ap", text=True)
    for page, means in zip(cut, baselines, strict=True):
        written += save(group_figure(page, means), out_dir / PLOTS_DIR / page.stem, text=True)
    return written
