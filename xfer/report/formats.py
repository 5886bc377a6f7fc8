"""The results table for reading and for programs, rendered from the rows (``xfer.report.results``): Markdown
(for reading and pasting), CSV (tidy: one row per trial, for pandas) and JSON (everything); and the cells and
numbers the other views share (the HTML page, ``xfer.report.page``; LaTeX and the seed README's HTML table,
``xfer.report.paper``).

Each row shows the metrics its trials measured (``Row.metric_names``). Rows that measured the same ones share
a table, so a report of VOC (AP50/AP/AP75) and COCO settings has one table per kind, each with its own header;
the tidy CSV has one column per metric of any row; the seed's HTML block, one table by design (the README
holds one block), has a column per metric of any row too.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence

from xfer.report.comparisons import BASELINES, Comparison, Comparisons
from xfer.report.results import Row
from xfer.store.files import VOC_METRICS
from xfer.store.records import Trial, label

FLAG_NOTE = ("`*`: ours and the published mean differ beyond the noise of both: Welch's t-test (two-sided) of our "
             "trials (n, mean, std) against the published mean, taken as a mean of its n trials with the benchmark's "
             "stated std (`published_std`), gives p < 0.05. No `*` where there is no stated std or fewer than 2 of "
             "our trials: nothing to test.")  # fmt: skip


def number(x: float | None, signed: bool = False) -> str:
    if x is None or math.isnan(x):  # NaN: COCO's evaluator had nothing to average
        return "—"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def triple(metrics: dict, names: Sequence[str] | None = None) -> str:
    """``82.64/58.32/64.60``: the seed's notation for one trial, over ``names`` (default: the keys of
    ``metrics``, a trial's own); "—" for a name without a number (published records lack some)."""
    return "/".join(number(_number(metrics.get(m))) for m in (metrics if names is None else names))


def metric_tables(rows: list[Row]) -> list[tuple[tuple[str, ...], list[Row]]]:
    """The rows by metric names: one entry per distinct list, in the order the rows first name it, each with
    its rows in their order. No rows: one empty VOC table, as before metric names existed."""
    tables: dict[tuple[str, ...], list[Row]] = {}
    for r in rows:
        tables.setdefault(r.metric_names, []).append(r)
    return list(tables.items()) or [(VOC_METRICS, [])]


def all_names(rows: list[Row]) -> tuple[str, ...]:
    """Every metric of any row (or of a trial in conflict with its setting's), each once, in first-named
    order: VOC's three for a VOC-only report."""
    names = [m for r in rows for m in r.metric_names] + [m for r in rows for t in r.conflicts for m in t.metric_names]
    return tuple(dict.fromkeys(names)) or VOC_METRICS


def mean_cell(row: Row, m: str) -> str:
    if not row.stats:
        return "—"
    s = row.stats[m]
    if math.isnan(s.mean):  # COCO's evaluator gives NaN where it had nothing to average
        undefined = sum(math.isnan(t.metrics[m]) for t in row.done)
        return f"— (NaN in {undefined} of {s.n} trials)"
    if s.std is None:
        return f"{s.mean:.2f} (n=1, no spread)"
    return f"{s.mean:.2f} ± {s.std:.2f} [{s.low:.2f}, {s.high:.2f}]"


def delta_cell(row: Row) -> str:
    if row.delta is None:
        return "—"
    return " / ".join(number(row.delta.get(m), signed=True) + ("*" if row.flagged.get(m) else "") for m in row.metric_names)


def _missing_line(t: Trial) -> str:
    cause = f": {t.cause}" if t.cause else ""
    return _md(f"- {label(t.setting.key, t.seed)}: {t.state}{cause} ({t.path})")


def _other_metrics(r: Row, t: Trial) -> bool:
    """A conflict because the trial measured other metrics than its setting (``conflicts.mark_other_metrics``),
    not because another folder holds another result for its seed."""
    return t.metric_names != r.metric_names and not any(o.seed == t.seed for o in r.conflicts if o is not t)


def _conflict_lines(rows: list[Row]) -> list[str]:
    """One line per setting and seed with different results: each result and the folder holding it."""
    lines = []
    for r in rows:
        for seed in sorted({t.seed for t in r.conflicts if not _other_metrics(r, t)}):
            copies = "; ".join(f"{triple(t.metrics)} ({t.path})" for t in r.conflicts if t.seed == seed)
            lines.append(_md(f"- {label(r.key, seed)}: {copies}"))
    return lines


def _other_metrics_lines(rows: list[Row]) -> list[str]:
    """One line per finished trial that measured other metrics than its setting's other trials."""
    return [_md(f"- {label(r.key, t.seed)}: {'/'.join(t.metric_names)} {triple(t.metrics)} ({t.path}); the setting's "
                f"other trials measured {'/'.join(r.metric_names)}") for r in rows for t in r.conflicts
            if _other_metrics(r, t)]  # fmt: skip


