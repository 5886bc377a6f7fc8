"""Compose every job of a sweep and place its trial: its config, weights digest, identity and folder.

Jobs that differ only by ``seed=N`` or by plain leaf overrides (``key=value`` on a key that is no config group)
share one Hydra composition (``xfer.launch.families``); :func:`activate` points the shared config at one job
before each use. Each trial's folder is named by its setting (what it changes against its plain choices), its
weights' content and its seed; its identity (``xfer.store.identity``) is what decides done or stale.
"""

from __future__ import annotations

import functools
import logging
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from xfer import smoke
from xfer.launch import families, identify
from xfer.store import identity, state
from xfer.store.identity import Identity
from xfer.store.records import Setting
from xfer.trial import recipe, runner

log = logging.getLogger(__name__)
SEED = re.compile(r"^seed=\d+$")




@dataclass
class PlannedTrial:
    """A job of the sweep and where its trial lives. Jobs that differ only in plain leaf values (their seed,
    ``pretrain.name``, ...: ``xfer.launch.families``) share one composed config (``cfg``); :func:`activate` makes it
    this job's (its seed, leaf values, overrides and number) before use."""

    idx: int
    overrides: list[str]
    cfg: DictConfig
    dir: Path
    seed: int | None = None  # set when ``cfg`` is shared with the job's other seeds
    sha256: str | None = None  # content hash of the trial's weights; None when unreadable (check says why)
    inputs_error: str = ""  # generating the benchmark's inputs failed, or its identity could not be read
    family: Family | None = None  # what the jobs of its family share: identity and setting name
    leaves: families.Leaves = ()  # its leaf values but a seed (``seed``) that ``cfg``, shared, is set to

    @property
    def job_seed(self) -> object:
        """The seed its config has when active (check() names one that is not a number), read without activating it."""
        return self.seed if self.seed is not None else dict(self.leaves).get("seed", self.cfg.seed)

    @property
    def identity(self) -> dict | None:
        """The identity the trial is launched for (``xfer.store.identity``), with its seed; None when unknown
        (its weights or data could not be read: check() says why)."""
        seed = self.job_seed
        if self.family is None or self.family.identity is None or not isinstance(seed, int) or isinstance(seed, bool):
            return None  # a seed that is not a number: check() names it
        return self.family.identity.of_seed(seed).record()

    @functools.cached_property
    def state(self) -> state.TrialState:
        """Where the trial stands against what this launch asks of it (``xfer.store.state``)."""
        return state.of(self.dir, self.family.launched if self.family else None, max_iter=self.max_iter)

    @property
    def max_iter(self) -> int:
        """The recipe's SOLVER.MAX_ITER: its family's, else read from its config."""
        known = self.family.max_iter if self.family else None
        if known is not None:
            return known
        try:
            return max_iter_of(activate(self))
        except (ValueError, TypeError):  # not a number: 0 here, and the checks name the key
            return 0

    @property
    def done(self) -> bool:
        """A sound result of this identity; a damaged, unreadable or stale one is not done."""
        return self.state.state == "done"

    @property
    def setting(self) -> Setting:
        """What the trial measures: its setting (named by what it changes against its plain choices) and weights."""
        if self.family is not None and self.family.setting is not None:
            return self.family.setting
        return runner.setting_of(activate(self), self.family.extras if self.family else "", self.sha256)


@dataclass(frozen=True)
class Family:
    """What the jobs of one family (one composition with the same leaf values, their seeds apart) share, worked
    out once with one of them active: the identity they run (less the seed) and what their setting's name adds to
    ``<backbone>_<pretrain>``; where :func:`plan` made it, also their setting, sweep folder and MAX_ITER."""

    identity: Identity | None
    extras: str = ""
    setting: Setting | None = None
    folder: Path | None = None  # hydra.sweep.dir: <output_root>/<benchmark>
    max_iter: int | None = None  # the recipe's SOLVER.MAX_ITER

    @functools.cached_property
    def launched(self) -> dict | None:
        """The identity its trials' folder is launched for (``identity.json``), made once, not per trial."""
        return self.identity.record() if self.identity else None


_ACTIVE: weakref.WeakValueDictionary[int, PlannedTrial] = weakref.WeakValueDictionary()  # config id: its job now


