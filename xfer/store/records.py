"""The records the stages share: what a trial measures (:class:`Setting`), one trial folder as read
(:class:`Trial`), the published numbers as a trial records them, and how every view names a trial.

They live below the launcher, the runner and the reports, so none of those imports another just for a
record. Statistics over trials (``Row``) belong to the report stage (``xfer.report.results``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path


def label(setting_key: str, seed: int | None) -> str:
    """How a trial is named in every view: ``smoke/r50_densecl seed3``."""
    return setting_key + (f" seed{seed}" if seed is not None else "")


@dataclass(frozen=True)
class Setting:
    """What a trial measures; trials that differ only by seed share it and are averaged. ``weights`` is
    the short content hash of the checkpoint (``xfer.store.identity``; "" for results of an older xfer): two
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
    """One trial folder as collect sees it; ``state`` is one of :data:`STATES`. ``metrics`` of a finished
    trial are in the order of its result's ``metric_names`` (:attr:`metric_names`)."""

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
    planned: tuple[str, ...] = ()  # unfinished: what it will measure (its hand-over's format and recipe)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """What the trial measured, in its result's order; () when it has no result."""
        return tuple(self.metrics or ())

    @functools.cached_property
    def other_metrics(self) -> dict[str, float]:
        """The other numbers its result.json holds besides its metric names (COCO: APs, APm, APl of boxes and
        masks), by name, NaN where the evaluator had nothing to average: not in the table, but in trials.csv and
        results.json, where analyses look for them."""
        found = (self.record or {}).get("metrics") or {}
        return {k: float(v) for k, v in sorted(found.items())
                if k not in (self.metrics or {}) and isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip


def published_record(numbers: dict | None, std: dict | None, trials: int | None) -> dict | None:
    """The published numbers as a trial records them: the seed's means (one key per metric, where the formats
    read them, and whatever else the pretrain lists) and, where the benchmark states it, their spread: ``std``
    per metric and ``n``, the trials each mean averages. Without ``std`` nothing is tested against them."""
    if numbers is None:
        return None
    out = dict(numbers)
    if std and trials:
        out["std"] = {m: float(v) for m, v in std.items() if v is not None}
        out["n"] = int(trials)
    return out
