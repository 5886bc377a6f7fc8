"""Plots of collected results: AP per setting against the published numbers, and training curves.

A table says whether our mean matches the paper; a plot shows at a glance how far apart settings are
relative to their noise, and the curves show why a trial went wrong (diverging loss, a bad lr schedule).
Everything is drawn with matplotlib's object API on the Agg canvas: no pyplot global state, no display,
so it runs on a login node or inside a job. matplotlib is imported lazily: it is not a core dependency,
and ``collect``'s tables must work without it. Each figure is written as PNG (to look at) and SVG (to
put in a paper); the SVG carries no date and fixed ids, so rerunning collect gives identical files.

This module draws a sweep of up to :data:`SMALL` settings with a result: ``ap`` (every metric per setting)
and ``curves`` (every trial's line), one figure each, wider with more settings. A larger sweep (a 2,000-trial
one has 400 settings: one such figure would be 144,000 px wide and take a minute) is drawn per group by
:mod:`xfer.report.plot_groups`: an overview in ``ap`` and one bounded figure per group under ``plots/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from xfer.report import plot_groups
from xfer.report.canvas import CURVE_PANELS, figure, finished, save
from xfer.report.metrics_log import read_curves
from xfer.report.results import Row

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SMALL = 12  # settings with a result up to which one figure of each kind shows them all (the smoke sweep's look)


def _colours(rows: list[Row]) -> dict[str, str]:
    """One colour per setting, the same in every figure of one call (both follow the row order)."""
    return {r.key: f"C{i % 10}" for i, r in enumerate(finished(rows))}


def ap_size(n_settings: int, panels: int = 3, lines: int = 1) -> tuple[float, float]:
    """Figure size in inches: ``panels`` per line (VOC's three by default) that widen with the settings so
    the x labels stay legible, and one line of panels per list of metric names."""
    return panels * max(2.5, 0.75 * n_settings), 4.5 * lines


def _by_names(shown: list[Row]) -> dict[tuple[str, ...], list[Row]]:
    """The finished rows by metric names, in the order first named: one line of panels each."""
    lines: dict[tuple[str, ...], list[Row]] = {}
    for r in shown:
        lines.setdefault(r.metric_names, []).append(r)
    return lines


def _ap_figure(rows: list[Row]) -> Figure | None:
    """Mean ± 95% interval per setting and metric, with the published value as an 'x'; None if nothing finished.

    One line of panels per list of metric names (a VOC report: one line, AP50, AP, AP75), one panel per
    metric, holding the settings that measured those. One errorbar container per setting and panel (gid
    ``ap-METRIC-sI``, I the setting's place among all finished ones), one line per published value (gid
    ``published-METRIC-sI``): n=1 settings get a point without a bar, as their interval is unknown.
    """
    shown = finished(rows)
    if not shown:
        return None
    colours = _colours(rows)
    index = {id(r): i for i, r in enumerate(shown)}
    lines = _by_names(shown)
    widest, panels = max(len(members) for members in lines.values()), max(map(len, lines))
    fig = figure(*ap_size(widest, panels, len(lines)))
    grid = fig.subplots(len(lines), panels, squeeze=False)
    for axes, (names, members) in zip(grid, lines.items(), strict=True):
        for extra in axes[len(names) :]:
            extra.remove()  # a shorter list than the longest: no empty frames
        _ap_line(axes[: len(names)], names, members, index, colours)
    return fig


def _ap_line(
    axes: Sequence[Axes], names: tuple[str, ...], shown: list[Row], index: dict[int, int], colours: dict[str, str]
) -> None:
    """One line of panels of :func:`_ap_figure`: one per metric of ``names``, the rows that measured them."""
    xs = list(range(len(shown)))
    for ax, metric in zip(axes, names, strict=True):
        for x, row in enumerate(shown):
            i = index[id(row)]
            s = row.stats[metric]
            yerr = None if s.ci95 is None else [[s.ci95], [s.ci95]]
            bar = ax.errorbar([x], [s.mean], yerr=yerr, fmt="o", capsize=4, color=colours[row.key], label=row.key)
            bar.lines[0].set_gid(f"ap-{metric}-s{i}")  # the mean; its bar and caps get their own ids, once each
            for k, part in enumerate([*bar.lines[1], *bar.lines[2]]):
                part.set_gid(f"ap-{metric}-s{i}-err{k}")
            pub = row.published_value(metric)
            if pub is not None:
                ax.plot([x], [pub], marker="x", markersize=8, linestyle="none", color="black",
                        label="published" if x == 0 else "_published", gid=f"published-{metric}-s{i}")  # fmt: skip
        ax.set_title(metric)
        ax.set_xticks(xs, [r.key for r in shown], rotation=45, ha="right", fontsize="small")
        ax.set_xlim(-0.5, len(shown) - 0.5)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean ± 95% CI (x: published)")


def ap_plot(rows: list[Row], out_stem: Path) -> list[Path]:
    """Write ``out_stem``.png/.svg of the AP per setting; nothing (and ``[]``) when no trial finished."""
    fig = _ap_figure(rows)
    return [] if fig is None else save(fig, out_stem)


def _curves_figure(rows: list[Row]) -> Figure | None:
    """Panels total_loss, lr and AP50 (if any trial was evaluated); one line per trial, one colour per setting.

    Lines have gid ``curve-PANEL-sI-tJ``; only a setting's first line is labelled, so the legend lists
    settings, not trials. None when no finished trial has curves.
    """
    colours = _colours(rows)
    curves = {r.key: [read_curves(t.path) for t in r.done] for r in finished(rows)}
    panels = [p for p in CURVE_PANELS if any(p in c for cs in curves.values() for c in cs)]
    if not panels:
        return None
    fig = figure(4.0 * len(panels), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        for i, (key, trials) in enumerate(curves.items()):
            labelled = False
            for j, c in enumerate(trials):
                if panel not in c:
                    continue
                its, values = zip(*c[panel], strict=True)
                ax.plot(its, values, color=colours[key], linewidth=0.8, alpha=0.8,
                        marker="o" if panel == "AP50" or len(its) < 10 else None, markersize=3,  # few points: show them
                        label="_trial" if labelled else key, gid=f"curve-{panel}-s{i}-t{j}")  # fmt: skip
                labelled = True
        ax.set_title(panel)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return fig


def curves_plot(rows: list[Row], out_stem: Path) -> list[Path]:
    """Write ``out_stem``.png/.svg of the training curves; nothing (and ``[]``) when no trial has any."""
    fig = _curves_figure(rows)
    return [] if fig is None else save(fig, out_stem)


def write_all(rows: list[Row], out_dir: Path, baseline: str | None = None) -> list[Path]:
    """The plots in ``out_dir``: the paths of those written. Up to :data:`SMALL` settings with a result,
    ``ap.{png,svg}`` and ``curves.{png,svg}`` show them all; more, and each group gets its own figures under
    ``plots/`` with an overview in ``ap.{png,svg}`` (:mod:`xfer.report.plot_groups`; ``baseline``: the
    pretrain whose mean each group's AP figure marks, automatic when None, as in the comparisons)."""
    if len(finished(rows)) <= SMALL:
        return ap_plot(rows, out_dir / "ap") + curves_plot(rows, out_dir / "curves")
    return plot_groups.write_groups(rows, out_dir, baseline)