def activate(p: PlannedTrial) -> DictConfig:
    """Point the (possibly shared) composed config at this job; Hydra's own node is not copied per trial. Only
    what differs from the job it was set to last is set (OmegaConf takes a fraction of a millisecond a value,
    and a plan reads every job's config several times)."""
    cfg = p.cfg
    if "hydra" not in cfg:  # a single run's task config: nothing is shared
        return cfg
    was = _ACTIVE.pop(id(cfg), None)
    if was is p:
        _ACTIVE[id(cfg)] = p
        return cfg
    was = was if was is not None and was.cfg is cfg else None
    families.apply(cfg, families.changed(values_of(p), values_of(was) if was else None))
    with read_write(cfg.hydra), open_dict(cfg):
        families.set_list(cfg.hydra.overrides, "task", p.overrides, was.overrides if was else None)
        cfg.hydra.job.id = p.idx
        cfg.hydra.job.num = p.idx
    _ACTIVE[id(cfg)] = p  # only once all of it is set: a value that failed to set leaves it unknown
    return cfg


def values_of(p: PlannedTrial) -> families.Leaves:
    """The values a job sets on its shared config: its leaves, and its seed."""
    return p.leaves if p.seed is None else (*p.leaves, ("seed", p.seed))


def inputs(cfg: DictConfig) -> tuple[str | None, str]:
    """(content hash of the trial's weights or None, error): a generated benchmark's inputs are made first
    (its weights must exist to be hashed). Missing weights get no hash; check() names the problem."""
    try:
        if cfg.benchmark.generate:  # a generated benchmark (smoke): its dataset and this pretrain's weights
            smoke.prepare(cfg)
    except Exception as e:  # generation of smoke inputs failed: report, don't run
        return None, f"could not generate the {cfg.benchmark.name} inputs: {type(e).__name__}: {e}"
    try:
        return runner.weights_sha256(cfg), ""
    except (OSError, OmegaConfBaseException):
        return None, ""


def family_of(cfg: DictConfig, sha256: str | None, error: str, ids: identify.Identifier,
              choices: dict[str, str]) -> tuple[Family, str]:  # fmt: skip
    """The family's identity and setting name, and the error that kept the identity from being read (the checks
    report it: an unknown dataset format, an unreadable dataset list)."""
    try:
        extras = ids.extras(cfg, choices) if choices else ""
        if sha256 is None or error:
            return Family(None, extras), error
        return Family(ids.identity(cfg, sha256, choices), extras), ""
    except (ValueError, OSError, KeyError, OmegaConfBaseException) as e:
        return Family(None, ""), error or f"could not work out what the trial runs: {type(e).__name__}: {e}"


def locate(p: PlannedTrial, sweep_dir: Path) -> PlannedTrial:
    """Set the trial's folder from its setting's name, its weights' content and its seed (``xfer.store.identity``)."""
    s = p.setting
    p.dir = identity.trial_dir(sweep_dir, identity.setting_dirname(s.backbone, s.pretrain, s.overrides), p.sha256,
                               p.job_seed)  # fmt: skip
    return p


def plan(ctx: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]], first: int,
         share_leaves: bool = True) -> list[PlannedTrial]:  # fmt: skip
    """Compose each job's config and resolve its trial folder.

    Jobs whose overrides differ only in plain leaf values (``xfer.launch.families``: ``seed=N``,
    ``pretrain.name=...``, ``pretrain.weights=...``) are composed by Hydra once, and share that config (see
    :func:`activate`): a sweep of 40 checkpoints x 5 seeds composes once per choice of config groups, and
    Hydra's node, the bulk of a config, is never copied per trial. What depends on a job's values is worked
    out once per distinct values but the seed (its family), with them set: its weights made (smoke) and
    hashed, its identity and setting name; its folder per job. ``share_leaves=False`` shares a composition
    between seeds only (what the launcher did before; tests compare the two)."""
    planned, composed, kins = [], {}, {}
    ids = identify.Identifier(lambda overrides: ctx.config_loader.load_sweep_config(config, overrides),
                              Path(str(OmegaConf.select(config, "paths.cache", default="outputs/_cache"))))  # fmt: skip
    splitter = families.Splitter(families.groups_of(identify.choices_of(config)))
    for idx, overrides in enumerate(job_overrides, start=first):
        shape, mine, seed = job_of(overrides, splitter) if share_leaves else seed_family(overrides)
        cfg = composed.get(shape) if shape is not None else None
        fresh = cfg is None
        if fresh:
            cfg = ctx.config_loader.load_sweep_config(config, list(overrides))
            if shape is not None and families.shareable(cfg, shape):
                composed[shape] = cfg
            else:  # a leaf's key is a config group that one of its choices pulls in: composed on its own
                mine, seed = (), None
        p = PlannedTrial(idx, list(overrides), cfg, Path(), seed, leaves=mine)
        if (id(p.cfg), p.leaves) not in kins:
            try:
                activate(p)
            except OmegaConfBaseException:  # a value its shared node refuses: Hydra composes it, and says why
                p = PlannedTrial(idx, list(overrides), ctx.config_loader.load_sweep_config(config, list(overrides)),
                                 Path())  # fmt: skip
                fresh = True
            kins[id(p.cfg), p.leaves] = shared_by(p, ids)
            if fresh:
                HydraConfig.instance().set_config(p.cfg)  # ${hydra:...} reads this; the same for the whole family
        p.sha256, p.inputs_error, p.family = kins[id(p.cfg), p.leaves]
        planned.append(locate(p, p.family.folder))
    return planned


