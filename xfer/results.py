"""Collect: trial folders -> settings with statistics, comparisons, and the trials still missing.

Reads only what the earlier stages wrote (``result.json``, ``failure.json``, ``trial.yaml``), so it runs
at any time, on any set of sweep folders (``python -m xfer collect DIR [DIR ...]``), while a sweep still
runs or long after. Per setting: n finished of n expected, mean, sample std and 95% Student-t interval of
AP50/AP/AP75, the per-trial values, the published numbers with Δ = ours − published (flagged when the
published mean lies outside our interval), and the failed or unfinished trials by name, never dropped
silently. Methods on the same benchmark and backbone (and the same other overrides) are compared
pairwise with Welch's t-test. Rendering lives in ``xfer.formats``, plots in ``xfer.plots``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xfer import identity, stats
from xfer.files import FAILURE, JOB_CONFIG, RESULT

METRICS = ("AP50", "AP", "AP75")
STATES = ("done", "failed", "unfinished", "corrupt")


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
    def outside(self) -> dict[str, bool]:
        """Metrics whose published mean lies outside our 95% interval (none without an interval)."""
        if not self.published or not self.stats:
            return {}
        return {m: self.stats[m].covers(float(self.published[m])) is False for m in METRICS}


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
        "published": published,
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


def read_trial(folder: Path) -> Trial:
    """The trial in ``folder``; a file that cannot be read makes it ``corrupt``, with the reason.
    ``result.json`` alone describes a finished trial; ``trial.yaml`` is read only for the others."""
    unknown = Setting("?", "?", folder.parent.name)
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
    """Folders below ``dirs`` holding a trial; caches, SLURM logs and hidden folders are skipped."""
    marks = {RESULT, FAILURE, JOB_CONFIG}
    found = []
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            subdirs[:] = sorted(s for s in subdirs if not s.startswith(("_", ".")))
            if marks.intersection(files):
                found.append(Path(root))
                subdirs[:] = []  # a trial holds no trials
    return found


def read_trials(dirs: Iterable[Path]) -> list[Trial]:
    return [read_trial(f) for f in trial_folders(dirs)]


def _seed_order(t: Trial) -> tuple:
    return (t.seed is None, t.seed if t.seed is not None else 0, str(t.path))


def summarize(trials: list[Trial]) -> list[Row]:
    """One row per setting, sorted by setting key. Corrupt trials without a known setting get their own."""
    groups: dict[Setting, list[Trial]] = defaultdict(list)
    for t in trials:
        groups[t.setting].append(t)
    rows = []
    for setting in sorted(groups, key=lambda s: (s.key, s.weights)):
        members = sorted(groups[setting], key=_seed_order)
        done = [t for t in members if t.state == "done"]
        values = {m: [t.metrics[m] for t in done] for m in METRICS}
        first = (done or members)[0]
        rows.append(Row(
            setting=setting,
            label=first.label,
            expected=max([len(members)] + [t.expected for t in members]),
            done=done,
            missing=[t for t in members if t.state != "done"],
            stats={m: stats.summarize(v) for m, v in values.items()} if done else {},
            published=next((t.published for t in members if t.published), None),
        ))  # fmt: skip
    return rows


def compare(rows: list[Row]) -> list[Comparison]:
    """Every pair of methods within a group (same benchmark, backbone and other overrides)."""
    by_group: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.n:
            by_group[r.setting.group].append(r)
    out = []
    for group in sorted(by_group):
        members = sorted(by_group[group], key=lambda r: (r.setting.pretrain, r.setting.weights))
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
