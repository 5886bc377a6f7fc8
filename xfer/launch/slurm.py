"""SLURM: a sweep becomes job arrays (through submitit; as few as MaxArraySize allows) plus a collect job
that runs after all of them.

Submission returns at once. Each array task is one trial: ``nodes x tasks_per_node`` processes, one per
GPU, joined into one process group from SLURM's environment (rendezvous address published on the shared
file system, so jobs sharing a node never collide). On SLURM's warning signal (preemption or time limit)
every rank finishes its iteration, rank 0 saves a detectron2 checkpoint there, and the job requeues
itself; a requeue without warning resumes from the last periodic checkpoint. Each run of a job (each
requeue) publishes its own rendezvous address. Rank 0 holds the trial's lock (``xfer.store.locks``) while the job
trains, so a local launcher never trains the same folder meanwhile; if one already does, the job waits
``cluster.lock_wait_s`` for it, then leaves the trial to it (``failure.json`` says so; see
``xfer.trial.slurm_job``). A failed or cancelled trial leaves ``failure.json`` with the cause, unless its
``result.json`` was written first (then it is done). Launching the same command again submits only trials
that have no ``result.json`` and are not still queued; when SLURM's queue cannot be read it submits nothing.
Every question to SLURM (queue, partitions, limits) goes through ``xfer.store.queue``.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from xfer.store import queue
from xfer.store.files import SLURM_RECORD, slurm_job, write_json_atomic
from xfer.store.queue import QueueUnreadable

log = logging.getLogger(__name__)


def tasks_per_node(cluster: DictConfig) -> int:
    if cluster.tasks_per_node == "auto":
        return max(int(cluster.gpus_per_node), 1)
    return int(cluster.tasks_per_node)


# cluster options that are whole numbers, each with the least it may be and what it counts
COUNTS = {"time_min": (1, "minutes per job (e.g. 1440 for SLURM's 1-00:00:00)"), "nodes": (1, "nodes per trial"),
          "cpus_per_task": (1, "CPUs per process"), "gpus_per_node": (0, "GPUs per node (0: none)"),
          "array_parallelism": (1, "trials running at once"), "signal_delay_s": (0, "seconds of warning"),
          "max_requeues": (0, "requeues after time-outs")}  # fmt: skip
SECONDS = ("lock_wait_s",)  # cluster options that are seconds, 0 or more


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def option_problems(cluster: DictConfig) -> list[str]:
    """Values of the cluster options that SLURM or submitit would refuse, or read as something else (a negative
    ``time_min`` is no limit at all; ``1:00:00`` is a traceback in submitit), one message each."""
    found = [f"cluster.{key}={cluster.get(key)!r}: {what}, a whole number of at least {least}." for key, (least, what)
             in COUNTS.items() if not (_is_int(cluster.get(key)) and cluster.get(key) >= least)]  # fmt: skip
    found += [f"cluster.{key}={cluster.get(key)!r}: seconds, 0 or more." for key in SECONDS
              if not (isinstance(cluster.get(key), int | float) and not isinstance(cluster.get(key), bool)
                      and cluster.get(key) >= 0)]  # fmt: skip
    tasks = cluster.get("tasks_per_node")
    if tasks != "auto" and not (_is_int(tasks) and tasks >= 1):
        found.append(f"cluster.tasks_per_node={tasks!r}: auto (one per GPU) or a whole number of at least 1.")
    mem = cluster.get("mem_gb")
    if mem is not None and not (isinstance(mem, int | float) and not isinstance(mem, bool) and mem > 0):
        found.append(f"cluster.mem_gb={mem!r}: GB per node, more than 0, or null for the partition's default.")
    setup = cluster.get("setup")
    if setup is not None and not (isinstance(setup, ListConfig) and all(isinstance(x, str) for x in setup)):
        found.append(f"cluster.setup={setup!r}: a list of shell lines run before each job (a string would be one "
                     "line per character), e.g. 'cluster.setup=[\"module load cuda\",\"source .venv/bin/activate\"]'.")
    if cluster.get("sbatch") is not None and not isinstance(cluster.get("sbatch"), DictConfig):
        found.append(f"cluster.sbatch={cluster.get('sbatch')!r}: sbatch options by name, e.g. "
                     "+cluster.sbatch.reservation=myres.")  # fmt: skip
    return found


def problems(cluster: DictConfig, batch: int, needs_gpu: bool) -> list[str]:
    """What would make the submission fail or the trials wrong, before anything is queued."""
    found = option_problems(cluster)
    if found:  # the checks below read these values
        return found
    if shutil.which("sbatch") is None:
        return ["cluster=slurm: sbatch is not on PATH. Launch from a SLURM login node, or use cluster=local."]
    try:
        limits, default = queue.time_limits()
    except QueueUnreadable as e:  # said now: the launch would wait as long again for the limits, then stop
        limits, default = None, None
        found.append(f"cluster.partition={cluster.partition}: the partitions could not be listed: {e}; {e.fix}."
                     if cluster.partition else f"cluster=slurm: SLURM's partitions could not be listed: {e}; {e.fix}.")
    if limits is not None and cluster.partition and cluster.partition not in limits:
        found.append(f"cluster.partition={cluster.partition}: no such partition (sinfo lists: {', '.join(limits)}).")
    elif limits is not None and (partition := cluster.partition or default) in limits:
        cap = queue.minutes(limits[partition])
        if cap is not None and int(cluster.time_min) > cap:  # SLURM would refuse the jobs or keep them pending
            found.append(f"cluster.time_min={cluster.time_min}: over partition {partition}'s time limit "
                         f"({limits[partition]} in sinfo, {cap:g} minutes); set cluster.time_min={int(cap)} or less: a "
                         "trial that runs out of time checkpoints, requeues and resumes.")  # fmt: skip
    world = int(cluster.nodes) * tasks_per_node(cluster)
    if needs_gpu and int(cluster.gpus_per_node) < 1:
        found.append("the benchmark trains on GPUs: set cluster.gpus_per_node (one process per GPU).")
    if batch % world:
        found.append(f"cluster.nodes x tasks per node = {world} processes cannot share the global batch {batch} "
                     "evenly (it stays fixed whatever the process count).")  # fmt: skip
    return found


def queued_trials(trial_dirs: list[Path]) -> dict[Path, str]:
    """Trial folders whose latest submission (``slurm.json``) SLURM still has pending or running, with its job
    id: they must not be submitted or trained again. SLURM is asked only when some folder has a record;
    :class:`QueueUnreadable` when its queue cannot be read."""
    ids = {job: Path(d) for d in trial_dirs if (job := slurm_job(d))}
    return {ids[j]: j for j in sorted(queue.active(list(ids)))}


COLLECT_MIN = 30  # the collect job's time limit, in minutes, where the trials' is longer


def _executor(folder: Path, cluster: DictConfig, **params):
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm", slurm_max_num_timeout=cluster.max_requeues)
    common = {"slurm_partition": cluster.partition, "slurm_account": cluster.account, "slurm_qos": cluster.qos}
    ex.update_parameters(slurm_setup=list(cluster.setup), **{k: v for k, v in common.items() if v}, **params)
    return ex


class SubmissionRefused(Exception):
    """sbatch refused a job of the sweep (``reason``: its message); ``arrays`` and ``trials``: what went out before
    it, which SLURM runs; ``refused``: which job (``the sweep's job array 2 of 3``, ``the sweep's collect job``)."""

    def __init__(self, reason: str, refused: str, arrays: list[str], trials: int, total: int) -> None:
        super().__init__(reason)
        self.reason, self.refused, self.arrays, self.trials, self.total = reason, refused, arrays, trials, total

    def explain(self, sweep_dirs: list[Path]) -> str:
        """One message: what SLURM refused and why, what was submitted all the same, and what to run next."""
        head = f"SLURM refused {self.refused} ({self.reason})."
        if not self.arrays:
            return (f"{head} Nothing was submitted: fix what it names (the cluster options, cluster.sbatch) and run "
                    "the same command again.")  # fmt: skip
        arrays = f"job array{'s' * (len(self.arrays) > 1)} {', '.join(self.arrays)}"
        table = " and ".join(f"python -m xfer collect {d.resolve()}" for d in sweep_dirs)
        if self.trials == self.total:
            return (f"{head} The sweep's trials ({self.total}) were submitted ({arrays}) and run; when they end, "
                    f"write the table with {table}.")  # fmt: skip
        return (f"{head} {self.trials} of the sweep's {self.total} trials were submitted ({arrays}) and run; no "
                f"collect job was submitted. Run the same command again to submit the other "
                f"{self.total - self.trials} once SLURM accepts them (queued trials are never submitted twice), "
                f"and write the table with {table}.")  # fmt: skip


def _refusal(error: Exception) -> str:
    """sbatch's message (submitit's FailedJobError holds its stderr) on one line."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip()) or "no message"


