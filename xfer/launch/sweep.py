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
import logging
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from xfer import benchmarks
from xfer.launch import identify, local, placement, slurm
from xfer.launch import plan as xfer_plan
from xfer.launch.triage import (
    ask_slurm,
    check,
    record_identities,
    redo_damaged,
    report_problems,
    rerun_stale,
    stale,
    to_run,
)
from xfer.launch.trials import PlannedTrial, activate, distinct, family_of, inputs, labels, locate, plan, task_config
from xfer.report import collect
from xfer.store import handover, locks, state, sweeps
from xfer.store.files import RESULT
from xfer.store.records import label
from xfer.trial import devices, recipe

log = logging.getLogger(__name__)


def plan_of(planned: list[PlannedTrial]) -> str:
    """The dry run's table and estimate (see ``xfer.launch.plan``)."""
    entries, names, paces = [], labels(planned), {}
    for p in planned:
        if (id(p.cfg), p.leaves) not in paces:  # the same for a family's seeds
            cfg = activate(p)
            paces[id(p.cfg), p.leaves] = (cfg.backbone.name, OmegaConf.select(
                cfg, f"benchmark.device_s_per_iter.{cfg.backbone.name}", default=None))  # fmt: skip
        backbone, default = paces[id(p.cfg), p.leaves]
        seed = p.job_seed
        if type(seed) is not int:  # not a seed (the checks name it): nothing to plan for it
            continue
        entries.append(xfer_plan.Entry(names[p.idx], backbone, seed, p.dir, int(p.max_iter), default,
                                       p.state))  # fmt: skip
    if not entries:  # no job has a seed to plan (the checks say why)
        return ""
    device, per_trial, at_once = schedule_of(activate(planned[0]))
    damaged = "".join(f"{line}\n" for line in redo_damaged(planned, dry_run=True) + stale(planned, dry_run=True))
    return xfer_plan.render(entries, per_trial, at_once, device) + damaged


def schedule_of(cfg: DictConfig) -> tuple[str, int, int]:
    """(device, devices per trial, trials at once) of a sweep: on SLURM the trials' nodes, not this one, have the
    devices, and ``array_parallelism`` trials run at once; locally this node's device groups. Zeros where the
    cluster options are wrong (the checks name the problem)."""
    if cfg.cluster.name == "slurm":
        if slurm.option_problems(cfg.cluster):
            return "GPU" if cfg.cluster.get("gpus_per_node") else "cpu", 0, 0
        device = "cuda" if int(cfg.cluster.gpus_per_node) else ("cpu" if cfg.trial.device == "auto" else cfg.trial.device)
        per_trial, at_once = int(cfg.cluster.nodes) * slurm.tasks_per_node(cfg.cluster), int(cfg.cluster.array_parallelism)
    else:
        device = devices.resolve(cfg.trial.device)
        try:
            ids = placement.resolve_devices(cfg.cluster.devices, device)
            per_trial = placement.per_trial(cfg.cluster.gpus_per_trial, len(ids))
            at_once = len(placement.groups(ids, per_trial)) if per_trial else 0
        except (ValueError, TypeError):
            per_trial, at_once = 0, 0
    return "GPU" if device == "cuda" else device, per_trial, at_once


def evaluation_notes(planned: list[PlannedTrial]) -> list[str]:
    """What will score each test dataset of the sweep (``evaluation_notes`` of its format), each said once."""
    notes, seen = [], set()
    for p in planned:
        cfg = activate(p)
        names = tuple(recipe.value(cfg, "DATASETS.TEST", ()))
        key = (benchmarks.format_of(cfg), str(cfg.benchmark.datasets_root), names, str(cfg.trial.evaluator))
        if key not in seen:
            seen.add(key)
            notes += benchmarks.of(cfg).evaluation_notes(Path(cfg.benchmark.datasets_root), names,
                                                         str(cfg.trial.evaluator), Path(cfg.paths.cache))  # fmt: skip
    return list(dict.fromkeys(notes))


def record_sweep(cfg: DictConfig, sweep_dirs: list[Path]) -> None:
    """``sweep.json`` in each folder (``xfer.store.sweeps``): the command and the schedule, for status and the
    report."""
    device, per_trial, at_once = schedule_of(cfg)
    command = shlex.join(["python", Path(sys.argv[0]).name, *sys.argv[1:]])
    record = sweeps.SweepRecord(command, str(cfg.cluster.name), device, per_trial, at_once, time.time())
    for d in sweep_dirs:
        sweeps.write(d, record)


