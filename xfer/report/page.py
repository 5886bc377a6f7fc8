"""``report.html``: one page per sweep that shows its result and where it stands, written by collect (at the end
of a local sweep, by SLURM's collect job, by ``python -m xfer collect``) and refreshed by ``python -m xfer status``.

What it holds, top to bottom: the results table beside the published numbers (Δ, the significance flag and its
legend) and the comparisons; every trial as a point beside its setting's mean ± 95% interval and the published
mark; each setting's training curves (total loss, learning rate), every trial a thin line; the trials not
finished, with state, progress, ETA and, for a failed one, its cause and the last lines of its log; and the
provenance: the command, the choices, versions, weights digests, when each trial ran.

It is one self-contained file (inline CSS and SVG, no script, nothing fetched), so it opens from disk, from a
mail or a shared folder; every text that comes from a result file is escaped (``html.escape``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from html import escape
from pathlib import Path

from xfer.report import figures, formats
from xfer.report.comparisons import Comparison, Comparisons
from xfer.report.metrics_log import Curves, read_curves
from xfer.report.results import Row
from xfer.report.schedule import SweepEta
from xfer.report.status import TrialStatus, describe, duration, eta_line
from xfer.store import sweeps
from xfer.store.files import FAILURE, read_json, write_text_atomic
from xfer.store.sweeps import SweepRecord

REPORT = "report.html"
LOG_LINES = 15  # of a failed trial's log tail
CURVE_TRIALS = 500  # up to here every trial's curves are drawn (reading 2,000 trials' metrics.json took 6.5 s)
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;padding:0 20px 40px;color:#1a1a1a}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{font-size:15px;margin:16px 0 6px}nav a{margin-right:14px}.muted{color:#666}.wrap{overflow-x:auto}
table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{border-bottom:1px solid #e3e3e3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.flag{color:#d62728;font-weight:600}code{background:#f4f6f8;padding:0 3px}pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px;max-width:1200px}
svg text{font:12px system-ui,sans-serif}svg .tick{font-size:11px;fill:#555}svg .ttl{font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:14px}.card{border:1px solid #e3e3e3;padding:6px 8px}.card h3{margin:0 0 4px;font-size:13px}
.state-failed,.state-damaged,.state-unreadable,.state-conflict{color:#b00}.state-stale{color:#a0a}
"""


