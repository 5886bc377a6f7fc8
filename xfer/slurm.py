"""SLURM: a sweep becomes one job array (through submitit) plus a collect job that runs after it.

Submission returns at once. Each array task is one trial: ``nodes x tasks_per_node`` processes, one per
GPU, joined into one process group from SLURM's environment (rendezvous address published on the shared
file system, so jobs sharing a node never collide). On SLURM's warning signal (preemption or time limit)
every rank finishes its iteration, rank 0 saves a detectron2 checkpoint there, and the job requeues
itself; a requeue without warning resumes from the last periodic checkpoint. A failed or cancelled trial
leaves ``failure.json`` with the cause; launching the same command again submits only trials that have no
``result.json`` and are not already queued.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from xfer.files import FAILURE, SLURM_RECORD, record_failure

log = logging.getLogger(__name__)


def tasks_per_node(cluster: DictConfig) -> int:
    if cluster.tasks_per_node == "auto":
        return max(int(cluster.gpus_per_node), 1)
    return int(cluster.tasks_per_node)


def problems(cluster: DictConfig, batch: int, needs_gpu: bool) -> list[str]:
    """What would make the submission fail or the trials wrong, before anything is queued."""
    if shutil.which("sbatch") is None:
        return ["cluster=slurm: sbatch is not on PATH. Launch from a SLURM login node, or use cluster=local."]
    found = []
    if cluster.partition:
        names = _run(["sinfo", "-h", "-o", "%R"]).split()
        if cluster.partition not in names:
            found.append(f"cluster.partition={cluster.partition}: no such partition (sinfo lists: {', '.join(names)}).")
    world = int(cluster.nodes) * tasks_per_node(cluster)
    if needs_gpu and int(cluster.gpus_per_node) < 1:
        found.append("the benchmark trains on GPUs: set cluster.gpus_per_node (one process per GPU).")
    if batch % world:
        found.append(f"cluster.nodes x tasks per node = {world} processes cannot share the global batch {batch} "
                     "evenly (it stays fixed whatever the process count).")  # fmt: skip
    return found


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def queued(job_ids: list[str]) -> set[str]:
    """Those of ``job_ids`` SLURM still has pending or running."""
    if not job_ids:
        return set()
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True, text=True)
    return set(out.stdout.split()) & set(job_ids) if out.returncode == 0 else set()


def queued_trials(trial_dirs: list[Path]) -> set[Path]:
    """Trial folders whose latest submission is still in the queue (so must not be submitted again)."""
    ids = {}
    for d in trial_dirs:
        record = Path(d) / SLURM_RECORD
        if record.exists():
            ids[json.loads(record.read_text())["job_id"]] = Path(d)
    return {ids[j] for j in queued(list(ids))}


def _executor(folder: Path, cluster: DictConfig, **params):
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm", slurm_max_num_timeout=cluster.max_requeues)
    common = {"slurm_partition": cluster.partition, "slurm_account": cluster.account, "slurm_qos": cluster.qos}
    ex.update_parameters(slurm_setup=list(cluster.setup), **{k: v for k, v in common.items() if v}, **params)
    return ex


@dataclass(frozen=True)
class Submission:
    array_id: str
    job_ids: list[str]
    collect_id: str
    folder: Path


def submit(trials: list[tuple[Path, DictConfig | dict, str]], cluster: DictConfig, sweep_dir: Path) -> Submission:
    """Submit (trial dir, composed config, overrides) as one array, then the collect job after it."""
    from xfer.trial import write_job

    folder = sweep_dir.resolve() / "_slurm"
    for trial_dir, cfg, overrides in trials:
        write_job(trial_dir, cfg, overrides)
    gpus = int(cluster.gpus_per_node)
    params = {
        "name": f"xfer-{sweep_dir.name}", "timeout_min": int(cluster.time_min), "nodes": int(cluster.nodes),
        "tasks_per_node": tasks_per_node(cluster), "cpus_per_task": int(cluster.cpus_per_task),
        "slurm_array_parallelism": int(cluster.array_parallelism), "slurm_signal_delay_s": int(cluster.signal_delay_s),
        "slurm_additional_parameters": dict(cluster.sbatch),
    }  # fmt: skip
    for key, value in (("gpus_per_node", gpus or None), ("mem_gb", cluster.mem_gb),
                       ("slurm_constraint", cluster.constraint), ("slurm_exclude", cluster.exclude)):  # fmt: skip
        if value:
            params[key] = value
    ex = _executor(folder, cluster, **params)
    with ex.batch():
        jobs = [ex.submit(TrialJob(str(d.resolve()), int(cluster.max_requeues))) for d, _, _ in trials]
    for (trial_dir, _, _), job in zip(trials, jobs, strict=True):
        record = {"job_id": job.job_id, "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "logs": str(folder)}
        (trial_dir / SLURM_RECORD).write_text(json.dumps(record))
    array_id = jobs[0].job_id.split("_")[0]
    collector = _executor(folder, cluster, name=f"xfer-collect-{sweep_dir.name}", timeout_min=30, nodes=1,
                          tasks_per_node=1, cpus_per_task=1,
                          slurm_additional_parameters={"dependency": f"afterany:{array_id}"})  # fmt: skip
    collect_job = collector.submit(collect, str(sweep_dir.resolve()))
    return Submission(array_id, [j.job_id for j in jobs], collect_job.job_id, folder)


def collect(sweep_dir: str) -> str:
    """The collect job: the table of every finished trial of the sweep folder."""
    from xfer.collect import collect as collect_dir

    report = collect_dir([Path(sweep_dir)])
    print(report.markdown)
    return report.markdown


def wait(job_ids: list[str], poll_s: float = 2.0) -> None:
    """Block until SLURM has none of ``job_ids`` pending or running."""
    while queued(job_ids):
        time.sleep(poll_s)


class TrialJob:
    """What each array task runs (in each of its processes): one trial, resumable."""

    def __init__(self, trial_dir: str, max_requeues: int) -> None:
        self.trial_dir = trial_dir
        self.max_requeues = max_requeues

    def __call__(self) -> str:
        import submitit

        from xfer import dist, engine, trial

        env = submitit.JobEnvironment()
        out = Path(self.trial_dir)
        rank = env.global_rank
        handlers = [logging.StreamHandler(sys.stdout)]
        if rank == 0:
            handlers.append(logging.FileHandler(out / "job.log"))
        logging.basicConfig(level=logging.INFO, format=f"[%(asctime)s r{rank}] %(name)s: %(message)s",
                            handlers=handlers, force=True)  # fmt: skip
        if trial.read_result(out) is not None:
            log.info("trial done already: %s", out)
            return str(out)
        if rank == 0:
            (out / FAILURE).unlink(missing_ok=True)
        stop = threading.Event()
        signal.signal(env._usr_sig(), lambda *_: stop.set())  # preemption / time-limit warning
        signal.signal(signal.SIGTERM, self._terminated)
        try:
            address = dist.rendezvous(out / ".rendezvous", env.job_id, rank) if env.num_tasks > 1 else ""
            me = trial.Rank(rank, env.num_tasks, env.local_rank, env.num_tasks // env.num_nodes, address)
            trial.run_rank(out, me, stop.is_set, {"slurm_job_id": env.job_id})
        except engine.Interrupted as e:
            self._requeue(env, rank, e.iteration)
        except Exception as e:
            if rank == 0:
                record_failure(out, f"{type(e).__name__}: {e}", traceback.format_exc(), job_id=env.job_id)
            raise
        return str(out)

    def _terminated(self, signum, frame) -> None:
        record_failure(Path(self.trial_dir), "terminated (SIGTERM: cancelled, preempted or out of time)",
                       job_id=os.environ.get("SLURM_JOB_ID"))
        sys.exit(143)

    def _requeue(self, env, rank: int, iteration: int) -> None:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if rank == 0:
            if restarts >= self.max_requeues:
                record_failure(Path(self.trial_dir), f"stopped at iteration {iteration} after {restarts} requeues",
                               job_id=env.job_id)
                raise RuntimeError(f"not requeued: {restarts} requeues already (cluster.max_requeues)")
            log.warning("checkpoint saved at iteration %d; requeueing job %s", iteration, env.job_id)
            subprocess.run(["scontrol", "requeue", env.job_id], check=True)
        sys.exit(-1)  # SystemExit, not an error: submitit records no result, so the requeued job runs again