def _flag_notes(rows: list[Row]) -> list[str]:
    """The legend of ``*`` wherever a Δ is shown, and the settings whose published numbers state no std."""
    compared = [r for r in rows if r.delta is not None]
    if not compared:
        return []
    untested = [r.key for r in compared if not (r.published or {}).get("std")]
    return ["", FLAG_NOTE] + ([f"Not tested (the published numbers state no std): {', '.join(untested)}."]
                              if untested else [])  # fmt: skip


def caveat_lines(rows: list[Row]) -> list[str]:
    """The published numbers that were trained otherwise than this recipe, each with its ``caveat`` (from
    ``conf/pretrain``: e.g. another detectron2's optimizer groups), one line per setting."""
    found = [f"{r.key}: {(r.published or {}).get('caveat')}" for r in rows if (r.published or {}).get("caveat")]
    return ["Published numbers trained otherwise than this recipe:", *(f"- {line}" for line in found)] if found else []


def p_text(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "p —"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _table(names: tuple[str, ...], rows: list[Row]) -> list[str]:
    """One Markdown table of rows that measured ``names``: a column per metric (the first says what the cells
    hold), the trials and the published numbers in the seed's slash notation over the same names."""
    head = [f"{names[0]} mean ± std [95% CI]", *names[1:]]
    out = [f"| setting | n | {' | '.join(head)} | trials ({'/'.join(names)}) | published | Δ ours − published "
           "| weights |", "|---|---|" + "---|" * len(names) + "---|---|---|---|"]  # fmt: skip
    for r in rows:
        trials = "; ".join(triple(t.metrics, names) for t in r.done) or "—"
        published = triple(r.published, names) if r.published else "—"
        out.append(f"| {_md(r.key)} | {r.n}/{r.expected} | {' | '.join(mean_cell(r, m) for m in names)} | {trials} "
                   f"| {published} | {delta_cell(r)} | {_md(r.setting.weights or '?')} |")  # fmt: skip
    return out


def comparison_heading(comparisons: Sequence[Comparison]) -> str:
    """What the comparison tables hold: each method against its group's baseline (named, or the automatic
    choice), or every pair."""
    mode = comparisons.mode if isinstance(comparisons, Comparisons) else "all"
    if mode == "all":
        return "Comparisons (difference of means, Welch's t-test, two-sided), every pair of methods of a group, b − a:"
    chosen = comparisons.baseline or f"{', else '.join(BASELINES)}"
    return (f"Comparisons (difference of means, Welch's t-test, two-sided), each method against its group's baseline "
            f"({chosen}), method − baseline:")  # fmt: skip


def left_out_lines(c: Comparisons) -> list[str]:
    """What baseline mode did not compare, one line per reason, each naming how to choose otherwise."""
    choose = "choose the baseline with `--baseline NAME` (`collect.baseline=NAME` in a launch), or compare every pair " \
             "with `--compare all` (`collect.compare=all`)"  # fmt: skip
    wanted = c.baseline or " / ".join(BASELINES)
    lines = []
    if c.no_baseline:
        lines.append(f"No baseline ({wanted}: no finished trial) in {len(c.no_baseline)} group(s), not compared: "
                     f"{', '.join(c.no_baseline)}; {choose}.")  # fmt: skip
    for group, weights in c.ambiguous.items():
        lines.append(f"Not compared: {group}: its baseline was measured with {len(weights)} checkpoints (w-"
                     f"{', w-'.join(weights)}); keep one checkpoint's trials under the folders given, or {choose}.")  # fmt: skip
    if c.other_metrics:
        lines.append(f"Not compared (other metrics than their group's baseline): {', '.join(c.other_metrics)}.")
    return lines


def _comparison_lines(comparisons: Sequence[Comparison]) -> list[str]:
    """The comparisons section: what it holds, one table per list of metric names, what was left out."""
    left_out = left_out_lines(comparisons) if isinstance(comparisons, Comparisons) else []
    if not comparisons and not left_out:
        return []
    out = ["", comparison_heading(comparisons)]
    against = "b − a" if getattr(comparisons, "mode", "all") == "all" else "method − baseline"
    by_names: dict[tuple[str, ...], list[Comparison]] = {}
    for c in comparisons:
        by_names.setdefault(c.metric_names, []).append(c)
    for names, members in by_names.items():
        out += ["", f"| group | {against} | {' | '.join(f'Δ{m}' for m in names)} |", "|---|---|" + "---|" * len(names)]
        for c in members:
            cells = " | ".join(f"{number(c.diff[m], signed=True)} ({p_text(c.p[m])})" for m in names)
            out.append(f"| {_md(c.group)} | {_md(c.b)} − {_md(c.a)} | {cells} |")
    return out + ([""] + left_out if left_out else [])


def markdown(rows: list[Row], comparisons: Sequence[Comparison]) -> str:
    """The tables (one per list of metric names, see :func:`metric_tables`), the trials still missing (by
    name), the conflicts, and the comparisons (one table per list of metric names; with :class:`Comparisons`,
    what they hold and what baseline mode left out)."""
    out: list[str] = []
    for names, members in metric_tables(rows):
        out += ([""] if out else []) + _table(names, members)
    out += _flag_notes(rows)
    caveats = caveat_lines(rows)
    out += ([""] + [_md(line) for line in caveats]) if caveats else []
    missing = [t for r in rows for t in r.missing]
    if missing:
        out += ["", f"Not finished ({len(missing)}):", *map(_missing_line, missing)]
    conflicts = _conflict_lines(rows)
    if conflicts:
        out += ["", f"Conflicts ({len(conflicts)}): one setting and seed, different results in different folders; "
                "counted in neither n nor the statistics until all but one are removed:", *conflicts]  # fmt: skip
    other = _other_metrics_lines(rows)
    if other:
        out += ["", f"Other metrics ({len(other)}): a finished trial measured other metrics than the rest of its "
                "setting; counted in neither n nor the statistics until it or they are removed:", *other]  # fmt: skip
    out += _comparison_lines(comparisons)
    return "\n".join(out) + "\n"


def tidy_columns(names: Sequence[str], others: Sequence[str] = ()) -> list[str]:
    """The CSV's columns: a column per metric name, then ``published_<name>`` of each (VOC: AP50, AP, AP75), then
    the other numbers results hold (COCO: box_APl, box_APm, box_APs, mask_APl, ...)."""
    return ["setting", "benchmark", "backbone", "pretrain", "overrides", "weights", "seed", "state", *names,
            *(f"published_{m}" for m in names), *others, "wall_time_s", "max_iter", "world_size", "cause",
            "path"]  # fmt: skip


def other_names(rows: list[Row]) -> tuple[str, ...]:
    """Every other number any trial's result holds (:attr:`Trial.other_metrics`), each once, sorted, none that is a
    metric name of the report."""
    shown = set(all_names(rows))
    return tuple(sorted({m for r in rows for t in r.done + r.conflicts for m in t.other_metrics} - shown))


TIDY = tidy_columns(VOC_METRICS)  # the columns of a VOC-only report


def tidy_csv(rows: list[Row]) -> str:
    """One row per trial, finished or not (empty cells where there is no value): ready for pandas. A result in
    conflict with another copy of its trial has state ``conflict`` and names the other folder as its cause.
    One column per metric of any row (:func:`all_names`), blank where a trial did not measure it."""
    names, others = all_names(rows), other_names(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=tidy_columns(names, others), lineterminator="\n")
    w.writeheader()
    for r in rows:
        for t in sorted(r.done + r.missing + r.conflicts, key=lambda t: (t.seed is None, t.seed or 0, str(t.path))):
            run = t.record.get("run", {})
            w.writerow({
                "setting": r.key, "benchmark": r.setting.benchmark, "backbone": r.setting.backbone,
                "pretrain": r.setting.pretrain, "overrides": r.setting.overrides, "weights": r.setting.weights,
                "seed": "" if t.seed is None else t.seed, "state": "conflict" if t.conflict else t.state,
                **{m: (t.metrics or {}).get(m, "") for m in names},
                **{f"published_{m}": (r.published or {}).get(m, "") for m in names},
                **{m: t.other_metrics.get(m, "") for m in others},
                "wall_time_s": run.get("wall_time_s", ""), "max_iter": run.get("max_iter", ""),
                "world_size": run.get("world_size", ""), "cause": t.cause, "path": str(t.path),
            })  # fmt: skip
    return buf.getvalue()


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 6)


