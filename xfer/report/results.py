"""Collect: trial folders -> settings with statistics, comparisons, and the trials still missing.

Reads only what the earlier stages wrote (``result.json``, ``failure.json``, ``trial.yaml``), so it runs
at any time, on any set of sweep folders (``python -m xfer collect DIR [DIR ...]``), while a sweep still
runs or long after. Per setting: n finished of n expected, mean, sample std and 95% Student-t interval of
each metric its trials measured (their ``metric_names``: AP50/AP/AP75 for VOC, a COCO benchmark names its
own), the per-trial values, the published numbers with Δ = ours − published for the metrics they have
(flagged when Welch's test of our trials against the published mean, as a mean of the seed's n trials with
its stated std, gives p < 0.05), and the failed or unfinished trials by name, never dropped silently. Each
trial counts once however the folders given overlap; two different results for one trial (same setting and
seed) are a conflict, named by path and left out of the statistics, and so is a finished trial that measured
other metrics than the rest of its setting. Methods on the same benchmark and backbone (and the same other
overrides) that measured the same metrics are compared with Welch's t-test (``xfer.report.comparisons``:
each against its group's baseline by default). Rendering lives in ``xfer.report.formats``, plots in
``xfer.report.plots``.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import yaml

from xfer import benchmarks
from xfer.report import stats
from xfer.report.conflicts import one_per_identity, seed_order
from xfer.store import handover, identity, state
from xfer.store.files import FAILURE, JOB_CONFIG, RESULT, VOC_METRICS, measured
from xfer.store.records import Setting, Trial, published_record
from xfer.trial import recipe

ALPHA = 0.05  # a metric is flagged when the published mean differs from ours at this level


@dataclass(frozen=True)
class Row:
    """One setting of the table. ``metric_names``: what its finished trials measured, in their order (all
    agree, see ``xfer.report.conflicts.mark_other_metrics``); a setting without a finished trial takes those of its
    benchmark's other settings, else those its trials will measure, else VOC's (:func:`summarize`). Left out,
    they are the keys of ``stats``."""

    setting: Setting
    label: str
    expected: int
    done: list[Trial]  # sorted by seed
    missing: list[Trial]  # failed, unfinished or unreadable
    stats: dict[str, stats.Summary]  # per metric; empty when no trial finished
    published: dict | None
    conflicts: list[Trial] = field(default_factory=list)  # finished, but another copy says otherwise: not counted
    metric_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.metric_names:
            object.__setattr__(self, "metric_names", tuple(self.stats))

    def other_stats(self) -> dict[str, stats.Summary]:
        """Mean, std and interval over the finished trials of each other number all of them hold
        (:attr:`Trial.other_metrics`)."""
        if not self.done:
            return {}
        common = [m for m in self.done[0].other_metrics if all(m in t.other_metrics for t in self.done)]
        return {m: stats.summarize([t.other_metrics[m] for t in self.done]) for m in common}

    def published_value(self, m: str) -> float | None:
        """The published value of metric ``m``; None when the published record has none for it."""
        value = (self.published or {}).get(m)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def key(self) -> str:
        return self.setting.key

    @property
    def n(self) -> int:
        return len(self.done)

    @property
    def delta(self) -> dict[str, float] | None:
        """Ours − published, per metric the published record has; None when it has none of ours (or we have no
        finished trial)."""
        if not self.stats:
            return None
        out = {m: self.stats[m].mean - self.published_value(m) for m in self.metric_names if self.published_value(m) is not None}
        return out or None

    @property
    def published_p(self) -> dict[str, float | None]:
        """Per metric, Welch's two-sided p that our trials and the published mean share a mean, the published
        mean taken as a mean of its ``n`` trials with its stated ``std``. Empty without published numbers or
        without a finished trial; None for a metric that cannot be tested (no published value or stated std,
        n < 2)."""
        if not self.published or not self.stats:
            return {}
        spread, n = self.published.get("std") or {}, self.published.get("n")
        return {m: stats.welch_p_from_stats(self.stats[m], self.published_value(m), float(spread[m]), int(n))
                if m in spread and n and self.published_value(m) is not None else None
                for m in self.metric_names}  # fmt: skip

    @property
    def flagged(self) -> dict[str, bool]:
        """Metrics where ours and the published mean differ beyond both sides' noise (p < :data:`ALPHA`)."""
        return {m: p is not None and p < ALPHA for m, p in self.published_p.items()}