def distinct(planned: list[PlannedTrial]) -> list[PlannedTrial]:
    """The sweep without repeats: a job whose trial another job of the sweep already is (same folder, same
    identity: ``seed=0,0``, or two dataset roots holding the same files) is one trial, counted, run and tabulated
    once. Jobs that share a folder but not an identity are all kept, for the checks to refuse."""
    first: dict[Path, PlannedTrial] = {}
    kept = []
    for p in planned:
        other = first.setdefault(p.dir, p)
        if other is not p:  # identities only where folders meet: a record per trial costs a sweep of thousands
            mine, theirs = p.identity, other.identity
            if mine is not None and theirs is not None and mine["digest"] == theirs["digest"]:
                continue
        kept.append(p)
    return kept


def shared_by(p: PlannedTrial, ids: identify.Identifier) -> tuple[str | None, str, Family]:
    """(weights' content hash, error, family) of a new family, worked out with ``p``, one of its jobs, active."""
    cfg = activate(p)
    with recipe.kept(cfg):
        sha256, error = inputs(cfg)
        family, error = family_of(cfg, sha256, error, ids, identify.choices_of(cfg))
        try:
            max_iter = max_iter_of(cfg)
        except Exception:  # not a number: read per trial then, failing where it did  # noqa: BLE001
            max_iter = None
    folder = Path(str(cfg.hydra.sweep.dir))
    return sha256, error, replace(family, setting=runner.setting_of(cfg, family.extras, sha256), folder=folder,
                                  max_iter=max_iter)  # fmt: skip


def job_of(overrides: Sequence[str], splitter: families.Splitter) -> tuple[families.Shape, families.Leaves, int | None]:
    """(shape, leaf values but the seed, seed) of a job: ``seed=N`` with N a non-negative integer apart, so that
    the seeds of a setting share what depends on its other values (identity, checks)."""
    job = splitter.split(overrides)
    seed = dict(job.leaves).get("seed")
    if type(seed) is not int or seed < 0:  # not a seed (check() names it): a leaf value like any other
        return job.shape, job.leaves, None
    return job.shape, tuple((k, v) for k, v in job.leaves if k != "seed"), seed


def seed_family(overrides: Sequence[str]) -> tuple[families.Shape | None, families.Leaves, int | None]:
    """The same for families by seed only (None: composed on its own): the jobs whose overrides are the same
    but one ``seed=N``."""
    seeds = [o for o in overrides if SEED.match(o)]
    if len(seeds) != 1:
        return None, (), None
    return tuple(("", o) for o in overrides if not SEED.match(o)), (), int(seeds[0].split("=", 1)[1])


def max_iter_of(cfg: DictConfig) -> int:
    return int(recipe.value(cfg, "SOLVER.MAX_ITER"))


def labels(planned: list[PlannedTrial]) -> dict[int, str]:
    """Each trial's setting as the launcher shows it: its key, plus ``w-<weights id>`` where this sweep
    measures the same setting with more than one checkpoint."""
    settings = {p.idx: p.setting for p in planned}
    ids: dict[str, set[str]] = {}
    for s in settings.values():
        ids.setdefault(s.key, set()).add(s.weights)
    return {i: s.key + (f" w-{s.weights or '?'}" if len(ids[s.key]) > 1 else "") for i, s in settings.items()}


def task_config(p: PlannedTrial) -> dict:
    """The trial's own config without Hydra's node, resolved into plain values (so the next seed of its
    family cannot change it)."""
    cfg = activate(p)
    out = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
           for k, v in cfg.items() if k != "hydra"}  # fmt: skip
    out["pretrain"]["sha256"] = p.sha256  # the content this folder is for; the trial checks it still is
    return out
