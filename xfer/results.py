"""Collect: trial folders -> settings with statistics, comparisons, and the trials still missing.

Reads only what the earlier stages wrote (``result.json``, ``failure.json``, ``trial.yaml``), so it runs
at any time, on any set of sweep folders (``python -m xfer collect DIR [DIR ...]``), while a sweep still
runs or long after. Per setting: n finished of n expected, mean, sample std and 95% Student-t interval of
AP50/AP/AP75, the per-trial values, the published numbers with Δ = ours − published (flagged when Welch's
test of our trials against the published mean, as a mean of the seed's n trials with its stated std, gives
p < 0.05), and the failed or unfinished trials by name, never dropped silently. Each trial counts once
however the folders given overlap; two different results for one trial (same setting and seed) are a
conflict, named by path and left out of the statistics. Methods on the same benchmark and backbone (and the
same other overrides) are compared pairwise with Welch's t-test. Rendering lives in ``xfer.formats``, plots
in ``xfer.plots``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from xfer import identity, stats
from xfer.files import FAILURE, JOB_CONFIG, METRICS, RESULT

STATES = ("done", "failed", "unfinished", "corrupt")
ALPHA = 0.05  # a metric is flagged when the published mean differs from ours at this level


@dataclass(frozen=True)
class Setting:
    """What a trial measures; trials that differ only by seed share it and are averaged. ``weights`` is
    the short content hash of the checkpoint (``xfer.identity``; "" for results of an older xfer): two
    checkpoints under one pretrain name are two settings, never pooled."""

    benchmark: str
    backbone: str
    pretrain: str
    overrides: str = ""
    weights: str = ""

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.backbone}_{self.pretrain}" + (f",{self.overrides}" if self.overrides else "")

    @property
    def group(self) -> str:
        """Settings in one group differ only by pretrain and weights: their methods can be compared."""
        return f"{self.benchmark}/{self.backbone}" + (f",{self.overrides}" if self.overrides else "")


@dataclass(frozen=True)
class Trial:
    """One trial folder as collect sees it; ``state`` is one of :data:`STATES`."""

    setting: Setting
    seed: int | None
    state: str
    path: Path
    metrics: dict | None = None
    published: dict | None = None
    label: str = ""  # the pretrain as the seed's README names it, e.g. "ImageNet-1M, DenseCL, 200ep"
    expected: int = 0  # the benchmark's trials per setting
    cause: str = ""
    record: dict = field(default_factory=dict)  # result.json, for the formats that show more
    conflict: tuple[Path, ...] = ()  # other folders holding a different result for the same setting and seed


@dataclass(frozen=True)
class Row:
    """One setting of the table."""

    setting: Setting
    label: str
    expected: int
    done: list[Trial]  # sorted by seed
    missing: list[Trial]  # failed, unfinished or unreadable
    stats: dict[str, stats.Summary]  # per metric; empty when no trial finished
    published: dict | None
    conflicts: list[Trial] = field(default_factory=list)  # finished, but another copy says otherwise: not counted

    @property
    def key(self) -> str:
        return self.setting.key

    @property
    def n(self) -> int:
        return len(self.done)

    @property
    def delta(self) -> dict[str, float] | None:
        if not self.published or not self.stats:
            return None
        return {m: self.stats[m].mean - float(self.published[m]) for m in METRICS}

    @property
    def published_p(self) -> dict[str, float | None]:
        """Per metric, Welch's two-sided p that our trials and the published mean share a mean, the published
        mean taken as a mean of its ``n`` trials with its stated ``std``. Empty without published numbers or
        without a finished trial; None for a metric that cannot be tested (no stated std, n < 2)."""
        if not self.published or not self.stats:
            return {}
        spread, n = self.published.get("std") or {}, self.published.get("n")
        return {m: stats.welch_p_from_stats(self.stats[m], float(self.published[m]), float(spread[m]), int(n))
                if m in spread and n else None for m in METRICS}  # fmt: skip

    @property
    def flagged(self) -> dict[str, bool]:
        """Metrics where ours and the published mean differ beyond both sides' noise (p < :data:`ALPHA`)."""
        return {m: p is not None and p < ALPHA for m, p in self.published_p.items()}


@dataclass(frozen=True)
class Comparison:
    """``b − a`` for two methods of one group: difference of means and Welch's p-value per metric."""

    group: str
    a: str
    b: str
    diff: dict[str, float]
    p: dict[str, float | None]


