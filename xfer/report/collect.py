"""The collect stage: trial folders of any sweeps -> the table in every format, the comparisons, the plots.

Runs at the end of a local sweep, in SLURM's collect job, and as ``python -m xfer collect DIR [DIR ...]``.
It reads only what trials wrote, so it can run again at any time; what it writes goes into one folder
(by default the first one given):

- ``table.md``: the table, missing trials by name, comparisons   - ``trials.csv``: one row per trial
- ``results.json``: everything, for programs   - ``table.tex``: booktabs   - ``table.html``: the seed's layout
- ``report.html``: the page that shows it all, with each trial, the curves, what is unfinished and why, and
  provenance (``xfer.report.page``)
- ``ap.png``/``.svg`` and ``curves.png``/``.svg`` (unless plots are off); over 12 settings, ``ap`` is an overview
  and each group has its figure under ``plots/`` (``xfer.report.plot_groups``). Figures an earlier collect drew
  there and this one does not are removed, so none shows other numbers than the table.

The comparisons are each method against its group's baseline unless asked otherwise (``xfer.report.comparisons``):
``--compare all`` / ``--baseline NAME`` on the command line, ``collect.compare`` / ``collect.baseline`` in a
launch's config (:func:`options`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xfer.report import comparisons, formats, paper, results
from xfer.store.files import write_text_atomic


@dataclass(frozen=True)
class Report:
    rows: list[results.Row]
    comparisons: comparisons.Comparisons
    markdown: str
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)  # figures of an earlier collect that no longer apply

    @property
    def finished(self) -> int:
        return sum(r.n for r in self.rows)

    def summary(self) -> str:
        missing = sum(len(r.missing) for r in self.rows)
        conflicts = sum(len({t.seed for t in r.conflicts}) for r in self.rows)
        conflicting = f", {conflicts} with conflicting results (listed below the table)" if conflicts else ""
        removed = f"; removed {len(self.removed)} figure(s) of an earlier collect that no longer apply" if self.removed \
            else ""  # fmt: skip
        return f"{self.finished} trials finished in {len(self.rows)} settings, {missing} not finished{conflicting}{removed}"


def option_problems(cfg: Mapping, pretrains: Iterable[str] = ()) -> list[str]:
    """What is wrong with a launch's ``collect.compare`` and ``collect.baseline`` (see :func:`options`), as the
    launch reports problems: checked with the trials, before any runs, so a bad value never waits for the table.
    ``pretrains``: the names a baseline may take (the sweep's and the pretrain group's); a ``collect.baseline``
    among none of them is a typo that would leave every group without its baseline."""
    section = cfg.get("collect") or {}
    baseline = section.get("baseline")
    problem = comparisons.option_problem(section.get("compare", "baseline"), baseline,
                                         "collect.compare=", "collect.baseline=")  # fmt: skip
    known = sorted({p for p in pretrains if isinstance(p, str)})  # a bad pretrain.name is the checks' to name
    if not problem and isinstance(baseline, str) and known and baseline not in known:
        problem = f"collect.baseline={baseline}: no pretrain of that name; choose one of: {', '.join(known)}"
    return [problem] if problem else []


def baseline_problem(rows: list[results.Row], baseline: str | None, flag: str = "--baseline") -> str:
    """Why ``baseline`` cannot be the baseline of these rows: no trial of that pretrain is among them (a typo
    would leave every group without its baseline); "" when it is there, or not asked for."""
    found = sorted({r.setting.pretrain for r in rows})
    if baseline is None or baseline in found:
        return ""
    return f"{flag} {baseline}: no trial of that pretrain here; the pretrains here: {', '.join(found) or 'none'}"


def options(cfg: Mapping) -> dict:
    """collect's keyword arguments from a launch's config: ``collect.compare`` (baseline, the default, or all)
    and ``collect.baseline`` (a pretrain name; null: automatic). A ValueError names a bad value and its fix."""
    found = option_problems(cfg)
    if found:
        raise ValueError(found[0])
    section = cfg.get("collect") or {}
    baseline = section.get("baseline")
    return {"compare": str(section.get("compare", "baseline")), "baseline": None if baseline is None else str(baseline)}


def collect(dirs: Iterable[Path], out_dir: Path | None = None, plots: bool = True, readme: Path | None = None,
            compare: str = "baseline", baseline: str | None = None, strict: bool = False) -> Report:  # fmt: skip
    """Read every trial under ``dirs``, write all formats into ``out_dir`` (default: the first of ``dirs``);
    with ``readme``, also rewrite that Markdown file's seed-style table block in place. ``compare`` and
    ``baseline``: which methods are compared (:func:`xfer.report.comparisons.compare`). ``strict``: a
    ``baseline`` no trial has is a ValueError before anything is written (``python -m xfer collect``; a launch
    checked it before training)."""
    dirs = [Path(d) for d in dirs]
    out_dir = Path(out_dir or dirs[0])
    trials = results.read_trials(dirs)
    rows = results.summarize(trials)
    problem = baseline_problem(rows, baseline) if strict else ""
    if problem:
        raise ValueError(problem)
    compared = comparisons.compare(rows, compare, baseline)
    md = formats.markdown(rows, compared)
    html = paper.seed_html(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {"table.md": md, "trials.csv": formats.tidy_csv(rows), "results.json": formats.to_json(rows, compared),
             "table.tex": paper.latex(rows), "table.html": html + "\n"}  # fmt: skip
    written = []
    for name, text in texts.items():
        write_text_atomic(out_dir / name, text)
        written.append(out_dir / name)
    from xfer.report import page, status

    written.append(page.write(out_dir, rows, compared, status.scan(dirs, trials=trials), dirs))
    drawn_before = figures_in(out_dir)
    if plots and any(r.n for r in rows):
        from xfer.report import plots as plotting  # matplotlib is imported only when plots are drawn

        written += plotting.write_all(rows, out_dir, baseline)
    removed = _remove(drawn_before - set(written), out_dir)
    if readme is not None:
        paper.rewrite_block(readme, html)
        written.append(Path(readme))
    return Report(rows, compared, md, written, removed)


def figures_in(out_dir: Path) -> set[Path]:
    """The figures a collect into ``out_dir`` draws, as they are there now: ``ap``, ``curves`` and ``plots/``."""
    found = {out_dir / f"{stem}.{ext}" for stem in ("ap", "curves") for ext in ("png", "svg")}
    found |= {p for ext in ("png", "svg") for p in (out_dir / "plots").rglob(f"*.{ext}")}
    return {p for p in found if p.is_file()}


def _remove(stale: set[Path], out_dir: Path) -> list[Path]:
    """Figures of an earlier collect that this one did not draw (plots off, fewer settings, no finished trial):
    beside the new table they would show other numbers. Emptied ``plots/`` folders go with them."""
    for p in stale:
        p.unlink(missing_ok=True)
    for folder in sorted((out_dir / "plots").rglob("*"), reverse=True) + [out_dir / "plots"]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return sorted(stale)