def _md_to_html(text: str) -> str:
    """A line of the Markdown table's prose (escaped), with its `code` spans as ``<code>``."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escape(text))


def _table(head: Sequence[str], body: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; the cells are HTML already (escape before)."""
    cells = lambda row: "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"  # noqa: E731
                                for i, c in enumerate(row))  # fmt: skip
    return ('<div class="wrap"><table><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(f"<tr>{cells(r)}</tr>" for r in body) + "</tbody></table></div>")  # fmt: skip


def _mean(row: Row, m: str) -> str:
    """The table's cell, its interval on a second line (the table fits a laptop's width)."""
    mean, _, interval = formats.mean_cell(row, m).partition(" [")
    return escape(mean) + (f'<br><small class="muted">[{escape(interval)}</small>' if interval else "")


def _delta(row: Row) -> str:
    text = escape(formats.delta_cell(row))
    return re.sub(r"\*", '<span class="flag">*</span>', text)


def results_section(rows: list[Row], compared: Sequence[Comparison]) -> str:
    """The results table(s), one per list of metric names, the flag's legend, and the comparisons."""
    out = ['<h2 id="results">Results</h2>']
    for names, members in formats.metric_tables(rows):
        head = ["setting", "pretrain", "n", *(f"{escape(m)}<br><small>mean ± std [95% CI]</small>" for m in names),
                f"published ({escape('/'.join(names))})", "Δ ours − published", "weights"]  # fmt: skip
        body = [[escape(r.key), escape(r.label or r.setting.pretrain), f"{r.n}/{r.expected}",
                 *(_mean(r, m) for m in names),
                 escape(formats.triple(r.published, names)) if r.published else "—", _delta(r),
                 f"<code>{escape(r.setting.weights or '?')}</code>"] for r in members]  # fmt: skip
        out.append(_table(head, body, numeric=range(2, 5 + len(names))))
    if any(r.delta is not None for r in rows):
        out.append(f'<p class="muted">{_md_to_html(formats.FLAG_NOTE)}</p>')
    caveats = formats.caveat_lines(rows)
    if caveats:
        out.append(f'<p class="muted">{escape(caveats[0])}</p><ul class="muted">'
                   + "".join(f"<li>{escape(line[2:])}</li>" for line in caveats[1:]) + "</ul>")  # fmt: skip
    out.append(_comparisons(compared))
    return "".join(out)


def _signed(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:+.2f}"


def _comparisons(compared: Sequence[Comparison]) -> str:
    left = formats.left_out_lines(compared) if isinstance(compared, Comparisons) else []
    if not compared and not left:
        return ""
    out = [f"<h3>Comparisons</h3><p>{_md_to_html(formats.comparison_heading(compared))}</p>"]
    by_names: dict[tuple[str, ...], list[Comparison]] = {}
    for c in compared:
        by_names.setdefault(c.metric_names, []).append(c)
    for names, members in by_names.items():
        body = [[escape(c.group), f"{escape(c.b)} − {escape(c.a)}",
                 *(f"{_signed(c.diff[m])} ({escape(formats.p_text(c.p[m]))})" for m in names)] for c in members]
        out.append(_table(["group", "method − baseline", *(f"Δ{escape(m)}" for m in names)], body,
                          numeric=range(2, 2 + len(names))))  # fmt: skip
    out += [f'<p class="muted">{_md_to_html(line)}</p>' for line in left]
    return "".join(out)


def ap_section(rows: list[Row]) -> str:
    charts = [figures.ap_chart(members, names) for names, members in formats.metric_tables(rows)]
    if not any(charts):
        return ""
    legend = ("Each dot is a trial (its colour: its place in the seed order); the black bar is the setting's mean "
              "and its 95% interval; the red diamond the published number. Hover for values.")  # fmt: skip
    return f'<h2 id="ap">AP per trial</h2><p class="muted">{legend}</p>' + "".join(f'<div class="wrap">{c}</div>'
                                                                                 for c in charts if c)  # fmt: skip


def curves_section(rows: list[Row], curves: dict[Path, Curves]) -> str:
    """Per setting, total loss and learning rate, every trial (finished or not) a thin line; over
    :data:`CURVE_TRIALS` trials a pointer to where they are instead."""
    trials = sum(len(r.done) + len(r.missing) for r in rows)
    if trials > CURVE_TRIALS:
        return (f'<h2 id="curves">Training curves</h2><p>{trials} trials: more than this page draws ({CURVE_TRIALS}). '
                "Each trial's curves are in TensorBoard (<code>tensorboard --logdir</code> this folder) and, per "
                "group, in <code>plots/</code> (collect without <code>--no-plots</code>).</p>")  # fmt: skip
    cards = []
    for r in rows:
        trials = [t for t in (*r.done, *r.missing) if curves.get(t.path)]
        if not trials:
            continue
        panels = [figures.curve_panel(q, [(f"seed{t.seed}", curves[t.path].get(q, [])) for t in trials])
                  for q in ("total_loss", "lr")]  # fmt: skip
        cards.append(f'<div class="card"><h3>{escape(r.key)}</h3>{"".join(panels)}</div>')
    if not cards:
        return ""
    return '<h2 id="curves">Training curves</h2><div class="cards">' + "".join(cards) + "</div>"


def _log_tail(path: Path | None) -> str:
    record = read_json(path / FAILURE) if path else None
    detail = str((record or {}).get("detail") or "").rstrip()
    if not detail:
        return ""
    tail = "\n".join(detail.splitlines()[-LOG_LINES:])
    return f"<details><summary>last lines of its log</summary><pre>{escape(tail)}</pre></details>"


def unfinished_section(statuses: list[TrialStatus], eta: SweepEta | None) -> str:
    left = [s for s in statuses if s.state != "done"]
    if not left:
        return '<h2 id="unfinished">Unfinished trials</h2><p>None: every trial is done.</p>'
    body = [[escape(s.label), f'<span class="state-{escape(s.state)}">{escape(describe(s))}</span>',
             f"{s.iteration}/{s.max_iter}" if s.iteration is not None and s.max_iter else "",
             duration(s.eta_s) if s.eta_s is not None else "", escape(s.cause) + _log_tail(s.path),
             escape(s.job)] for s in left]  # fmt: skip
    line = f"<p>{escape(eta_line(eta))}</p>" if eta and eta_line(eta) else ""
    return (f'<h2 id="unfinished">Unfinished trials ({len(left)})</h2>{line}'
            + _table(["trial", "state", "progress", "ETA", "cause", "SLURM job"], body, numeric=(2, 3)))  # fmt: skip


def _when(unix: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix)) if isinstance(unix, int | float) else ""