def _load(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def published_record(numbers: dict | None, std: dict | None, trials: int | None) -> dict | None:
    """The published numbers as a trial records them: the seed's means (one key per metric, where the formats
    read them, and whatever else the pretrain lists) and, where the benchmark states it, their spread: ``std``
    per metric and ``n``, the trials each mean averages. Without ``std`` nothing is tested against them."""
    if numbers is None:
        return None
    out = dict(numbers)
    if std and trials:
        out["std"] = {m: float(std[m]) for m in METRICS if std.get(m) is not None}
        out["n"] = int(trials)
    return out


def _from_job(path: Path) -> dict:
    """The parts of ``trial.yaml`` collect needs (setting, seed, published, label, expected trials)."""
    with open(path) as f:
        job = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml when there
    cfg = job["cfg"]
    bench, backbone = cfg["benchmark"]["name"], cfg["backbone"]["name"]
    published = ((cfg["pretrain"].get("published") or {}).get(bench) or {}).get(backbone)
    weights = identity.weights_id(cfg["pretrain"].get("sha256"))
    return {
        "setting": Setting(bench, backbone, cfg["pretrain"]["name"], job.get("overrides") or "", weights),
        "seed": cfg["seed"],
        "published": published_record(published, cfg["benchmark"].get("published_std"), cfg["benchmark"].get("trials")),
        "label": cfg["pretrain"].get("label", ""),
        "expected": int(cfg["benchmark"].get("trials") or 0),
    }


def _setting_of(record: dict) -> Setting:
    s = record["setting"]
    weights = s.get("weights") or identity.weights_id((record.get("weights") or {}).get("sha256"))
    return Setting(s["benchmark"], s["backbone"], s["pretrain"], s.get("overrides") or "", weights)


def _job_or_error(folder: Path) -> tuple[dict | None, str]:
    job = folder / JOB_CONFIG
    if not job.exists():
        return None, f"no {RESULT} or {JOB_CONFIG}"
    try:
        return _from_job(job), ""
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        return None, f"unreadable {JOB_CONFIG}: {type(e).__name__}: {e}"


def _unknown_setting(folder: Path) -> Setting:
    """A trial that describes nothing: named after its folders, ``<setting>/w-<weights id>/seed<N>``."""
    parent = folder.parent
    if parent.name.startswith("w-"):
        return Setting("?", "?", parent.parent.name, weights=parent.name[2:])
    return Setting("?", "?", parent.name)


def read_trial(folder: Path) -> Trial:
    """The trial in ``folder``; a file that cannot be read makes it ``corrupt``, with the reason.
    ``result.json`` alone describes a finished trial; ``trial.yaml`` is read only for the others."""
    unknown = _unknown_setting(folder)
    if (folder / RESULT).exists():
        try:
            r = _load(folder / RESULT)
            metrics = {m: float(r["metrics"][m]) for m in METRICS}
            setting = _setting_of(r)
        except (OSError, ValueError, KeyError, TypeError) as e:
            known, _ = _job_or_error(folder)
            base = known or {"setting": unknown, "seed": None}
            return Trial(base["setting"], base["seed"], "corrupt", folder, cause=f"unreadable {RESULT}: {type(e).__name__}: {e}")
        return Trial(setting, r.get("seed"), "done", folder, metrics, r.get("published"), r["setting"].get("label", ""),
                     int(r.get("trials_expected") or 0), record=r)  # fmt: skip
    known, error = _job_or_error(folder)
    if known is None:
        return Trial(unknown, None, "corrupt", folder, cause=error)
    extra = {k: known[k] for k in ("published", "label", "expected")}
    if (folder / FAILURE).exists():
        try:
            cause = _load(folder / FAILURE).get("cause", "")
        except (OSError, ValueError) as e:
            cause = f"unreadable {FAILURE}: {e}"
        return Trial(known["setting"], known["seed"], "failed", folder, cause=cause, **extra)
    return Trial(known["setting"], known["seed"], "unfinished", folder, **extra)


def trial_folders(dirs: Iterable[Path]) -> list[Path]:
    """Folders below ``dirs`` holding a trial, each once however the ``dirs`` overlap (``outputs`` and
    ``outputs/voc0712_c4_24k``, a folder and a link to it): the first path that reaches it names it.
    Caches, SLURM logs and hidden folders are skipped."""
    marks = {RESULT, FAILURE, JOB_CONFIG}
    found: dict[Path, Path] = {}  # resolved -> as found
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            subdirs[:] = sorted(s for s in subdirs if not s.startswith(("_", ".")))
            if marks.intersection(files):
                found.setdefault(Path(root).resolve(), Path(root))
                subdirs[:] = []  # a trial holds no trials
    return list(found.values())


def _measured(t: Trial) -> tuple[str, ...]:
    """What two copies of a trial must share to be the same result (repr: exact, and NaN equals NaN)."""
    return tuple(repr(t.metrics[m]) for m in METRICS)


def _one_per_identity(copies: list[Trial]) -> list[Trial]:
    """The folders of one setting and seed (copies of a sweep, a rerun elsewhere) as collect counts them:
    one finished result however many identical copies hold it (copies without a readable result add
    nothing); two or more different results are each returned with ``conflict`` naming the others, and
    counted by none; with no result, the copy that says most (corrupt, then failed, then unfinished)."""
    done: dict[tuple[str, ...], Trial] = {}
    for t in copies:
        if t.state == "done":
            done.setdefault(_measured(t), t)
    if len(done) == 1:
        return list(done.values())
    if not done:
        return [min(copies, key=lambda t: ("corrupt", "failed", "unfinished").index(t.state))]
    firsts = list(done.values())
    out = []
    for t in firsts:
        others = tuple(o.path for o in firsts if o is not t)
        cause = f"conflict: a different result for this trial at {', '.join(map(str, others))}"
        out.append(replace(t, conflict=others, cause=cause))
    return out


def one_per_identity(trials: list[Trial]) -> list[Trial]:
    """Each trial identity (setting and seed) once, in the order first found; see :func:`_one_per_identity`.
    Trials whose identity is unknown (an unreadable folder) are all kept."""
    groups: dict[object, list[Trial]] = {}
    for i, t in enumerate(trials):
        known = t.seed is not None and t.setting.benchmark != "?"
        groups.setdefault((t.setting, t.seed) if known else i, []).append(t)
    return [t for copies in groups.values() for t in _one_per_identity(copies)]


def read_trials(dirs: Iterable[Path]) -> list[Trial]:
    """Every trial under ``dirs``, each folder once and each setting and seed once (conflicts marked)."""
    return one_per_identity([read_trial(f) for f in trial_folders(dirs)])


def _seed_order(t: Trial) -> tuple:
    return (t.seed is None, t.seed if t.seed is not None else 0, str(t.path))


def summarize(trials: list[Trial]) -> list[Row]:
    """One row per setting, sorted by setting key. Corrupt trials without a known setting get their own.
    Each setting and seed counts once (:func:`one_per_identity`); conflicting results count for neither."""
    groups: dict[Setting, list[Trial]] = defaultdict(list)
    for t in one_per_identity(trials):
        groups[t.setting].append(t)
    rows = []
    for setting in sorted(groups, key=lambda s: (s.key, s.weights)):
        members = sorted(groups[setting], key=_seed_order)
        conflicts = [t for t in members if t.conflict]
        done = [t for t in members if t.state == "done" and not t.conflict]
        missing = [t for t in members if t.state != "done"]
        values = {m: [t.metrics[m] for t in done] for m in METRICS}
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
    return rows


def compare(rows: list[Row]) -> list[Comparison]:
    """Every pair of methods within a group (same benchmark, backbone and other overrides), as ``b − a``.

    A row without weights (random init, weights id ``identity.NO_WEIGHTS``) is always ``a``: the baseline, so
    its comparisons read "pretrained − scratch" (``densecl − scratch``), the gain a paper reports. Other
    pairs are in pretrain order."""
    by_group: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.n:
            by_group[r.setting.group].append(r)
    out = []
    for group in sorted(by_group):
        members = sorted(by_group[group], key=lambda r: (r.setting.weights != identity.NO_WEIGHTS, r.setting.pretrain,
                                                         r.setting.weights))  # fmt: skip
        shared = {p for p, n in Counter(r.setting.pretrain for r in members).items() if n > 1}
        name = {id(r): r.setting.pretrain + (f" w-{r.setting.weights or '?'}" if r.setting.pretrain in shared else "")
                for r in members}  # a pretrain measured with two checkpoints: say which is which
        for a, b in itertools.combinations(members, 2):
            va = {m: [t.metrics[m] for t in a.done] for m in METRICS}
            vb = {m: [t.metrics[m] for t in b.done] for m in METRICS}
            out.append(Comparison(group, name[id(a)], name[id(b)],
                                  {m: b.stats[m].mean - a.stats[m].mean for m in METRICS},
                                  {m: stats.welch_p(va[m], vb[m]) for m in METRICS}))  # fmt: skip
    return out