def comparison_record(comparisons: Sequence[Comparison]) -> dict:
    """How the comparisons were chosen, for programs: ``mode``, ``baseline`` as asked (None: automatic), each
    group's baseline, and what baseline mode left out (``no_baseline``: groups; ``ambiguous``: group -> the
    weights ids of its baseline's checkpoints; ``other_metrics``: setting keys)."""
    c = comparisons if isinstance(comparisons, Comparisons) else Comparisons(tuple(comparisons), mode="all")
    return {"mode": c.mode, "baseline": c.baseline, "baselines": c.baselines, "no_baseline": list(c.no_baseline),
            "ambiguous": {g: list(w) for g, w in c.ambiguous.items()}, "other_metrics": list(c.other_metrics)}  # fmt: skip


def to_json(rows: list[Row], comparisons: Sequence[Comparison]) -> str:
    """Everything, for programs. Per setting, ``metric_names`` (what it measured, in order) and per metric
    of those: ``published_p`` is the p-value of the ``*`` test and ``published_differs`` its verdict (None
    where nothing is tested, see ``Row.published_p``). Each comparison names its metrics too (``b − a``; against
    a baseline, ``a`` is the baseline), and ``compared`` says how they were chosen (:func:`comparison_record`)."""
    settings = []
    for r in rows:
        metrics = {}
        p, spread = r.published_p, (r.published or {}).get("std") or {}
        for m in r.metric_names:
            s = r.stats.get(m)
            metrics[m] = {
                "mean": _num(s.mean) if s else None, "std": _num(s.std) if s else None,
                "ci95": _num(s.ci95) if s else None, "low": _num(s.low) if s else None,
                "high": _num(s.high) if s else None,
                "published": r.published.get(m) if r.published else None,
                "published_std": spread.get(m), "published_n": r.published.get("n") if m in spread else None,
                "delta": _num(r.delta.get(m)) if r.delta else None,
                "published_p": _num(p.get(m)),
                "published_differs": r.flagged[m] if p.get(m) is not None else None,
            }  # fmt: skip
        settings.append({
            "key": r.key, "benchmark": r.setting.benchmark, "backbone": r.setting.backbone,
            "pretrain": r.setting.pretrain, "overrides": r.setting.overrides, "weights": r.setting.weights or None,
            "label": r.label,
            "n": r.n, "expected": r.expected, "metric_names": list(r.metric_names), "metrics": metrics,
            "other_metrics": {m: {"mean": _num(s.mean), "std": _num(s.std), "ci95": _num(s.ci95), "low": _num(s.low),
                                  "high": _num(s.high)} for m, s in r.other_stats().items()},
            "trials": [{"seed": t.seed, **{m: _num(v) for m, v in (t.metrics | t.other_metrics).items()},
                        "path": str(t.path)} for t in r.done],
            "missing": [{"seed": t.seed, "state": t.state, "cause": t.cause, "path": str(t.path)} for t in r.missing],
            "conflicts": [{"seed": t.seed, "metric_names": list(t.metric_names), **t.metrics, "path": str(t.path),
                           "differs_from": [str(o) for o in t.conflict]} for t in r.conflicts],
        })  # fmt: skip
    comps = [{"group": c.group, "a": c.a, "b": c.b, "metric_names": list(c.metric_names),
              "diff": {m: _num(c.diff[m]) for m in c.metric_names},
              "p_welch": {m: _num(c.p[m]) for m in c.metric_names}} for c in comparisons]  # fmt: skip
    return json.dumps({"settings": settings, "comparisons": comps, "compared": comparison_record(comparisons)},
                      indent=2) + "\n"