def _from_job(folder: Path) -> dict:
    """The parts of the trial's hand-over (``trial.yaml``) collect needs: setting, seed, published, label and
    expected trials."""
    job = handover.read(folder)
    cfg = job.cfg
    bench, backbone = cfg["benchmark"]["name"], cfg["backbone"]["name"]
    published = ((cfg["pretrain"].get("published") or {}).get(bench) or {}).get(backbone)
    weights = identity.weights_id(cfg["pretrain"].get("sha256"))
    return {
        "setting": Setting(bench, backbone, cfg["pretrain"]["name"], job.overrides, weights),
        "seed": cfg["seed"],
        "published": published_record(published, cfg["benchmark"].get("published_std"), cfg["benchmark"].get("trials")),
        "label": cfg["pretrain"].get("label", ""),
        "expected": int(cfg["benchmark"].get("trials") or 0),
        "planned": _planned(cfg),
    }


def _planned(cfg: dict) -> tuple[str, ...]:
    """What the hand-over's trial will measure, known before it runs: its format's metric names for what its
    recipe predicts (COCO: masks only where ``MODEL.MASK_ON``, as the trial's ``tasks`` decides); () where it
    cannot say (an unknown format): the row then takes its benchmark's or VOC's names. Read from the plain
    ``trial.yaml`` (microseconds; a collect may read thousands of unfinished trials)."""
    try:
        module = benchmarks.of(str((cfg.get("benchmark") or {}).get("format") or benchmarks.DEFAULT))
    except ValueError:
        return ()
    predicts = SimpleNamespace(MODEL=SimpleNamespace(MASK_ON=bool(recipe.value(cfg, "MODEL.MASK_ON", False))))
    return tuple(module.metric_names(module.tasks(predicts)))


def _setting_of(record: dict) -> Setting:
    s = record["setting"]
    weights = s.get("weights") or identity.weights_id((record.get("weights") or {}).get("sha256"))
    return Setting(s["benchmark"], s["backbone"], s["pretrain"], s.get("overrides") or "", weights)


def _job_or_error(folder: Path) -> tuple[dict | None, str]:
    job = folder / JOB_CONFIG
    if not job.exists():
        return None, f"no {RESULT} or {JOB_CONFIG}"
    try:
        return _from_job(folder), ""
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        return None, f"unreadable {JOB_CONFIG}: {type(e).__name__}: {e}"


def _unknown_setting(folder: Path) -> Setting:
    """A trial that describes nothing: named after its folders, ``<setting>/w-<weights id>/seed<N>``."""
    parent = folder.parent
    if parent.name.startswith("w-"):
        return Setting("?", "?", parent.parent.name, weights=parent.name[2:])
    return Setting("?", "?", parent.name)


def read_trial(folder: Path, launched: dict | None | object = state.FROM_FOLDER) -> Trial:
    """The trial in ``folder``, in the state ``xfer.store.state`` gives it (the launcher and status see the
    same): a sound result of the identity its folder was last launched for is ``done``; of another identity
    ``stale`` (with what changed); ``damaged`` and ``unreadable`` name the file and why. ``result.json`` alone
    describes a finished trial; ``trial.yaml`` is read only for the others."""
    s = state.of(folder, launched)
    if s.state in state.FINISHED:
        r = s.result or {}
        common = {"published": r.get("published"), "label": r["setting"].get("label", ""),
                  "expected": int(r.get("trials_expected") or 0), "record": r}  # fmt: skip
        metrics = measured(r) if s.state == "done" else None
        return Trial(_setting_of(r), r.get("seed"), s.state, folder, metrics, cause=s.cause, **common)
    known, error = _job_or_error(folder)
    if known is None:
        return Trial(_unknown_setting(folder), None, s.state if s.cause else "unreadable", folder,
                     cause=s.cause or error)  # fmt: skip
    extra = {k: known[k] for k in ("published", "label", "expected", "planned")}
    return Trial(known["setting"], known["seed"], s.state, folder, cause=s.cause, **extra)


TRIAL_MARKS = frozenset({RESULT, FAILURE, JOB_CONFIG})  # a folder holding any of them is a trial's