def provenance_section(rows: list[Row], sweep: SweepRecord | None) -> str:
    out = ['<h2 id="provenance">Provenance</h2>']
    if sweep is not None:
        out.append(f"<p>Latest launch, {escape(sweep.launched)}: <code>{escape(sweep.command)}</code> ({escape(sweep.cluster)}, "
                   f"{sweep.devices_per_trial} {escape(sweep.device)} device(s) per trial, {sweep.at_once} at a time)</p>")  # fmt: skip
    else:
        out.append('<p class="muted">No sweep.json here: the command is not known (launched by an older xfer, or copied).</p>')
    trials = [t for r in rows for t in r.done]
    versions = Counter(json.dumps(t.record.get("versions") or {}, sort_keys=True) for t in trials)
    if versions:
        body = [[escape(", ".join(f"{k} {v}" for k, v in json.loads(v).items()) or "not recorded"), str(n)]
                for v, n in versions.most_common()]  # fmt: skip
        out.append("<h3>Versions</h3>" + _table(["libraries", "trials"], body, numeric=(1,)))
    body = []
    for r in rows:
        weights = next(((t.record.get("weights") or {}) for t in r.done), {})
        body.append([escape(r.key), escape(r.setting.benchmark), escape(r.setting.backbone), escape(r.setting.pretrain),
                     escape(r.setting.overrides) or "—", escape(str(weights.get("source") or "—")),
                     f"<code>{escape(str(weights.get('sha256') or r.setting.weights or '—'))}</code>"])  # fmt: skip
    out.append("<h3>Settings</h3>" + _table(["setting", "benchmark", "backbone", "pretrain", "overrides",
                                             "weights file", "weights sha256"], body))  # fmt: skip
    ran = []
    for t in trials:
        run = t.record.get("run") or {}
        wall = run.get("wall_time_s")
        ran.append([escape(t.setting.key), str(t.seed), escape(_when(run.get("started_unix"))),
                    escape(_when(run.get("finished_unix"))), duration(wall) if isinstance(wall, int | float) else "",
                    escape(f"{run.get('world_size', '?')} × {run.get('device_name') or run.get('device') or '?'}")])  # fmt: skip
    if ran:
        out.append(f"<details><summary>When each trial ran ({len(ran)} finished)</summary>"
                   + _table(["setting", "seed", "started", "finished", "wall time", "processes × device"], ran,
                            numeric=(1, 4)) + "</details>")  # fmt: skip
    return "".join(out)


