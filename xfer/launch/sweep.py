"""A sweep: compose every trial, check them all, then run them here or submit them, then collect.

Nothing runs until every trial of the sweep has composed and passed the checks in ``xfer.trial.checks``;
problems are reported together (each once) and the launch exits with status 2. Each trial's folder is
derived from its identity (``xfer.store.identity``: setting, weights content, seed), so its weights must be
there to be found. Trials with a readable ``result.json`` are skipped and need not pass the checks (their
dataset may be gone). Each trial to run gets its composed config written as ``trial.yaml`` in its
folder; ``xfer.launch.local`` runs those here, SLURM there. One failing trial does not stop the others; the
table is written from whatever finished.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import shutil
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from xfer import smoke
from xfer.launch import families, identify, local, slurm
from xfer.launch import plan as xfer_plan
from xfer.report import collect
from xfer.store import files, handover, identity, locks, state
from xfer.store.files import RESULT
from xfer.store.identity import Identity
from xfer.store.records import Setting, label
from xfer.store.redo import Redo, redo_start, set_aside_damaged, set_aside_stale
from xfer.trial import checks, devices, recipe, runner

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
        return known if known is not None else max_iter_of(activate(self))

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
        return Family(ids.identity(cfg, sha256), extras), ""
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


def check(planned: list[PlannedTrial], here: bool = True) -> list[str]:
    """Problems of all trials still to run, each message once, in order.

    A family's seeds share one config and leaf values (see :func:`plan`) and differ only by a valid ``seed=N``:
    the family is checked once, for its first trial still to run."""
    found: list[str] = []
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


def family_problems(p: PlannedTrial, here: bool, seen: dict) -> list[str]:
    """What is wrong with the trials of ``p``'s family (``p`` active); ``seen``: ``checks.problems``'s."""
    found = [p.inputs_error] if p.inputs_error else []
    found += identify.refused(p.cfg)
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
        found += local.problems(p.cfg.cluster, batch, devices.resolve(p.cfg.trial.device))
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
    return bool(planned) and bool(OmegaConf.select(activate(planned[0]), "trial.rerun_stale", default=False))


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


def max_iter_of(cfg: DictConfig) -> int:
    return int(recipe.value(cfg, "SOLVER.MAX_ITER"))


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


def labels(planned: list[PlannedTrial]) -> dict[int, str]:
    """Each trial's setting as the launcher shows it: its key, plus ``w-<weights id>`` where this sweep
    measures the same setting with more than one checkpoint."""
    settings = {p.idx: p.setting for p in planned}
    ids: dict[str, set[str]] = {}
    for s in settings.values():
        ids.setdefault(s.key, set()).add(s.weights)
    return {i: s.key + (f" w-{s.weights or '?'}" if len(ids[s.key]) > 1 else "") for i, s in settings.items()}


def plan_of(planned: list[PlannedTrial]) -> str:
    """The dry run's table and estimate (see ``xfer.launch.plan``)."""
    entries, names, paces = [], labels(planned), {}
    for p in planned:
        if (id(p.cfg), p.leaves) not in paces:  # the same for a family's seeds
            cfg = activate(p)
            paces[id(p.cfg), p.leaves] = (cfg.backbone.name, OmegaConf.select(
                cfg, f"benchmark.device_s_per_iter.{cfg.backbone.name}", default=None))  # fmt: skip
        backbone, default = paces[id(p.cfg), p.leaves]
        entries.append(xfer_plan.Entry(names[p.idx], backbone, int(p.job_seed), p.dir, int(p.max_iter), default,
                                       p.state))  # fmt: skip
    cfg = activate(planned[0])
    if cfg.cluster.name == "slurm":  # the trials' nodes, not this one, have the devices
        device = "cuda" if int(cfg.cluster.gpus_per_node) else ("cpu" if cfg.trial.device == "auto" else cfg.trial.device)
        per_trial, at_once = int(cfg.cluster.nodes) * slurm.tasks_per_node(cfg.cluster), int(cfg.cluster.array_parallelism)
    else:
        device = devices.resolve(cfg.trial.device)
        try:
            ids = local.resolve_devices(cfg.cluster.devices, device)
            per_trial = local.per_trial(cfg.cluster.gpus_per_trial, len(ids))
            at_once = len(local.groups(ids, per_trial)) if per_trial else 0
        except (ValueError, TypeError):
            per_trial, at_once = 0, 0  # check() names the problem
    damaged = "".join(f"{line}\n" for line in redo_damaged(planned, dry_run=True) + stale(planned, dry_run=True))
    return xfer_plan.render(entries, per_trial, at_once, "GPU" if device == "cuda" else device) + damaged