def trial_folders(dirs: Iterable[Path]) -> list[Path]:
    """Folders below ``dirs`` holding a trial, each once however the ``dirs`` overlap (``outputs`` and
    ``outputs/voc0712_c4_24k``, a folder and a link to it): the first path that reaches it names it. Links to
    folders are followed (a setting linked in from another sweep), each real folder walked once (a link to an
    ancestor loops no more). Caches, SLURM logs and hidden folders are skipped."""
    found: dict[Path, Path] = {}  # real path -> as found
    seen: set[Path] = set()
    for d in dirs:
        real = Path(d).resolve()
        if real not in seen:
            seen.add(real)
            _walk(Path(d), real, seen, found)
    return list(found.values())


def _walk(folder: Path, real: Path, seen: set[Path], found: dict[Path, Path]) -> None:
    """:func:`trial_folders` below one folder; ``real`` is its real path, worked out only where a link was
    crossed (a sweep of 2,000 trials is walked without resolving each folder)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:  # gone meanwhile, or unreadable: nothing of it to read
        return
    folders = [e for e in entries if _is_dir(e)]
    if TRIAL_MARKS.intersection(e.name for e in entries if e not in folders):  # a dangling link counts (unmounted)
        found.setdefault(real, folder)
        return  # a trial holds no trials
    for e in folders:
        if e.name.startswith(("_", ".")):
            continue
        below = Path(e.path).resolve() if e.is_symlink() else real / e.name
        if below not in seen:
            seen.add(below)
            _walk(Path(e.path), below, seen, found)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def read_folders(dirs: Iterable[Path]) -> list[Trial]:
    """The trial in every folder under ``dirs``, each folder once, copies of one trial in other folders too."""
    launched: dict[Path, dict | None] = {}  # each weights folder's identity.json, read once for its seeds
    found = []
    for f in trial_folders(dirs):
        if f.parent not in launched:
            launched[f.parent] = state.expected(f)
        found.append(read_trial(f, launched[f.parent]))
    return found


def read_trials(dirs: Iterable[Path]) -> list[Trial]:
    """Every trial under ``dirs``, each folder once and each setting and seed once (conflicts marked)."""
    return one_per_identity(read_folders(dirs))


def summarize(trials: list[Trial]) -> list[Row]:
    """One row per setting, sorted by setting key. Corrupt trials without a known setting get their own.
    Each setting and seed counts once (:func:`one_per_identity`); conflicting results count for neither.
    A row's metric names are its finished trials'; a row without any takes the names most finished rows of its
    benchmark have, else those its trials' hand-overs say they will measure (a COCO setting whose trials all
    failed still shows box and mask AP columns), else those most finished rows have (an unreadable folder's "?"
    benchmark has no rows of its own), else VOC's (:data:`files.VOC_METRICS`): nothing on disk says otherwise,
    and a result.json without names measured those."""
    groups: dict[Setting, list[Trial]] = defaultdict(list)
    for t in one_per_identity(trials):
        groups[t.setting].append(t)
    rows = []
    for setting in sorted(groups, key=lambda s: (s.key, s.weights)):
        members = sorted(groups[setting], key=seed_order)
        conflicts = [t for t in members if t.conflict]
        done = [t for t in members if t.state == "done" and not t.conflict]
        missing = [t for t in members if t.state != "done"]
        values = {m: [t.metrics[m] for t in done] for m in (done[0].metric_names if done else ())}
        first = (done or members)[0]
        rows.append(Row(
            setting=setting,
            label=first.label,
            expected=max([len(done) + len(missing) + len({t.seed for t in conflicts})] + [t.expected for t in members]),
            done=done,
            missing=missing,
            stats={m: stats.summarize(v) for m, v in values.items()} if done else {},
            published=next((t.published for t in members if t.published), None),
            conflicts=conflicts,
        ))  # fmt: skip
    return _names_for_unfinished(rows)


def _names_for_unfinished(rows: list[Row]) -> list[Row]:
    """Rows without a finished trial get the metric names most finished rows of their benchmark have, else what
    their trials' hand-overs say they will measure, else most finished rows' (the first row's on a tie), else
    VOC's: each row has a table to sit in (see :func:`summarize`); its cells are "—" whichever it is."""
    named: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        if r.n:
            named[r.setting.benchmark][r.metric_names] += 1
    overall = sum(named.values(), Counter())
    fallback = overall.most_common(1)[0][0] if overall else VOC_METRICS

    def names(r: Row) -> tuple[str, ...]:
        mine = named.get(r.setting.benchmark)
        planned = next((t.planned for t in r.missing if t.planned), ())
        return mine.most_common(1)[0][0] if mine else planned or fallback

    return [r if r.n else replace(r, metric_names=names(r)) for r in rows]