@dataclass(frozen=True)
class Submission:
    array_ids: list[str]  # one per array, in submission order
    job_ids: list[str]  # one per trial, in the order given
    collect_id: str
    folder: Path

    @property
    def ids(self) -> list[str]:
        """Every job of the submission: the arrays, then the collect job."""
        return [*self.array_ids, self.collect_id]

    def summary(self) -> str:
        arrays = f"arrays {', '.join(self.array_ids)}" if len(self.array_ids) > 1 else f"array {self.array_ids[0]}"
        after = "them" if len(self.array_ids) > 1 else "it"
        return f"submitted {len(self.job_ids)} trials as SLURM job {arrays}; job {self.collect_id} collects the table after {after}"


def arrays(n: int, limits: queue.Limits) -> list[range]:
    """Which of ``n`` trials (by position) each array gets: at most MaxArraySize each, since an array's
    indices run from 0 to MaxArraySize - 1 (a cluster with arrays off, MaxArraySize 0, gets one job a trial)."""
    size = max(limits.max_array_size, 1)
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def shares(at_once: int, n_arrays: int) -> list[int]:
    """``cluster.array_parallelism`` shared out among ``n_arrays`` arrays (their ``%N``), which SLURM runs side by
    side: whole shares, the first arrays one more where it does not divide (4 over 3: 2, 1, 1); at least 1 each,
    so more arrays than that run one trial each at once."""
    base, rest = divmod(at_once, n_arrays)
    return [max(base + (k < rest), 1) for k in range(n_arrays)]