def launch(
    ctx: HydraContext, task: TaskFunction, config: DictConfig, job_overrides: Sequence[Sequence[str]], first: int
) -> list[JobReturn]:
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    jobs = plan(ctx, config, job_overrides, first)
    planned = distinct(jobs)  # what runs; the checks see every job (two may differ only in how they run)
    sweep_dirs = folders_of(planned) or [Path(str(config.hydra.sweep.dir))]
    place_multirun_yaml(Path(str(config.hydra.sweep.dir)), sweep_dirs)
    shown = ", ".join(map(str, sweep_dirs))
    on_slurm = config.cluster.name == "slurm"
    found = [unread] if config.plan and (unread := ask_slurm(planned)) else []
    if config.plan:
        print(f"plan of sweep {shown} (nothing runs with plan=true):")
        print(plan_of(planned), end="")
    found += collect.option_problems(config, pretrains=pretrain_names(planned, sweep_dirs)) + check(jobs, here=not on_slurm)
    if found:
        report_problems(found)
        raise SystemExit(2)
    if config.plan:
        plan_passed(planned)
        return []
    record_identities(planned)
    record_sweep(activate(planned[0]), sweep_dirs)
    for line in evaluation_notes(planned) + redo_damaged(planned) + stale(planned):
        print(line)
    if on_slurm:
        submit_to_slurm(planned, config, sweep_dirs)
        return []
    rerun = rerun_stale(planned)
    todo = [p for p in planned if to_run(p, rerun)]
    elsewhere = [p for p in planned if p.state.state == "running"]  # another launcher's: waited for, not rerun
    done = sum(p.done for p in planned)
    todo = skip_queued_on_slurm(todo + elsewhere)
    waited = sum(p.state.state == "running" for p in todo)  # SLURM's running trials left out: not waited for here
    log.info("sweep %s: %d trials, %d done already, %d to run%s", shown, len(planned), done, len(todo) - waited,
             f", {waited} running under another launcher" if waited else "")
    outcome = run_here(todo, planned[0].cfg) if todo else None
    for sweep_dir in sweep_dirs:
        report = collect.collect([sweep_dir], **collect.options(config))
        print(report.markdown, end="")
        others = ", ".join(Path(w).name for w in report.written if Path(w).name != "table.md")
        print(f"{report.summary()}; table: {sweep_dir / 'table.md'} (also {others})")
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


def pretrain_names(planned: list[PlannedTrial], sweep_dirs: list[Path]) -> set[str]:
    """The names ``collect.baseline`` may take: the sweep's pretrains, the pretrain group's choices, and those of
    the earlier sweeps' settings in the same folders (``<backbone>_<pretrain>[,<overrides>]``), which the table
    also holds (``pretrain.name`` is free)."""
    from hydra.core.global_hydra import GlobalHydra

    names = {p.setting.pretrain for p in planned if p.setting is not None}
    backbones = {p.setting.backbone for p in planned if p.setting is not None}
    if GlobalHydra.instance().is_initialized():
        names.update(GlobalHydra.instance().config_loader().get_group_options("pretrain"))
        backbones.update(GlobalHydra.instance().config_loader().get_group_options("backbone"))
    for folder in sweep_dirs:
        for setting in (folder.iterdir() if folder.is_dir() else ()):
            backbone, _, rest = setting.name.partition("_")
            if setting.is_dir() and backbone in backbones and rest:
                names.add(rest.split(",")[0])
    return names


def folders_of(planned: list[PlannedTrial]) -> list[Path]:
    """The sweep's folders, one per benchmark (``hydra.sweep.dir`` is ``<output_root>/<benchmark>``): Hydra
    resolves its own ``hydra.sweep.dir`` once, from the primary config, so ``-m benchmark=a,b`` would name the
    default benchmark's folder; each trial's composed config names its own."""
    return list(dict.fromkeys(p.family.folder if p.family and p.family.folder else Path(str(activate(p).hydra.sweep.dir))
                              for p in planned))  # fmt: skip


def hand_over(p: PlannedTrial) -> dict:
    """Write the trial's ``trial.yaml`` (``xfer.store.handover``); returns the config written."""
    cfg = task_config(p)
    handover.write(p.dir, cfg, p.setting.overrides, p.identity)
    return cfg


