"""A sweep: compose every trial, check them all, then run them here or submit them, then collect.

Nothing runs until every trial of the sweep has composed and passed the checks in ``xfer.validate``;
problems are reported together (each once) and the launch exits with status 2. Trials whose
``result.json`` exists are skipped and need not pass the checks (their inputs may be gone). Each trial
to run gets its composed config written as ``trial.yaml`` in its folder; ``xfer.local`` runs those
here, SLURM there. One failing trial does not stop the others; the table is written from whatever
finished.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from xfer import collect, devices, local, slurm, status, trial, validate
from xfer import plan as xfer_plan
from xfer.files import RESULT

log = logging.getLogger(__name__)
SEED = re.compile(r"^seed=\d+$")


@dataclass
class PlannedTrial:
    """A job of the sweep and where its trial lives. Jobs that differ only by seed share one composed
    config (``cfg``); :func:`activate` makes it this job's (its seed, overrides and number) before use."""

    idx: int
    overrides: list[str]
    cfg: DictConfig
    dir: Path
    seed: int | None = None  # set when ``cfg`` is shared with the job's other seeds

    @property
    def done(self) -> bool:
        return (self.dir / RESULT).exists()


def activate(p: PlannedTrial) -> DictConfig:
    """Point the (possibly shared) composed config at this job; Hydra's own node is not copied per trial."""
    cfg = p.cfg
    if "hydra" not in cfg:  # a single run's task config: nothing is shared
        return cfg
    with read_write(cfg.hydra), open_dict(cfg):
        if p.seed is not None:
            cfg.seed = p.seed
        cfg.hydra.overrides.task = list(p.overrides)
        cfg.hydra.job.id = p.idx
        cfg.hydra.job.num = p.idx
    return cfg


def plan(
    ctx: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]], first: int
) -> list[PlannedTrial]:
    """Compose each job's config and resolve its trial folder.

    Jobs that differ only by an integer ``seed=N`` compose identically but for that value (the seed is a
    plain top-level number that nothing in the defaults list depends on), so each such family is composed
    by Hydra once, and its seeds share that config (see :func:`activate`): a 5-seed sweep composes a fifth
    as often, and Hydra's node, the bulk of a config, is never copied per trial."""
    planned, families = [], {}
    for idx, overrides in enumerate(job_overrides, start=first):
        seeds = [o for o in overrides if SEED.match(o)]
        family = tuple(o for o in overrides if not SEED.match(o)) if len(seeds) == 1 else None
        cfg = families.get(family) if family is not None else None
        if cfg is None:
            cfg = ctx.config_loader.load_sweep_config(config, list(overrides))
            HydraConfig.instance().set_config(cfg)  # ${hydra:...} reads this; the same for the whole family
            if family is not None:
                families[family] = cfg
        seed = int(seeds[0].split("=", 1)[1]) if family is not None else None
        p = PlannedTrial(idx, list(overrides), cfg, Path(), seed)
        activate(p)
        p.dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        planned.append(p)
    return planned


def check(planned: list[PlannedTrial], here: bool = True) -> list[str]:
    """Problems of all trials still to run, each message once, in order.

    A family's seeds share one config (see :func:`plan`) and differ only by a valid ``seed=N``: the
    family is checked once, for its first trial still to run."""
    found: list[str] = []
    checked: set[int] = set()  # ids of configs checked; all stay alive in ``planned``, so ids are unique
    for p in planned:
        if p.done or id(p.cfg) in checked:
            continue
        checked.add(id(p.cfg))
        activate(p)
        try:
            trial.prepare(p.cfg)
        except Exception as e:  # generation of smoke inputs failed: report, don't run
            found.append(f"could not generate the {p.cfg.benchmark.name} inputs: {type(e).__name__}: {e}")
        found += validate.problems(p.cfg, here)
        batch = OmegaConf.select(p.cfg, "d2.SOLVER.IMS_PER_BATCH", default=p.cfg.benchmark.d2.SOLVER.IMS_PER_BATCH)
        if p.cfg.cluster.name == "slurm":
            found += slurm.problems(p.cfg.cluster, batch, p.cfg.benchmark.requires_gpu)
        else:
            found += local.problems(p.cfg.cluster, batch, devices.resolve(p.cfg.trial.device))
    runs_on = {json.dumps(OmegaConf.to_container(cfg.cluster)) + json.dumps(OmegaConf.to_container(cfg.trial))
               for cfg in {id(p.cfg): p.cfg for p in planned}.values()}  # fmt: skip
    if len(runs_on) > 1:
        found.append("cluster.* and trial.* say how the whole sweep runs (not what it measures): give them one "
                     "value, not a sweep.")  # fmt: skip
    return list(dict.fromkeys(found))


def plan_of(planned: list[PlannedTrial]) -> str:
    """The dry run's table and estimate (see ``xfer.plan``)."""
    entries = []
    for p in planned:
        cfg, overrides = activate(p), p.cfg.hydra.job.override_dirname
        max_iter = OmegaConf.select(cfg, "d2.SOLVER.MAX_ITER", default=cfg.benchmark.d2.SOLVER.MAX_ITER)
        default = OmegaConf.select(cfg, f"benchmark.device_s_per_iter.{cfg.backbone.name}", default=None)
        entries.append(xfer_plan.Entry(trial.setting_of(cfg, overrides).key, cfg.backbone.name, int(cfg.seed), p.dir,
                                       int(max_iter), default))  # fmt: skip
    cfg = planned[0].cfg
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
    return xfer_plan.render(entries, per_trial, at_once, "GPU" if device == "cuda" else device)


