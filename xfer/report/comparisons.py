"""Which methods a report compares, and by how much they differ: difference of means and Welch's p-value.

Methods compare within a group (same benchmark, backbone and other overrides: ``Setting.group``) and only
when they measured the same metrics (the same ``metric_names``): no test spans two kinds of number.

By default each method is compared with its group's baseline, as a paper's table reads: "densecl −
scratch", the gain of pretraining. A group's baseline is the row of the first of :data:`BASELINES` it has
finished trials of (random init, else ImageNet supervised, MSRA's then torchvision's), or the pretrain named
by ``baseline`` (``collect --baseline NAME``, ``collect.baseline=NAME`` in a launch). A group without one
gets no comparisons, and :class:`Comparisons` records which groups those are, so the table can say so
rather than leave them out silently. Every pair of methods (``compare="all"``) is there on request: with 40
methods that is 780 rows per group, which no reader wants by default.

Welch's tests of a report run as one batch (:func:`xfer.report.stats.welch_ps`): thousands of them cost
about what one does.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

from xfer.report import stats
from xfer.store import identity

if TYPE_CHECKING:
    from xfer.report.results import Row

MODES = ("baseline", "all")  # each method against its group's baseline, or every pair of methods
BASELINES = ("scratch", "supervised", "supervised_tv")  # a group's baseline by default: the first it has


@dataclass(frozen=True)
class Comparison:
    """``b − a`` for two methods of one group: difference of means and Welch's p-value per metric (both
    rows' metric names, in their order). Against a baseline, ``a`` is the baseline: "method − baseline"."""

    group: str
    a: str
    b: str
    diff: dict[str, float]
    p: dict[str, float | None]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(self.diff)


@dataclass(frozen=True)
class Comparisons(Sequence[Comparison]):
    """A report's comparisons (a sequence of :class:`Comparison`) and how they were chosen: ``mode`` (one of
    :data:`MODES`), ``baseline`` as asked (None: the first of :data:`BASELINES` a group has), each group's
    baseline by name, and what baseline mode left out and why: groups with methods to compare but no finished
    baseline (``no_baseline``), groups whose baseline pretrain was measured with several checkpoints
    (``ambiguous``: group -> their weights ids), and settings that measured other metrics than their baseline
    (``other_metrics``)."""

    pairs: tuple[Comparison, ...] = ()
    mode: str = "baseline"
    baseline: str | None = None
    baselines: dict[str, str] = field(default_factory=dict)
    no_baseline: tuple[str, ...] = ()
    ambiguous: dict[str, tuple[str, ...]] = field(default_factory=dict)
    other_metrics: tuple[str, ...] = ()

    @overload
    def __getitem__(self, i: int) -> Comparison: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Comparison]: ...
    def __getitem__(self, i):
        return self.pairs[i]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def left_out(self) -> bool:
        """Whether baseline mode left a group or setting out (the table says which)."""
        return bool(self.no_baseline or self.ambiguous or self.other_metrics)


def option_problem(mode: str, baseline: str | None, compare_flag: str, baseline_flag: str) -> str:
    """Why ``mode`` and ``baseline`` are not a choice collect can make, named as the user set them
    (``--compare``/``--baseline`` or ``collect.compare=``/``collect.baseline=``); "" when they are one."""
    if mode not in MODES:
        return f"{_as_set(compare_flag, repr(mode))}: one of {', '.join(MODES)} (each method against its group's " \
               "baseline, or every pair of methods)"  # fmt: skip
    if baseline is not None and (not isinstance(baseline, str) or not baseline):
        return f"{_as_set(baseline_flag, repr(baseline))}: the name of a pretrain (scratch, supervised, ...)"
    if baseline is not None and mode == "all":
        return f"{_as_set(baseline_flag, baseline)} chooses the baseline of {_as_set(compare_flag, 'baseline')}; " \
               f"{_as_set(compare_flag, 'all')} compares every pair of methods: drop one of the two"  # fmt: skip
    return ""


