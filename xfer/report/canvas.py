"""The canvas every figure of the collect stage is drawn on and saved from, whether one figure shows a whole sweep
(:mod:`xfer.report.plots`) or each group has its own (:mod:`xfer.report.plot_groups`).

matplotlib's object API on the Agg canvas: no pyplot global state, no display, so it runs on a login node or
inside a job. matplotlib is imported inside the functions: it is not a core dependency, and ``collect``'s tables
must work without it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from xfer.report.results import Row
from xfer.store.files import write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
CURVE_PANELS = ("total_loss", "lr", "AP50")  # AP50: the metric every benchmark evaluates and reports first


def figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A figure on its own Agg canvas, so saving never depends on (or changes) a global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out_stem: Path, text: bool = False) -> list[Path]:
    """PNG and SVG next to each other; the SVG without a date and with salted-but-fixed ids (reproducible).
    ``text``: the SVG keeps its text as text (editable, searchable, a quarter cheaper to write) rather than
    as glyph outlines (the same in any viewer). ``out_stem`` may hold dots (a group's overrides)."""
    from matplotlib import rc_context

    out_stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = (out_stem.parent / f"{out_stem.name}.{ext}" for ext in ("png", "svg"))
    drawn = {png: io.BytesIO(), svg: io.BytesIO()}  # drawn whole, then each file replaced whole (a full disk, Ctrl-C)
    with rc_context({"svg.hashsalt": "xfer", "svg.fonttype": "none" if text else "path"}):
        fig.savefig(drawn[png], format="png", dpi=DPI)
        fig.savefig(drawn[svg], format="svg", metadata={"Date": None})
    for path, data in drawn.items():
        write_text_atomic(path, data.getvalue())
    return [png, svg]


def finished(rows: list[Row]) -> list[Row]:
    """Settings with at least one finished trial: the others have no mean to plot."""
    return [r for r in rows if r.n > 0]