def report_problems(found: list[str]) -> None:
    print(f"error: nothing was run; {len(found)} problem(s) to fix first:", file=sys.stderr)
    for msg in found:
        print(f"  - {msg}", file=sys.stderr)


def launch(
    ctx: HydraContext, task: TaskFunction, config: DictConfig, job_overrides: Sequence[Sequence[str]], first: int
) -> list[JobReturn]:
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    planned = plan(ctx, config, job_overrides, first)
    on_slurm = config.cluster.name == "slurm"
    if config.plan:
        print(f"plan of sweep {sweep_dir} (nothing runs with plan=true):")
        print(plan_of(planned), end="")
    found = check(planned, here=not on_slurm)
    if found:
        report_problems(found)
        raise SystemExit(2)
    if config.plan:
        print("no problems found: run the same command without plan=true to start")
        return []
    if on_slurm:
        submit_to_slurm(planned, config, sweep_dir)
        return []
    todo = [p for p in planned if not p.done]
    done = len(planned) - len(todo)
    todo = skip_queued_on_slurm(todo)
    log.info("sweep %s: %d trials, %d done already, %d to run", sweep_dir, len(planned), done, len(todo))
    outcome = run_here(todo, planned[0].cfg) if todo else None
    report = collect.collect([sweep_dir])
    print(report.markdown, end="")
    print(f"{report.summary()}; table: {sweep_dir / 'table.md'} (also .csv .json .tex .html, plots)")
    exit_with(outcome)
    return []


def task_config(p: PlannedTrial) -> dict:
    """The trial's own config without Hydra's node, resolved into plain values (so the next seed of its
    family cannot change it)."""
    cfg = activate(p)
    return {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in cfg.items() if k != "hydra"}  # fmt: skip


def run_here(todo: list[PlannedTrial], cfg: DictConfig) -> local.Outcome:
    """Hand the trials to this node's queue: each folder gets its ``trial.yaml``, then they run."""
    jobs = []
    for p in todo:
        overrides = p.cfg.hydra.job.override_dirname
        trial.write_job(p.dir, task_config(p), overrides)
        jobs.append(local.Job(p.dir, status.label(trial.setting_of(p.cfg, overrides).key, p.cfg.seed)))
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


def run_single(cfg: DictConfig, out_dir: Path, overrides: str) -> dict:
    """``python launch.py ...`` without ``-m``: the same checks and local queue, for one trial."""
    p = PlannedTrial(0, [], cfg, Path(out_dir))
    if cfg.cluster.name != "local":
        report_problems([f"cluster={cfg.cluster.name} submits sweeps: add -m (one trial: -m seed={cfg.seed})."])
        raise SystemExit(2)
    if p.done:
        log.info("trial done already, skipping: %s", p.dir / RESULT)
        return trial.read_result(p.dir)
    found = check([p])
    if found:
        report_problems(found)
        raise SystemExit(2)
    if not skip_queued_on_slurm([p]):
        return trial.read_result(p.dir)
    trial.write_job(p.dir, cfg, overrides)
    job = local.Job(p.dir, status.label(trial.setting_of(cfg, overrides).key, cfg.seed))
    exit_with(local.run([job], cfg.cluster, devices.resolve(cfg.trial.device)))
    return trial.read_result(p.dir)


def submit_to_slurm(planned: list[PlannedTrial], config: DictConfig, sweep_dir: Path) -> None:
    """Submit the trials that have no result and are not queued already; print how to follow them."""
    waiting = queued_on_slurm([p for p in planned if not p.done], "nothing was submitted")
    todo = [p for p in planned if not p.done and p.dir not in waiting]
    done = sum(p.done for p in planned)
    print(
        f"sweep {sweep_dir}: {len(planned)} trials, {done} done, {len(waiting)} queued already, {len(todo)} to submit"
    )
    if not todo:
        return
    jobs = [(p.dir, task_config(p), p.cfg.hydra.job.override_dirname) for p in todo]
    sub = slurm.submit(jobs, config.cluster, sweep_dir)
    ids = ",".join([sub.array_id, sub.collect_id])
    print(
        f"submitted {len(todo)} trials as SLURM job array {sub.array_id}; job {sub.collect_id} collects the table after it"
    )
    print(f"  outputs: {sweep_dir.resolve()}   logs: {sub.folder}")
    print(f"  watch:   squeue -j {ids}")
    print(
        f"  table:   python -m xfer collect {sweep_dir.resolve()}   (job {sub.collect_id} writes table.md when the array ends)"
    )
    if config.cluster.wait:
        try:
            slurm.wait([sub.array_id, sub.collect_id])
        except slurm.QueueUnreadable as e:
            print(f"error: the trials were submitted (above), but SLURM's queue could not be read to wait for them: {e}",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(2) from None
        print(collect.collect([sweep_dir]).markdown, end="")


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
