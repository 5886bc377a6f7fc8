"""SLURM: a sweep becomes one job array (through submitit) plus a collect job that runs after it.

Submission returns at once. Each array task is one trial: ``nodes x tasks_per_node`` processes, one per
GPU, joined into one process group from SLURM's environment (rendezvous address published on the shared
file system, so jobs sharing a node never collide). On SLURM's warning signal (preemption or time limit)
every rank finishes its iteration, rank 0 saves a detectron2 checkpoint there, and the job requeues
itself; a requeue without warning resumes from the last periodic checkpoint. Each run of a job (each
requeue) publishes its own rendezvous address. Rank 0 holds the trial's lock (``xfer.store.locks``) while the job
trains, so a local launcher never trains the same folder meanwhile; if one already does, the job leaves
the trial to it. A failed or cancelled trial leaves ``failure.json`` with the cause, unless its
``result.json`` was written first (then it is done). Launching the same command again submits only trials
that have no ``result.json`` and are not still queued; when SLURM's queue cannot be read it submits nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from xfer.store.files import SLURM_RECORD, read_json

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


class QueueUnreadable(RuntimeError):
    """SLURM's queue could not be read: which trials still run is unknown, so nothing may be submitted
    (or run here) on a guess. The message says what failed; ``fix`` what to do."""

    def __init__(self, message: str, fix: str = "try again when the controller answers") -> None:
        super().__init__(message)
        self.fix = fix


SQUEUE_TIMEOUT_S = 120


def queued(job_ids: list[str]) -> set[str]:
    """Those of ``job_ids`` SLURM still has pending or running; :class:`QueueUnreadable` when ``squeue`` does
    not answer (an empty answer would send trials that still run to be trained again)."""
    if not job_ids:
        return set()
    if shutil.which("squeue") is None:
        raise QueueUnreadable("squeue is not on PATH, so whether SLURM still runs these trials cannot be known",
                              "launch where SLURM's commands are, or delete the slurm.json of trials whose jobs "
                              "have ended")  # fmt: skip
    cmd = ["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(job_ids)]
    shown = f"`squeue -h -r -o %i -j <{len(job_ids)} job id(s)>`"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=SQUEUE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise QueueUnreadable(f"{shown} gave no answer in {SQUEUE_TIMEOUT_S} s") from None
    if out.returncode != 0:
        if "Invalid job id specified" in out.stderr:
            return set()  # asked for one job, which SLURM has forgotten: it ended long ago
        raise QueueUnreadable(f"{shown} exited with status {out.returncode}: {out.stderr.strip() or 'no message'}")
    return set(out.stdout.split()) & set(job_ids)


def queued_trials(trial_dirs: list[Path]) -> dict[Path, str]:
    """Trial folders whose latest submission (``slurm.json``) SLURM still has pending or running, with its job
    id: they must not be submitted or trained again. SLURM is asked only when some folder has a record."""
    ids = {}
    for d in trial_dirs:
        record = read_json(Path(d) / SLURM_RECORD)
        if record and record.get("job_id"):
            ids[record["job_id"]] = Path(d)
    return {ids[j]: j for j in sorted(queued(list(ids)))}


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


def submit(trials: list[tuple[Path, DictConfig | dict, str]], cluster: DictConfig,
           sweep_dirs: list[Path]) -> Submission:  # fmt: skip
    """Submit (trial dir, composed config, overrides) as one array, then the collect job after it, which writes
    the table of each of the sweep's folders (one per benchmark; the logs go under the first)."""
    from xfer.trial.runner import write_job
    from xfer.trial.slurm_job import TrialJob

    sweep_dir = sweep_dirs[0]
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
                          slurm_additional_parameters=collect_options(cluster, array_id))  # fmt: skip
    collect_job = collector.submit(collect, [str(d.resolve()) for d in sweep_dirs])
    return Submission(array_id, [j.job_id for j in jobs], collect_job.job_id, folder)


def collect_options(cluster: DictConfig, array_id: str) -> dict:
    """The collect job's extra sbatch options: the user's (``cluster.sbatch``: a reservation, a comment, ...,
    which it may need to run at all) and its dependency on the array, joined with the user's own if any."""
    options = dict(cluster.sbatch)
    after = f"afterany:{array_id}"
    options["dependency"] = f"{after},{options['dependency']}" if options.get("dependency") else after
    return options


def collect(sweep_dirs: list[str]) -> str:
    """The collect job: in each sweep folder, the table of its finished trials."""
    from xfer.report.collect import collect as collect_dir

    texts = [collect_dir([Path(d)]).markdown for d in sweep_dirs]
    print("\n".join(texts))
    return "\n".join(texts)


def wait(job_ids: list[str], poll_s: float = 2.0, unreadable_max: int = 30) -> None:
    """Block until SLURM has none of ``job_ids`` pending or running. A queue that cannot be read is asked
    again; :class:`QueueUnreadable` after ``unreadable_max`` failures in a row."""
    failures = 0
    while True:
        try:
            if not queued(job_ids):
                return
            failures = 0
        except QueueUnreadable:
            failures += 1
            if failures >= unreadable_max:
                raise
        time.sleep(poll_s)