def report_problems(found: list[str]) -> None:
    print(f"error: nothing was run; {len(found)} problem(s) to fix first:", file=sys.stderr)
    for msg in found:
        print(f"  - {msg}", file=sys.stderr)


def launch(
    ctx: HydraContext, task: TaskFunction, config: DictConfig, job_overrides: Sequence[Sequence[str]], first: int
) -> list[JobReturn]:
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    planned = plan(ctx, config, job_overrides, first)
    sweep_dirs = folders_of(planned) or [Path(str(config.hydra.sweep.dir))]
    place_multirun_yaml(Path(str(config.hydra.sweep.dir)), sweep_dirs)
    shown = ", ".join(map(str, sweep_dirs))
    on_slurm = config.cluster.name == "slurm"
    if config.plan:
        print(f"plan of sweep {shown} (nothing runs with plan=true):")
        print(plan_of(planned), end="")
    found = collect.option_problems(config) + check(planned, here=not on_slurm)
    if found:
        report_problems(found)
        raise SystemExit(2)
    if config.plan:
        print("no problems found: run the same command without plan=true to start")
        return []
    record_identities(planned)
    for line in redo_damaged(planned) + stale(planned):
        print(line)
    if on_slurm:
        submit_to_slurm(planned, config, sweep_dirs)
        return []
    rerun = rerun_stale(planned)
    todo = [p for p in planned if to_run(p, rerun)]
    done = sum(p.done for p in planned)
    todo = skip_queued_on_slurm(todo)
    log.info("sweep %s: %d trials, %d done already, %d to run", shown, len(planned), done, len(todo))
    outcome = run_here(todo, planned[0].cfg) if todo else None
    for sweep_dir in sweep_dirs:
        report = collect.collect([sweep_dir], **collect.options(config))
        print(report.markdown, end="")
        print(f"{report.summary()}; table: {sweep_dir / 'table.md'} (also .csv .json .tex .html, plots)")
    exit_with(outcome)
    return []


def place_multirun_yaml(hydra_dir: Path, sweep_dirs: list[Path]) -> None:
    """Hydra's record of the sweep's command (``multirun.yaml``), written into its own ``hydra.sweep.dir``
    before any job is composed, belongs in each folder the sweep uses: copied there, and taken out of a folder
    no trial of this sweep uses (removed with it when Hydra's file was all it held)."""
    record = hydra_dir / "multirun.yaml"
    if hydra_dir in sweep_dirs or not record.is_file():
        return
    for d in sweep_dirs:
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record, d / record.name)
    record.unlink()
    with contextlib.suppress(OSError):  # not empty: an earlier sweep of that benchmark lives there
        hydra_dir.rmdir()


def folders_of(planned: list[PlannedTrial]) -> list[Path]:
    """The sweep's folders, one per benchmark (``hydra.sweep.dir`` is ``<output_root>/<benchmark>``): Hydra
    resolves its own ``hydra.sweep.dir`` once, from the primary config, so ``-m benchmark=a,b`` would name the
    default benchmark's folder; each trial's composed config names its own."""
    return list(dict.fromkeys(p.family.folder if p.family and p.family.folder else Path(str(activate(p).hydra.sweep.dir))
                              for p in planned))  # fmt: skip


def task_config(p: PlannedTrial) -> dict:
    """The trial's own config without Hydra's node, resolved into plain values (so the next seed of its
    family cannot change it)."""
    cfg = activate(p)
    out = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
           for k, v in cfg.items() if k != "hydra"}  # fmt: skip
    out["pretrain"]["sha256"] = p.sha256  # the content this folder is for; the trial checks it still is
    return out


def hand_over(p: PlannedTrial) -> dict:
    """Write the trial's ``trial.yaml`` (``xfer.store.handover``); returns the config written."""
    cfg = task_config(p)
    handover.write(p.dir, cfg, p.setting.overrides, p.identity)
    return cfg


def run_here(todo: list[PlannedTrial], cfg: DictConfig) -> local.Outcome:
    """Hand the trials to this node's queue: each folder gets its ``trial.yaml``, then they run."""
    jobs, names = [], labels(todo)
    for p in todo:
        hand_over(p)
        jobs.append(local.Job(p.dir, label(names[p.idx], p.cfg.seed)))
    return local.run(jobs, cfg.cluster, devices.resolve(cfg.trial.device))


