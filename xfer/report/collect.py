"""The collect stage: trial folders of any sweeps -> the table in every format, the comparisons, the plots.

Runs at the end of a local sweep, in SLURM's collect job, and as ``python -m xfer collect DIR [DIR ...]``.
It reads only what trials wrote, so it can run again at any time; what it writes goes into one folder
(by default the first one given):

- ``table.md``: the table, missing trials by name, comparisons   - ``trials.csv``: one row per trial
- ``results.json``: everything, for programs   - ``table.tex``: booktabs   - ``table.html``: the seed's layout
- ``ap.png``/``.svg`` and ``curves.png``/``.svg`` (unless plots are off)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from xfer.report import formats, results
from xfer.store.files import write_text_atomic


@dataclass(frozen=True)
class Report:
    rows: list[results.Row]
    comparisons: list[results.Comparison]
    markdown: str
    written: list[Path] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return sum(r.n for r in self.rows)

    def summary(self) -> str:
        missing = sum(len(r.missing) for r in self.rows)
        conflicts = sum(len({t.seed for t in r.conflicts}) for r in self.rows)
        conflicting = f", {conflicts} with conflicting results (listed below the table)" if conflicts else ""
        return f"{self.finished} trials finished in {len(self.rows)} settings, {missing} not finished{conflicting}"


def collect(dirs: Iterable[Path], out_dir: Path | None = None, plots: bool = True, readme: Path | None = None) -> Report:
    """Read every trial under ``dirs``, write all formats into ``out_dir`` (default: the first of ``dirs``);
    with ``readme``, also rewrite that Markdown file's seed-style table block in place."""
    dirs = [Path(d) for d in dirs]
    out_dir = Path(out_dir or dirs[0])
    rows = results.summarize(results.read_trials(dirs))
    comparisons = results.compare(rows)
    md = formats.markdown(rows, comparisons)
    html = formats.seed_html(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {"table.md": md, "trials.csv": formats.tidy_csv(rows), "results.json": formats.to_json(rows, comparisons),
             "table.tex": formats.latex(rows), "table.html": html + "\n"}  # fmt: skip
    written = []
    for name, text in texts.items():
        write_text_atomic(out_dir / name, text)
        written.append(out_dir / name)
    if plots and any(r.n for r in rows):
        from xfer.report import plots as plotting  # matplotlib is imported only when plots are drawn

        written += plotting.write_all(rows, out_dir)
    if readme is not None:
        formats.rewrite_block(readme, html)
        written.append(Path(readme))
    return Report(rows, comparisons, md, written)
