"""What a launch does with each trial it planned: the checks before anything runs, the refusals, and the trials
that cannot stand as they are (damaged results set aside and redone, stale ones kept or rerun, unreadable ones
named and left in place). Every decision goes by the trial's state (``xfer.store.state``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xfer.launch import identify, placement, slurm
from xfer.launch.trials import PlannedTrial, activate, max_iter_of
from xfer.store import files, identity, locks, queue, state
from xfer.store.records import label
from xfer.store.redo import Redo, redo_start, set_aside_damaged, set_aside_stale
from xfer.trial import checks, devices, recipe

log = logging.getLogger(__name__)




def check(planned: list[PlannedTrial], here: bool = True) -> list[str]:
    """Problems of all trials still to run, each message once, in order.

    A family's seeds share one config and leaf values (see :func:`plan`) and differ only by a valid ``seed=N``:
    the family is checked once, for its first trial still to run."""
    found: list[str] = recipe_problems(planned)
    checked: set[tuple] = set()  # (config id, leaf values) checked; all configs stay alive in ``planned``
    rerun, seen = rerun_stale(planned), {}
    for p in planned:
        if not to_run(p, rerun) or (id(p.cfg), p.leaves) in checked:
            continue
        checked.add((id(p.cfg), p.leaves))
        with recipe.kept(activate(p)):
            found += family_problems(p, here, seen)
    runs_on = {json.dumps(OmegaConf.to_container(cfg.cluster)) + json.dumps(OmegaConf.to_container(cfg.trial))
               for cfg in map(activate, {(id(p.cfg), p.leaves): p for p in planned}.values())}  # fmt: skip
    if len(runs_on) > 1:
        found.append("cluster.* and trial.* say how the whole sweep runs (not what it measures): give them one "
                     "value, not a sweep.")  # fmt: skip
    found += shared_folders(planned)
    for folder in dict.fromkeys(p.dir.parent for p in planned if to_run(p, rerun)):  # where trial locks go
        found += [msg for msg in [locks.problem(folder)] if msg]
    return list(dict.fromkeys(found))


def recipe_problems(planned: list[PlannedTrial]) -> list[str]:
    """The recipe keys detectron2 or xfer would refuse (``identify.refused``) and yes/no options that are neither
    (``checks.boolean_problems``), for every family of the sweep, done ones too: a finished or stale trial's
    folder must not make ``+d2.SEED=1``, a misspelt key or ``trial.rerun_stale=no`` look accepted."""
    found: list[str] = []
    defaults: dict[str, dict] = {}  # by paths.cache: detectron2's defaults as the identity resolves them
    for p in {(id(p.cfg), p.leaves): p for p in planned}.values():
        cfg = activate(p)
        cache = str(OmegaConf.select(cfg, "paths.cache", default="outputs/_cache"))
        if cache not in defaults:
            defaults[cache] = recipe.d2_defaults(Path(cache))
        try:
            with recipe.kept(cfg):
                found += checks.boolean_problems(cfg) + identify.refused(cfg, defaults[cache])
        except (OmegaConfBaseException, ValueError, TypeError):  # a recipe that does not resolve: the checks say why
            continue
    return found


def family_problems(p: PlannedTrial, here: bool, seen: dict) -> list[str]:
    """What is wrong with the trials of ``p``'s family (``p`` active); ``seen``: ``checks.problems``'s."""
    found = [p.inputs_error] if p.inputs_error else []
    found += checks.problems(p.cfg, here, seen)
    if p.sha256 is None and not found:  # validate names missing weights; anything else that stops hashing:
        found.append(f"pretrain {p.cfg.pretrain.name}: cannot read {p.cfg.pretrain.weights} to hash it (its "
                     "content hash names the trial's folder).")  # fmt: skip
    keep = OmegaConf.select(p.cfg, "trial.keep_checkpoints", default="final")
    if keep not in files.KEEP_CHECKPOINTS:
        found.append(f"trial.keep_checkpoints={keep!r}: use one of {', '.join(files.KEEP_CHECKPOINTS)}.")
    batch = recipe.value(p.cfg, "SOLVER.IMS_PER_BATCH")
    if p.cfg.cluster.name == "slurm":
        found += slurm.problems(p.cfg.cluster, batch, p.cfg.benchmark.requires_gpu)
    else:
        found += placement.problems(p.cfg.cluster, batch, devices.resolve(p.cfg.trial.device))
    return found


def shared_folders(planned: list[PlannedTrial]) -> list[str]:
    """Two jobs of the sweep whose trials would share a folder but run different things (``paths.datasets=/a,/b``
    over different data, say): refused, naming both and what differs, since one would read as the other's."""
    first: dict[Path, PlannedTrial] = {}
    found = []
    for p in planned:
        other = first.setdefault(p.dir, p)
        if other is p:
            continue
        mine, theirs = p.identity, other.identity
        if mine is None or theirs is None or mine["digest"] == theirs["digest"]:
            continue
        what = "; ".join(identity.changes(theirs, mine)) or "their identities"
        found.append(f"jobs `{' '.join(other.overrides)}` and `{' '.join(p.overrides)}` would share the trial folder "
                     f"{p.dir} but run different things ({what}). Launch them as separate sweeps with different "
                     "output_root values.")  # fmt: skip
    return found