def _as_set(flag: str, value: str) -> str:
    """A value as the user wrote it: ``--compare all`` on the command line, ``collect.compare=all`` as an override."""
    return f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}"


def _groups(rows: list[Row]) -> dict[str, list[Row]]:
    """Each group's rows with finished trials: rows without weights first (random init), then by pretrain and
    weights; groups sorted by name."""
    by_group: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.n:
            by_group[r.setting.group].append(r)
    order = lambda r: (r.setting.weights != identity.NO_WEIGHTS, r.setting.pretrain, r.setting.weights)  # noqa: E731
    return {g: sorted(by_group[g], key=order) for g in sorted(by_group)}


def _names(members: list[Row]) -> dict[int, str]:
    """Each row's name in its comparisons: its pretrain, with ``w-<weights id>`` where a pretrain was measured
    with two checkpoints (say which is which)."""
    shared = {p for p, n in Counter(r.setting.pretrain for r in members).items() if n > 1}
    return {id(r): r.setting.pretrain + (f" w-{r.setting.weights or '?'}" if r.setting.pretrain in shared else "")
            for r in members}  # fmt: skip


def baseline_of(members: list[Row], baseline: str | None = None) -> list[Row]:
    """The rows of a group's baseline: those of the first pretrain of ``[baseline]`` (or :data:`BASELINES`)
    the group has. One row is the baseline; none, the group has no baseline; several, its baseline was measured
    with several checkpoints, and which one is meant is not for collect to guess."""
    for name in [baseline] if baseline else BASELINES:
        found = [r for r in members if r.setting.pretrain == name]
        if found:
            return found
    return []


def compare(rows: list[Row], mode: str = "baseline", baseline: str | None = None) -> Comparisons:
    """The comparisons of ``rows``, as ``b − a`` for each pair of rows of one group that measured the same
    metrics: with ``mode`` "baseline", each method against its group's baseline (:func:`baseline_of`),
    which is ``a``; with "all", every pair, a row without weights (random init, weights id
    ``identity.NO_WEIGHTS``) always ``a`` and other pairs in pretrain order."""
    problem = option_problem(mode, baseline, "compare", "baseline")
    if problem:
        raise ValueError(problem)
    pairs: list[tuple[str, Row, Row, dict[int, str]]] = []
    found: dict[str, str] = {}
    no_baseline, ambiguous, other = [], {}, []
    for group, members in _groups(rows).items():
        names = _names(members)
        if mode == "all":
            pairs += [(group, a, b, names) for a, b in itertools.combinations(members, 2)
                      if a.metric_names == b.metric_names]  # fmt: skip
            continue
        if len(members) < 2:
            continue  # one method: nothing to compare, nothing left out
        base = baseline_of(members, baseline)
        if len(base) != 1:
            if base:
                ambiguous[group] = tuple(r.setting.weights or "?" for r in base)
            else:
                no_baseline.append(group)
            continue
        found[group] = names[id(base[0])]
        for r in members:
            if r is base[0]:
                continue
            if r.metric_names == base[0].metric_names:
                pairs.append((group, base[0], r, names))
            else:
                other.append(r.key)
    return Comparisons(tuple(_measured(pairs)), mode, baseline, found, tuple(no_baseline), ambiguous, tuple(other))


def _measured(pairs: list[tuple[str, Row, Row, dict[int, str]]]) -> list[Comparison]:
    """Difference of means and Welch's p of each pair, per metric; every test of the report in one batch."""
    tests = [([t.metrics[m] for t in a.done], [t.metrics[m] for t in b.done]) for _, a, b, _ in pairs
             for m in a.metric_names]  # fmt: skip
    ps = iter(stats.welch_ps(tests))
    return [Comparison(group, names[id(a)], names[id(b)], {m: b.stats[m].mean - a.stats[m].mean for m in a.metric_names},
                       {m: next(ps) for m in a.metric_names}) for group, a, b, names in pairs]  # fmt: skip