# What CommonMark (and so GitHub's Markdown) takes for raw HTML or an autolink where a ``<`` starts it: an open tag
# (a name, then only well-formed attributes), a closing tag, a comment, processing instruction, declaration or
# CDATA, ``<scheme:...>`` and ``<user@host>``. Any other ``<`` (``<class 'int'>``, ``a < b``) is shown as it is.
_TAG_NAME = r"[A-Za-z][A-Za-z0-9-]*"
_ATTRIBUTE = r"""\s+[A-Za-z_:][A-Za-z0-9_.:-]*(?:\s*=\s*(?:[^\s"'=<>`]+|'[^']*'|"[^"]*"))?"""
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OPENS_MARKUP = re.compile(
    rf"<(?=(?:{_TAG_NAME}(?:{_ATTRIBUTE})*\s*/?>|/{_TAG_NAME}\s*>|[!?]|[A-Za-z][A-Za-z0-9+.-]{{1,31}}:[^\s<>]*>"
    rf"|[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_HOST}(?:\.{_HOST})*>))"
)


def _md(text: object) -> str:
    """Text from result files (labels, names, a failure's cause) as one line of Markdown, a table cell or a list
    item, showing the text as it is in the console and in ``table.md``: ``|`` would end the cell and a newline the
    row, so ``|`` is escaped and newlines become spaces. Only a ``<`` that a Markdown viewer would take for HTML
    or a link (``<script>``, ``</b>``, ``<!--``, ``<https://...>``) is written ``&lt;``, so the text, not markup,
    is shown; any other ``<`` (an exception's ``<class 'int'>``) stays as it is. The HTML page escapes on its own
    (``xfer.report.page``)."""
    return _OPENS_MARKUP.sub("&lt;", str(text).replace("\n", " ")).replace("|", r"\|")