def run_here(todo: list[PlannedTrial], cfg: DictConfig) -> local.Outcome:
    """Hand the trials to this node's queue: each folder gets its ``trial.yaml``, then they run."""
    jobs, names = [], labels(todo)
    for p in todo:
        if p.state.state != "running":  # one that another launcher runs has its hand-over: only waited for
            hand_over(p)
        jobs.append(local.Job(p.dir, label(names[p.idx], p.job_seed)))
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
    if cfg.plan:
        return plan_single(p)
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
    record_sweep(cfg, [Path(sweep_dir)])
    for line in evaluation_notes([p]) + redo_damaged([p]) + stale([p]):
        print(line)
    if not to_run(p, rerun_stale([p])):
        return p.state.result
    hand_over(p)
    job = local.Job(p.dir, label(p.setting.key, cfg.seed))
    exit_with(local.run([job], cfg.cluster, devices.resolve(cfg.trial.device)))
    return state.read_result(p.dir).record


def plan_single(p: PlannedTrial) -> dict:
    """``plan=true`` without ``-m``: the one trial's plan and the launch's checks, as for a sweep; nothing runs."""
    print(f"plan of trial {p.dir} (nothing runs with plan=true):")
    print(plan_of([p]), end="")
    found = check([p])
    if found:
        report_problems(found)
        raise SystemExit(2)
    plan_passed([p])
    return {}


def plan_passed(planned: list[PlannedTrial]) -> None:
    """The end of ``plan=true`` once the checks passed: what will score each test dataset, and what to run next."""
    print("".join(f"{line}\n" for line in evaluation_notes(planned)), end="")
    print("no problems found: run the same command without plan=true to start")


SUBMITTING = ".submit.lock"  # held in each sweep folder while a launch asks SLURM's queue and submits into it
SUBMIT_WAIT_S = 300.0  # how long a launch waits for another one's submission into the same folders


@contextlib.contextmanager
def submitting(sweep_dirs: list[Path]):
    """The sweep folders' submission locks (in a fixed order), held from asking SLURM which trials it has to
    recording the new jobs (``slurm.json``): two launches of one sweep at once would each find nothing queued and
    submit every trial twice. A launch that cannot get them within :data:`SUBMIT_WAIT_S` stops, submitting
    nothing."""
    held: list[locks.TrialLock] = []
    try:
        for d in sorted({Path(d).resolve() for d in sweep_dirs}):
            d.mkdir(parents=True, exist_ok=True)
            lock = locks.wait(d, SUBMIT_WAIT_S, name=SUBMITTING)
            if lock is None:
                print(f"error: another launch has been submitting into {d} for {SUBMIT_WAIT_S:.0f} s. Nothing was "
                      "submitted; run the same command again once it is done (python -m xfer status shows what "
                      "it queued).", file=sys.stderr)  # fmt: skip
                raise SystemExit(2)
            held.append(lock)
        yield
    finally:
        for lock in held:
            lock.release()


def submit_to_slurm(planned: list[PlannedTrial], config: DictConfig, sweep_dirs: list[Path]) -> None:
    """Submit the trials that have no result and are not queued already; print how to follow them."""
    rerun = rerun_stale(planned)
    with submitting(sweep_dirs):
        waiting = queued_on_slurm([p for p in planned if to_run(p, rerun) or p.state.state == "running"],
                                  "nothing was submitted")  # fmt: skip
        todo = [p for p in planned if to_run(p, rerun) and p.dir not in waiting]
        done = sum(p.done for p in planned)
        running = sum(p.state.state == "running" and p.dir not in waiting for p in planned)  # held by a local launcher
        shown = ", ".join(map(str, sweep_dirs))
        elsewhere = f", {running} running under a local launcher" if running else ""
        print(f"sweep {shown}: {len(planned)} trials, {done} done, {len(waiting)} queued or running on SLURM "
              f"already{elsewhere}, {len(todo)} to submit")  # fmt: skip
        if not todo:
            return
        jobs = [(p.dir, hand_over(p), p.setting.overrides) for p in todo]
        try:
            sub = slurm.submit(jobs, config.cluster, sweep_dirs, collect.options(config))
        except slurm.QueueUnreadable as e:  # its limits, read before anything is submitted
            print(f"error: could not read SLURM's limits: {e}. Nothing was submitted; {e.fix}.", file=sys.stderr)
            raise SystemExit(2) from None
        except slurm.SubmissionRefused as e:
            print(f"error: {e.explain(sweep_dirs)}", file=sys.stderr)
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