def html(title: str, rows: list[Row], compared: Sequence[Comparison], statuses: list[TrialStatus],
         sweep: SweepRecord | None, curves: dict[Path, Curves], eta: SweepEta | None, state: str = "") -> str:  # fmt: skip
    """The whole page; ``state``: the :func:`fingerprint` it shows, kept in its head for :func:`refresh`."""
    finished = sum(r.n for r in rows)
    summary = f"{finished} trial(s) finished in {len(rows)} setting(s); " + (eta_line(eta) or "nothing left to run")
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (("results", "Results"), ("ap", "AP per trial"),
                  ("curves", "Curves"), ("unfinished", "Unfinished"), ("provenance", "Provenance")))  # fmt: skip
    parts = [results_section(rows, compared), ap_section(rows), curves_section(rows, curves),
             unfinished_section(statuses, eta), provenance_section(rows, sweep)]  # fmt: skip
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="xfer-state" content="{state}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>xfer: {escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>xfer report: {escape(title)}</h1>"
            f'<p class="muted">{escape(summary)}. Written {escape(time.strftime("%Y-%m-%d %H:%M:%S"))}.</p>'
            f"<nav>{nav}</nav>{''.join(parts)}</body></html>\n")  # fmt: skip


def write(folder: Path, rows: list[Row], compared: Sequence[Comparison], statuses: list[TrialStatus],
          dirs: Sequence[Path] = ()) -> Path:  # fmt: skip
    """``folder``/report.html for the trials of ``rows`` and ``statuses`` (found under ``dirs``, default
    ``folder``); the latest launch's ``sweep.json`` of ``folder`` or of the first of ``dirs`` that has one."""
    from xfer.report.status import sweep_eta

    own = sweeps.read(folder)
    sweep = own or next(filter(None, map(sweeps.read, dirs)), None)
    every = [t for r in rows for t in (*r.done, *r.missing)]
    curves = {t.path: read_curves(t.path) for t in every} if len(every) <= CURVE_TRIALS else {}
    eta = sweep_eta(statuses, sweep.at_once if sweep else 0)
    path = Path(folder) / REPORT
    title = Path(folder).resolve().name
    write_text_atomic(path, html(title, rows, compared, statuses, sweep, curves, eta, fingerprint(statuses, own)))
    return path


def sweep_folders(dirs: Sequence[Path]) -> list[Path]:
    """The sweep folders among ``dirs`` and their subfolders (``outputs`` holds one per benchmark): those a launch
    wrote ``sweep.json`` into, or collect a report."""
    found = []
    for d in map(Path, dirs):
        for f in (d, *sorted(p for p in d.iterdir() if p.is_dir())) if d.is_dir() else ():
            if (f / sweeps.SWEEP).is_file() or (f / REPORT).is_file():
                found.append(f)
    return list(dict.fromkeys(found))


def fingerprint(statuses: Sequence[TrialStatus], sweep: SweepRecord | None) -> str:
    """What the page shows that can change between two looks at a sweep: each trial's state, progress and cause,
    and the latest launch. The same fingerprint, the same page (its ETA aside: nothing runs, nothing moves)."""
    seen = sorted(((str(s.path), s.state, s.iteration, s.max_iter, s.cause, s.job) for s in statuses),
                  key=lambda x: x[0])  # fmt: skip
    return hashlib.sha256(repr((seen, sweep)).encode()).hexdigest()[:16]


def _written_for(path: Path) -> str | None:
    """The fingerprint a page was written for (in its head), or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(1024)
    except OSError:
        return None
    found = re.search(r'<meta name="xfer-state" content="([0-9a-f]+)">', head)
    return found[1] if found else None


def refresh(dirs: Sequence[Path], trials: list, statuses: list[TrialStatus]) -> list[Path]:
    """Rewrite the report of every sweep folder under ``dirs`` (:func:`sweep_folders`) from the trials and statuses
    ``status`` has read, each folder's own: what ``python -m xfer status`` does besides its table. A page written
    for the same :func:`fingerprint` is left as it is (a finished 2,000-trial sweep's page takes seconds)."""
    from xfer.report import comparisons, results

    written, real = [], {p: p.resolve() for p in [t.path for t in trials] + [s.path for s in statuses if s.path]}
    for folder in sweep_folders(dirs):
        top = folder.resolve()
        here = [s for s in statuses if s.path and top in real[s.path].parents]
        if _written_for(folder / REPORT) == fingerprint(here, sweeps.read(folder)):
            continue
        rows = results.summarize([t for t in trials if top in real[t.path].parents])
        written.append(write(folder, rows, comparisons.compare(rows), here, [folder]))
    return written
