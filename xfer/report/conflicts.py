"""Which finished results count: each trial (setting and seed) once, and what is a conflict.

Collect and status read trials from any set of folders, which may overlap or hold copies of one sweep;
the same result found twice is one trial, two different results for one trial are a conflict, and so is a
finished trial that measured other metrics (``metric_names``) than the rest of its setting: its numbers
cannot be pooled with theirs. A conflict counts in neither n nor the statistics; every view names it with the
folders it disagrees with, so a person decides which to remove.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

from xfer.store import identity

if TYPE_CHECKING:
    from xfer.store.records import Setting, Trial


def seed_order(t: Trial) -> tuple:
    """Trials by seed (unknown last), then by folder."""
    return (t.seed is None, t.seed if t.seed is not None else 0, str(t.path))


def _measured(t: Trial) -> tuple[tuple[str, str], ...]:
    """What two copies of a trial must share to be the same result: the same metric names, in the same order,
    with the same values (repr: exact, and NaN equals NaN)."""
    return tuple((m, repr(v)) for m, v in t.metrics.items())


def _one_per_identity(copies: list[Trial]) -> list[Trial]:
    """The folders of one setting and seed (copies of a sweep, a rerun elsewhere) as collect counts them:
    one finished result however many identical copies hold it (copies without a readable result add
    nothing); two or more different results are each returned with ``conflict`` naming the others, and
    counted by none; with no result, the copy that says most (damaged or unreadable, then stale, then failed,
    then the others)."""
    done: dict[tuple[tuple[str, str], ...], Trial] = {}
    for t in copies:
        if t.state == "done":
            done.setdefault(_measured(t), t)
    if len(done) == 1:
        return list(done.values())
    if not done:
        said = ("damaged", "unreadable", "stale", "failed")
        return [min(copies, key=lambda t: said.index(t.state) if t.state in said else len(said))]
    firsts = list(done.values())
    out = []
    for t in firsts:
        others = tuple(o.path for o in firsts if o is not t)
        cause = f"conflict: a different result for this trial at {', '.join(map(str, others))}"
        out.append(replace(t, conflict=others, cause=cause))
    return out


def one_per_identity(trials: list[Trial]) -> list[Trial]:
    """Each trial identity (setting and seed) once, in the order first found; see :func:`_one_per_identity`.
    Trials whose identity is unknown (an unreadable folder) are all kept. Then :func:`mark_other_metrics`."""
    groups: dict[object, list[Trial]] = {}
    for i, t in enumerate(trials):
        known = t.seed is not None and t.setting.benchmark != "?"
        groups.setdefault((t.setting, t.seed) if known else i, []).append(t)
    return mark_other_identities(mark_other_metrics([t for copies in groups.values() for t in _one_per_identity(copies)]))


def with_unfinished_copies(found: list[Trial], counted: list[Trial]) -> list[Trial]:
    """What status shows: the trials collect counts (``counted``, of :func:`one_per_identity`), then every copy in
    another folder that is not done and that ``counted`` left out, its cause naming the copy that was counted.
    A launch in that folder would run it again (it looks in its own folders only), so status does not hide it
    behind a result elsewhere; the same result found twice is still shown once."""
    shown = {t.path for t in counted}
    by_trial = {(t.setting, t.seed): t for t in counted if t.seed is not None}
    extra = []
    for t in found:
        if t.path in shown or t.state == "done":
            continue
        other = by_trial.get((t.setting, t.seed))
        if other is None:
            extra.append(t)
            continue
        said = f"{t.cause}; " if t.cause else ""
        extra.append(replace(t, cause=f"{said}a copy of the trial {other.state} at {other.path}"))
    return counted + extra


def mark_other_metrics(trials: list[Trial]) -> list[Trial]:
    """A finished trial that measured other metrics than the rest of its setting (other ``metric_names``, e.g.
    from an xfer whose evaluator for that benchmark changed) is a conflict, like two results for one seed:
    its numbers cannot be pooled with the others', and neither can be called the right ones without a look,
    so it counts in neither n nor the statistics, and every view names it and the folders it disagrees with.
    The setting's metrics are those most of its finished trials measured; on a tie, those of the lowest
    seed. It is not damage: the file is sound, and a rerun would not change what it measured."""
    done: dict[Setting, list[Trial]] = defaultdict(list)
    for t in sorted(trials, key=seed_order):
        if t.state == "done" and not t.conflict:
            done[t.setting].append(t)
    odd: dict[int, Trial] = {}
    for members in done.values():
        names = Counter(t.metric_names for t in members).most_common(1)[0][0]  # ties: the first, lowest seed
        agree = tuple(t.path for t in members if t.metric_names == names)
        for t in members:
            if t.metric_names != names:
                cause = (f"conflict: measured {'/'.join(t.metric_names)}, where the other trials of its setting "
                         f"measured {'/'.join(names)} ({', '.join(map(str, agree))})")  # fmt: skip
                odd[id(t)] = replace(t, conflict=agree, cause=cause)
    return [odd.get(id(t), t) for t in trials]


def _ran(t: Trial) -> str:
    """What a finished trial ran, its seed aside: its recorded identity's digest ("" for a result of an xfer that
    recorded none: it agrees with anything)."""
    found = (t.record or {}).get("identity")
    return identity.digest({**found, "seed": None}) if isinstance(found, dict) else ""


def mark_other_identities(trials: list[Trial]) -> list[Trial]:
    """Collect pools only trials of one identity. Folders read together (two output roots, a copy of a sweep) can
    hold finished trials of one setting that ran different things (other data, another evaluator): each is done
    against its own folder's launch, but their numbers are not one sample. The identity most of the setting's
    finished trials ran wins (on a tie, the lowest seed's); the others are conflicts naming what differs."""
    done: dict[Setting, list[Trial]] = defaultdict(list)
    for t in sorted(trials, key=seed_order):
        if t.state == "done" and not t.conflict and _ran(t):
            done[t.setting].append(t)
    odd: dict[int, Trial] = {}
    for members in done.values():
        ran = Counter(_ran(t) for t in members).most_common(1)[0][0]
        first = next(t for t in members if _ran(t) == ran)
        agree = tuple(t.path for t in members if _ran(t) == ran)
        for t in members:
            if _ran(t) != ran:
                what = "; ".join(identity.changes(first.record["identity"], t.record["identity"], with_seed=False))
                odd[id(t)] = replace(t, conflict=agree, cause=f"conflict: ran something else than the other trials of "
                                     f"its setting ({what}; {', '.join(map(str, agree))})")  # fmt: skip
    return [odd.get(id(t), t) for t in trials]