def exit_with(outcome: local.Outcome | None) -> None:
    """Exit status of a local sweep: 130 when stopped (resumable), 1 when a trial failed, else 0."""
    if outcome is None:
        return
    if outcome.interrupted:
        print("stopped; run the same command again to resume the unfinished trials", file=sys.stderr)
        raise SystemExit(130)
    if outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed (causes above; each folder's failure.json has the log tail)",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(1)


def run_single(cfg: DictConfig, sweep_dir: Path, overrides: Sequence[str]) -> dict:
    """``python launch.py ...`` without ``-m``: the same checks and local queue, for one trial."""
    if cfg.cluster.name != "local":
        report_problems([f"cluster={cfg.cluster.name} submits sweeps: add -m (one trial: -m seed={cfg.seed})."])
        raise SystemExit(2)
    hc = HydraConfig.get()
    ids = identify.Identifier(lambda o: compose(hc.job.config_name, o, return_hydra_config=True), Path(cfg.paths.cache))
    sha256, error = inputs(cfg)
    kin, error = family_of(cfg, sha256, error, ids, dict(OmegaConf.to_container(hc.runtime.choices)))
    p = locate(PlannedTrial(0, list(overrides), cfg, Path(), None, sha256, error, kin), Path(sweep_dir))
    if p.done:
        log.info("trial done already, skipping: %s", p.dir / RESULT)
        return p.state.result
    found = check([p])
    if found:
        report_problems(found)
        raise SystemExit(2)
    if not skip_queued_on_slurm([p]):
        return p.state.result
    record_identities([p])
    for line in redo_damaged([p]) + stale([p]):
        print(line)
    if not to_run(p, rerun_stale([p])):
        return p.state.result
    hand_over(p)
    job = local.Job(p.dir, label(p.setting.key, cfg.seed))
    exit_with(local.run([job], cfg.cluster, devices.resolve(cfg.trial.device)))
    return state.read_result(p.dir).record


def submit_to_slurm(planned: list[PlannedTrial], config: DictConfig, sweep_dirs: list[Path]) -> None:
    """Submit the trials that have no result and are not queued already; print how to follow them."""
    rerun = rerun_stale(planned)
    waiting = queued_on_slurm([p for p in planned if to_run(p, rerun)], "nothing was submitted")
    todo = [p for p in planned if to_run(p, rerun) and p.dir not in waiting]
    done = sum(p.done for p in planned)
    shown = ", ".join(map(str, sweep_dirs))
    print(f"sweep {shown}: {len(planned)} trials, {done} done, {len(waiting)} queued already, {len(todo)} to submit")
    if not todo:
        return
    jobs = [(p.dir, hand_over(p), p.setting.overrides) for p in todo]
    try:
        sub = slurm.submit(jobs, config.cluster, sweep_dirs, collect.options(config))
    except slurm.QueueUnreadable as e:  # its limits, read before anything is submitted
        print(f"error: could not read SLURM's limits: {e}. Nothing was submitted; {e.fix}.", file=sys.stderr)
        raise SystemExit(2) from None
    ids = ",".join(sub.ids)
    print(sub.summary())
    print(f"  outputs: {' '.join(str(d.resolve()) for d in sweep_dirs)}   logs: {sub.folder}")
    print(f"  watch:   squeue -j {ids}")
    for d in sweep_dirs:
        print(f"  table:   python -m xfer collect {d.resolve()}   (job {sub.collect_id} writes table.md when the arrays end)")
    if config.cluster.wait:
        try:
            slurm.wait(sub.ids)
        except slurm.QueueUnreadable as e:
            print(f"error: the trials were submitted (above), but SLURM's queue could not be read to wait for them: {e}",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(2) from None
        for d in sweep_dirs:
            print(collect.collect([d], **collect.options(config)).markdown, end="")


def queued_on_slurm(todo: list[PlannedTrial], nothing: str) -> dict[Path, str]:
    """The trials of ``todo`` whose SLURM submission (``slurm.json``) SLURM still has, with their job ids. When
    its queue cannot be read, the launch stops here with one message (exit status 2): which trials still run
    is unknown, so none may be submitted or trained on a guess. ``nothing``: what did not happen."""
    try:
        return slurm.queued_trials([p.dir for p in todo])
    except slurm.QueueUnreadable as e:
        print(f"error: could not read SLURM's queue to see which trials it still runs: {e}. {nothing.capitalize()}; "
              f"{e.fix}.", file=sys.stderr)  # fmt: skip
        raise SystemExit(2) from None


def skip_queued_on_slurm(todo: list[PlannedTrial]) -> list[PlannedTrial]:
    """A local run leaves alone the trials SLURM still has queued or running: they would train twice."""
    waiting = queued_on_slurm(todo, "nothing was run")
    if waiting:
        ids = ", ".join(waiting.values())
        print(f"{len(waiting)} trial(s) still queued or running on SLURM (job {ids}): not run here; "
              "python -m xfer status shows them")  # fmt: skip
    return [p for p in todo if p.dir not in waiting]
