"""A sweep on this machine: compose every trial, check them all, then run, then collect.

Nothing runs until every trial of the sweep has composed and passed the checks in ``xfer.validate``;
problems are reported together (each once) and the launch exits with status 2. Trials whose
``result.json`` exists are skipped and need not pass the checks (their inputs may be gone). One
failing trial does not stop the others; the table is written from whatever finished.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from xfer import results, slurm, trial, validate

log = logging.getLogger(__name__)


@dataclass
class PlannedTrial:
    """A composed job of the sweep and where its trial lives."""

    idx: int
    overrides: list[str]
    cfg: DictConfig
    dir: Path

    @property
    def done(self) -> bool:
        return (self.dir / trial.RESULT).exists()


def plan(
    ctx: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]], first: int
) -> list[PlannedTrial]:
    """Compose each job's config and resolve its trial folder (needs Hydra's job config set)."""
    planned = []
    for idx, overrides in enumerate(job_overrides, start=first):
        cfg = ctx.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = idx
            cfg.hydra.job.num = idx
        HydraConfig.instance().set_config(cfg)
        trial_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        planned.append(PlannedTrial(idx, list(overrides), cfg, trial_dir))
    return planned


def check(planned: list[PlannedTrial], here: bool = True) -> list[str]:
    """Problems of all trials still to run, each message once, in order."""
    found: list[str] = []
    for p in planned:
        if p.done:
            continue
        try:
            trial.prepare(p.cfg)
        except Exception as e:  # generation of smoke inputs failed: report, don't run
            found.append(f"could not generate the {p.cfg.benchmark.name} inputs: {type(e).__name__}: {e}")
        found += validate.problems(p.cfg, here)
        if p.cfg.cluster.name == "slurm":
            batch = OmegaConf.select(p.cfg, "d2.SOLVER.IMS_PER_BATCH", default=p.cfg.benchmark.d2.SOLVER.IMS_PER_BATCH)
            found += slurm.problems(p.cfg.cluster, batch, p.cfg.benchmark.requires_gpu)
    return list(dict.fromkeys(found))


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
    found = check(planned, here=not on_slurm)
    if found:
        report_problems(found)
        raise SystemExit(2)
    if on_slurm:
        submit_to_slurm(planned, config, sweep_dir)
        return []
    todo = [p for p in planned if not p.done]
    log.info(
        "sweep %s: %d trials, %d done already, %d to run", sweep_dir, len(planned), len(planned) - len(todo), len(todo)
    )
    runs: list[JobReturn] = []
    for p in planned:
        log.info("\t#%d : %s%s", p.idx, " ".join(filter_overrides(p.overrides)), " (done)" if p.done else "")
        job = run_job(
            hydra_context=ctx,
            task_function=task,
            config=p.cfg,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        runs.append(job)
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    for p, r in zip(planned, runs, strict=True):
        if r.status == JobStatus.FAILED:
            try:
                _ = r.return_value  # re-raises the trial's exception
            except Exception as e:
                log.error("trial failed: %s: %s: %s", p.dir, type(e).__name__, e)
    rows, md = results.collect(sweep_dir)
    print(md, end="")
    print(f"{sum(r.n for r in rows)} trials in {len(rows)} settings; table: {sweep_dir / 'table.md'} (and .csv)")
    return runs


def submit_to_slurm(planned: list[PlannedTrial], config: DictConfig, sweep_dir: Path) -> None:
    """Submit the trials that have no result and are not queued already; print how to follow them."""
    waiting = slurm.queued_trials([p.dir for p in planned if not p.done])
    todo = [p for p in planned if not p.done and p.dir not in waiting]
    done = sum(p.done for p in planned)
    print(
        f"sweep {sweep_dir}: {len(planned)} trials, {done} done, {len(waiting)} queued already, {len(todo)} to submit"
    )
    if not todo:
        return
    jobs = []
    for p in todo:
        HydraConfig.instance().set_config(p.cfg)
        overrides = p.cfg.hydra.job.override_dirname
        jobs.append((p.dir, OmegaConf.masked_copy(p.cfg, [k for k in p.cfg if k != "hydra"]), overrides))
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
        slurm.wait([sub.array_id, sub.collect_id])
        rows, md = results.collect(sweep_dir)
        print(md, end="")
