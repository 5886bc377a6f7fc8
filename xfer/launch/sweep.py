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
import json
import logging
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from xfer import smoke
from xfer.launch import local, slurm
from xfer.launch import plan as xfer_plan
from xfer.report import collect
from xfer.store import files, identity
from xfer.store.files import RESULT
from xfer.store.records import Setting, label
from xfer.trial import checks, devices, recipe, runner

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
    sha256: str | None = None  # content hash of the trial's weights; None when unreadable (check says why)
    inputs_error: str = ""  # generating the benchmark's inputs failed (check reports it)

    @property
    def done(self) -> bool:
        """A readable result with its metrics; a damaged ``result.json`` does not count (see :func:`redo_damaged`)."""
        return files.read_result(self.dir) is not None

    @property
    def setting(self) -> Setting:
        """What the trial measures: its setting (named by the overrides that change results) and weights."""
        return runner.setting_of(self.cfg, identity.setting_overrides(self.overrides), self.sha256)


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


def locate(p: PlannedTrial, sweep_dir: Path) -> PlannedTrial:
    """Set the trial's folder from its identity (``xfer.store.identity``): setting, weights content, seed."""
    s = p.setting
    p.dir = identity.trial_dir(sweep_dir, identity.setting_dirname(s.backbone, s.pretrain, s.overrides), p.sha256,
                               p.cfg.seed)  # fmt: skip
    return p


def plan(
    ctx: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]], first: int
) -> list[PlannedTrial]:
    """Compose each job's config and resolve its trial folder.

    Jobs that differ only by an integer ``seed=N`` compose identically but for that value (the seed is a
    plain top-level number that nothing in the defaults list depends on), so each such family is composed
    by Hydra once, and its seeds share that config (see :func:`activate`): a 5-seed sweep composes a fifth
    as often, and Hydra's node, the bulk of a config, is never copied per trial. A family's weights are
    made (smoke) and hashed once too, before its folders are known."""
    planned, families = [], {}
    for idx, overrides in enumerate(job_overrides, start=first):
        seeds = [o for o in overrides if SEED.match(o)]
        family = tuple(o for o in overrides if not SEED.match(o)) if len(seeds) == 1 else None
        known = families.get(family) if family is not None else None
        if known is None:
            cfg = ctx.config_loader.load_sweep_config(config, list(overrides))
            HydraConfig.instance().set_config(cfg)  # ${hydra:...} reads this; the same for the whole family
            known = (cfg, *inputs(cfg))
            if family is not None:
                families[family] = known
        cfg, sha256, error = known
        seed = int(seeds[0].split("=", 1)[1]) if family is not None else None
        p = PlannedTrial(idx, list(overrides), cfg, Path(), seed, sha256, error)
        activate(p)
        planned.append(locate(p, Path(str(cfg.hydra.sweep.dir))))
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
        mine = [p.inputs_error] if p.inputs_error else []
        mine += checks.problems(p.cfg, here)
        if p.sha256 is None and not mine:  # validate names missing weights; anything else that stops hashing:
            mine.append(f"pretrain {p.cfg.pretrain.name}: cannot read {p.cfg.pretrain.weights} to hash it (its "
                        "content hash names the trial's folder).")  # fmt: skip
        found += mine
        keep = OmegaConf.select(p.cfg, "trial.keep_checkpoints", default="final")
        if keep not in files.KEEP_CHECKPOINTS:
            found.append(f"trial.keep_checkpoints={keep!r}: use one of {', '.join(files.KEEP_CHECKPOINTS)}.")
        batch = recipe.value(p.cfg, "SOLVER.IMS_PER_BATCH")
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


def max_iter_of(cfg: DictConfig) -> int:
    return int(recipe.value(cfg, "SOLVER.MAX_ITER"))