def submit(trials: list[tuple[Path, DictConfig | dict, str]], cluster: DictConfig,
           sweep_dirs: list[Path], collect_with: dict | None = None) -> Submission:  # fmt: skip
    """Submit (trial dir, composed config, overrides), whose ``trial.yaml`` the launcher has written
    (``xfer.store.handover``), as job arrays within SLURM's MaxArraySize (read first:
    :class:`QueueUnreadable` before anything is submitted when it cannot be), then the collect job after all
    of them, which writes the table of each of the sweep's folders (one per benchmark; the logs go under
    the first). ``cluster.array_parallelism`` is shared out among the arrays, so the sweep never runs more
    trials at once than it says (unless there are more arrays than that: one each then)."""
    from submitit.core.utils import FailedJobError

    from xfer.trial.slurm_job import TrialJob

    parts = arrays(len(trials), queue.limits())
    sweep_dir = sweep_dirs[0]
    folder = sweep_dir.resolve() / "_slurm"
    gpus = int(cluster.gpus_per_node)
    params = {
        "name": f"xfer-{sweep_dir.name}", "timeout_min": int(cluster.time_min), "nodes": int(cluster.nodes),
        "tasks_per_node": tasks_per_node(cluster), "cpus_per_task": int(cluster.cpus_per_task),
        "slurm_signal_delay_s": int(cluster.signal_delay_s), "slurm_additional_parameters": dict(cluster.sbatch),
    }  # fmt: skip
    for key, value in (("gpus_per_node", gpus or None), ("mem_gb", cluster.mem_gb),
                       ("slurm_constraint", cluster.constraint), ("slurm_exclude", cluster.exclude)):  # fmt: skip
        if value:
            params[key] = value
    ex = _executor(folder, cluster, **params)
    array_ids, job_ids = [], []
    for k, (part, at_once) in enumerate(zip(parts, shares(int(cluster.array_parallelism), len(parts)), strict=True)):
        ex.update_parameters(slurm_array_parallelism=at_once)
        try:
            with ex.batch():
                jobs = [ex.submit(TrialJob(str(trials[i][0].resolve()), int(cluster.max_requeues),
                                           float(cluster.lock_wait_s))) for i in part]  # fmt: skip
        except FailedJobError as e:
            refused = f"the sweep's job array {k + 1} of {len(parts)}" if len(parts) > 1 else "the sweep's job array"
            raise SubmissionRefused(_refusal(e), refused, array_ids, len(job_ids), len(trials)) from None
        for i, job in zip(part, jobs, strict=True):  # recorded at once: a later array's failure keeps this one's
            record = {"job_id": job.job_id, "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "logs": str(folder)}
            write_json_atomic(trials[i][0] / SLURM_RECORD, record)
        array_ids.append(jobs[0].job_id.split("_")[0])
        job_ids += [j.job_id for j in jobs]
    # the collect job asks no more time than the trials (a partition's MaxTime that admits them admits it)
    collector = _executor(folder, cluster, name=f"xfer-collect-{sweep_dir.name}",
                          timeout_min=min(COLLECT_MIN, int(cluster.time_min)), nodes=1, tasks_per_node=1,
                          cpus_per_task=1, slurm_additional_parameters=collect_options(cluster, array_ids))  # fmt: skip
    try:
        collect_job = collector.submit(collect, [str(d.resolve()) for d in sweep_dirs], collect_with)
    except FailedJobError as e:
        raise SubmissionRefused(_refusal(e), "the sweep's collect job", array_ids, len(job_ids), len(trials)) from None
    return Submission(array_ids, job_ids, collect_job.job_id, folder)


def collect_options(cluster: DictConfig, array_ids: list[str]) -> dict:
    """The collect job's extra sbatch options: the user's (``cluster.sbatch``: a reservation, a comment, ...,
    which it may need to run at all) and its dependency on every array, joined with the user's own if any."""
    options = dict(cluster.sbatch)
    after = "afterany:" + ":".join(array_ids)
    options["dependency"] = f"{after},{options['dependency']}" if options.get("dependency") else after
    return options


def collect(sweep_dirs: list[str], options: dict | None = None) -> str:
    """The collect job: in each sweep folder, the table of its finished trials (``options``: the launch's
    ``xfer.report.collect.options``, e.g. which methods to compare)."""
    from xfer.report.collect import collect as collect_dir

    texts = [collect_dir([Path(d)], **(options or {})).markdown for d in sweep_dirs]
    print("\n".join(texts))
    return "\n".join(texts)


def wait(job_ids: list[str], poll_s: float = 2.0, unreadable_max: int = 30) -> None:
    """Block until SLURM has none of ``job_ids`` (jobs, or arrays: all their tasks) pending or running. A queue
    that cannot be read is asked again; :class:`QueueUnreadable` after ``unreadable_max`` failures in a row."""
    failures = 0
    while True:
        try:
            if not queue.active(job_ids):
                return
            failures = 0
        except QueueUnreadable:
            failures += 1
            if failures >= unreadable_max:
                raise
        time.sleep(poll_s)