def rerun_stale(planned: list[PlannedTrial]) -> bool:
    return bool(planned) and OmegaConf.select(activate(planned[0]), "trial.rerun_stale", default=False) is True


def ask_slurm(planned: list[PlannedTrial]) -> str:
    """For ``plan=true``: the trials SLURM still has (their ``slurm.json``'s job) take SLURM's word (queued,
    requeued, running), as in ``status`` and as the launch itself asks before it submits or runs anything. ""
    when that was done; else why SLURM's queue could not be read (a problem: the launch would stop on it)."""
    ids = {p.dir: job for p in planned if (job := files.slurm_job(p.dir))}
    if not ids:
        return ""
    try:
        known = queue.states(list(ids.values()))
    except queue.QueueUnreadable as e:
        return f"could not read SLURM's queue to see which trials it still runs: {e}; {e.fix}."
    for p in planned:
        job = known.get(ids.get(p.dir, ""))
        if job is not None:
            p.state = state.of(p.dir, p.family.launched if p.family else None, job=job, max_iter=p.max_iter)
    return ""


def to_run(p: PlannedTrial, rerun: bool) -> bool:
    """Whether this launch runs the trial: not when it is done, being run (SLURM's word is asked later), unreadable
    (left in place), or stale (kept) unless ``trial.rerun_stale``."""
    s = p.state.state
    return s in ("to run", "partial", "failed", "damaged") or (s == "stale" and rerun)


def stale(planned: list[PlannedTrial], dry_run: bool = False) -> list[str]:
    """What happens to trials whose finished result no longer matches what they are launched for now: kept and
    named with what changed; with ``trial.rerun_stale=true`` their files are set aside (``_stale-<time>/``) and
    they run again from the start. Unreadable results are named and left in place."""
    rerun, lines = rerun_stale(planned), []
    for p in planned:
        s = p.state
        name = label(p.setting.key, p.job_seed)
        if s.state == "unreadable":
            lines.append(f"{name}: {s.cause}; left in place and not run (fix the file system or its permissions)")
        if s.state != "stale":
            continue
        if not rerun:
            lines.append(f"{name} is stale ({'; '.join(s.changes)}): kept, not pooled, not run; add "
                         "trial.rerun_stale=true to run it again (its files are kept aside)")  # fmt: skip
        elif dry_run:
            lines.append(f"{name} is stale ({'; '.join(s.changes)}): trial.rerun_stale=true sets its files aside "
                         "and runs it again")  # fmt: skip
        else:
            kept = set_aside_stale(p.dir)
            p.__dict__.pop("state", None)
            lines.append(f"{name} is stale ({'; '.join(s.changes)}): its files are kept in {kept.name}/; it runs again")
    return lines


def record_identities(planned: list[PlannedTrial]) -> None:
    """``identity.json`` in each setting's weights folder: what this launch asks of its trials, so that status and
    collect, run on the folder alone, see the same done and stale trials as the launcher."""
    written = set()  # once per folder, what its last job asks (as when every job wrote it in turn)
    for p in reversed(planned):
        if p.family and p.family.identity and p.dir != Path() and p.dir.parent not in written:
            folder = p.dir.parent
            folder.mkdir(parents=True, exist_ok=True)
            files.write_json_atomic(folder / identity.IDENTITY, p.family.launched)
            written.add(folder)


def redo_damaged(planned: list[PlannedTrial], dry_run: bool = False) -> list[str]:
    """Trials whose ``result.json`` is damaged (truncated by a full disk, a killed writer) are not done: set
    each damaged file aside so the trial runs again, and say so. The redo starts from what the trial left:
    its final weights are re-evaluated, not retrained. ``dry_run`` (plan=true) only says what would happen."""
    lines = []
    for p in planned:
        if p.state.state != "damaged":
            continue
        cause = p.state.cause
        cfg = activate(p)
        max_iter = max_iter_of(cfg)
        redo = Redo(cause, None, redo_start(p.dir, max_iter)) if dry_run else \
            set_aside_damaged(p.dir, cause, max_iter)
        if redo:
            lines.append(redo.describe(label(p.setting.key, cfg.seed)))
            if not dry_run:
                p.__dict__.pop("state", None)
    return lines


def report_problems(found: list[str]) -> None:
    print(f"error: nothing was run; {len(found)} problem(s) to fix first:", file=sys.stderr)
    for msg in found:
        print(f"  - {msg}", file=sys.stderr)