def redo_damaged(planned: list[PlannedTrial], dry_run: bool = False) -> list[str]:
    """Trials whose ``result.json`` is damaged (truncated by a full disk, a killed writer) are not done: set
    each damaged file aside so the trial runs again, and say so. The redo starts from what the trial left:
    its final weights are re-evaluated, not retrained. ``dry_run`` (plan=true) only says what would happen."""
    lines = []
    for p in planned:
        cause = files.damage(p.dir)
        if not cause:
            continue
        cfg = activate(p)
        max_iter = max_iter_of(cfg)
        redo = files.Redo(cause, None, files.redo_start(p.dir, max_iter)) if dry_run else \
            files.set_aside_damaged(p.dir, max_iter)
        if redo:
            lines.append(redo.describe(label(p.setting.key, cfg.seed)))
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
    entries, names = [], labels(planned)
    for p in planned:
        cfg = activate(p)
        max_iter = max_iter_of(cfg)
        default = OmegaConf.select(cfg, f"benchmark.device_s_per_iter.{cfg.backbone.name}", default=None)
        entries.append(xfer_plan.Entry(names[p.idx], cfg.backbone.name, int(cfg.seed), p.dir, int(max_iter),
                                       default))  # fmt: skip
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
    damaged = "".join(f"{line}\n" for line in redo_damaged(planned, dry_run=True))
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
    for line in redo_damaged(planned):
        print(line)
    if on_slurm:
        submit_to_slurm(planned, config, sweep_dirs)
        return []
    todo = [p for p in planned if not p.done]
    done = len(planned) - len(todo)
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
    return list(dict.fromkeys(Path(str(p.cfg.hydra.sweep.dir)) for p in planned))


def task_config(p: PlannedTrial) -> dict:
    """The trial's own config without Hydra's node, resolved into plain values (so the next seed of its
    family cannot change it)."""
    cfg = activate(p)
    out = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
           for k, v in cfg.items() if k != "hydra"}  # fmt: skip
    out["pretrain"]["sha256"] = p.sha256  # the content this folder is for; the trial checks it still is
    return out


def run_here(todo: list[PlannedTrial], cfg: DictConfig) -> local.Outcome:
    """Hand the trials to this node's queue: each folder gets its ``trial.yaml``, then they run."""
    jobs, names = [], labels(todo)
    for p in todo:
        runner.write_job(p.dir, task_config(p), p.setting.overrides)
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
    p = locate(PlannedTrial(0, list(overrides), cfg, Path(), None, *inputs(cfg)), Path(sweep_dir))
    if p.done:
        log.info("trial done already, skipping: %s", p.dir / RESULT)
        return runner.read_result(p.dir)
    found = check([p])
    if found:
        report_problems(found)
        raise SystemExit(2)
    if not skip_queued_on_slurm([p]):
        return runner.read_result(p.dir)
    for line in redo_damaged([p]):
        print(line)
    with open_dict(cfg):
        cfg.pretrain.sha256 = p.sha256
    runner.write_job(p.dir, cfg, p.setting.overrides)
    job = local.Job(p.dir, label(p.setting.key, cfg.seed))
    exit_with(local.run([job], cfg.cluster, devices.resolve(cfg.trial.device)))
    return runner.read_result(p.dir)


def submit_to_slurm(planned: list[PlannedTrial], config: DictConfig, sweep_dirs: list[Path]) -> None:
    """Submit the trials that have no result and are not queued already; print how to follow them."""
    waiting = queued_on_slurm([p for p in planned if not p.done], "nothing was submitted")
    todo = [p for p in planned if not p.done and p.dir not in waiting]
    done = sum(p.done for p in planned)
    shown = ", ".join(map(str, sweep_dirs))
    print(f"sweep {shown}: {len(planned)} trials, {done} done, {len(waiting)} queued already, {len(todo)} to submit")
    if not todo:
        return
    jobs = [(p.dir, task_config(p), p.setting.overrides) for p in todo]
    sub = slurm.submit(jobs, config.cluster, sweep_dirs, collect.options(config))
    ids = ",".join([sub.array_id, sub.collect_id])
    print(
        f"submitted {len(todo)} trials as SLURM job array {sub.array_id}; job {sub.collect_id} collects the table after it"
    )
    print(f"  outputs: {' '.join(str(d.resolve()) for d in sweep_dirs)}   logs: {sub.folder}")
    print(f"  watch:   squeue -j {ids}")
    for d in sweep_dirs:
        print(f"  table:   python -m xfer collect {d.resolve()}   (job {sub.collect_id} writes table.md when the array ends)")
    if config.cluster.wait:
        try:
            slurm.wait([sub.array_id, sub.collect_id])
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
