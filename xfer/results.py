"""Collect: trial ``result.json`` files -> one table per sweep folder (Markdown and CSV).

Reads only what trials wrote, so it can run at any time (``python -m xfer collect DIR``), while a
sweep is still going or after it ended. Per setting: n, mean and sample std (ddof 1; undefined for
n=1, shown as such) of AP50/AP/AP75, the per-trial values in the seed's ``AP50/AP/AP75`` style, and
the seed's published numbers beside them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xfer.files import RESULT

METRICS = ("AP50", "AP", "AP75")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One setting of the table."""

    setting: str
    n: int
    mean: dict[str, float]
    std: dict[str, float | None]
    trials: list[str]
    seeds: list[int]
    published: dict | None


def read_results(dirs: Iterable[Path]) -> list[dict]:
    """Every readable ``result.json`` below ``dirs``; unreadable ones are logged and skipped."""
    records = []
    for d in dirs:
        for path in sorted(Path(d).rglob(RESULT)):
            try:
                records.append({**json.loads(path.read_text()), "path": str(path)})
            except (OSError, ValueError) as e:
                log.warning("skipping unreadable %s: %s", path, e)
    return records


def triple(values: dict) -> str:
    return "/".join(f"{values[m]:.2f}" for m in METRICS)


def summarize(records: list[dict]) -> list[Row]:
    """Group trial records by setting; one row per setting, sorted by setting."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["setting"]["key"]].append(r)
    rows = []
    for key in sorted(groups):
        trials = sorted(groups[key], key=lambda r: r["seed"])
        values = {m: [float(t["metrics"][m]) for t in trials] for m in METRICS}
        rows.append(
            Row(
                setting=key,
                n=len(trials),
                mean={m: statistics.fmean(v) for m, v in values.items()},
                std={m: statistics.stdev(v) if len(v) > 1 else None for m, v in values.items()},
                trials=[triple(t["metrics"]) for t in trials],
                seeds=[t["seed"] for t in trials],
                published=trials[0].get("published"),
            )
        )
    return rows


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f} (n=1)"


def markdown(rows: list[Row]) -> str:
    head = "| setting | n | AP50 | AP | AP75 | trials (AP50/AP/AP75) | published |\n|---|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r.setting} | {r.n} | "
        + " | ".join(_cell(r.mean[m], r.std[m]) for m in METRICS)
        + f" | {'; '.join(r.trials)} | {triple(r.published) if r.published else '—'} |\n"
        for r in rows
    )
    return head + body


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["setting", "n", "seeds"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
               + [f"{m}_published" for m in METRICS] + ["trials"])  # fmt: skip
    for r in rows:
        stats = [x for m in METRICS for x in (round(r.mean[m], 4), "" if r.std[m] is None else round(r.std[m], 4))]
        pub = [r.published[m] if r.published else "" for m in METRICS]
        w.writerow([r.setting, r.n, " ".join(map(str, r.seeds)), *stats, *pub, "; ".join(r.trials)])
    return buf.getvalue()


def collect(sweep_dir: Path, extra_dirs: Iterable[Path] = ()) -> tuple[list[Row], str]:
    """Summarize every trial under ``sweep_dir`` (and ``extra_dirs``); write table.md and table.csv there."""
    sweep_dir = Path(sweep_dir)
    rows = summarize(read_results([sweep_dir, *extra_dirs]))
    md = markdown(rows)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "table.md").write_text(md)
    (sweep_dir / "table.csv").write_text(to_csv(rows))
    return rows, md
