"""What SLURM says of a trial's job: the store's one client of SLURM's commands.

A trial submitted to SLURM has a ``slurm.json`` naming its job; whether that job is still queued, running
or requeued decides whether the trial may be submitted or trained again, and what ``status`` shows. Every
question goes through :func:`_run`: one timeout (:data:`TIMEOUT_S`) and one policy: a command that is
missing, does not answer in time or fails raises :class:`QueueUnreadable` naming the command and what
failed, never an empty answer (an empty answer would send trials that still run to be trained again).

``squeue -j`` with one job id it does not know exits 1 ("Invalid job id specified"; SLURM 22.05 asks for
that job alone, and with several ids loads all jobs and filters, so unknown ids are simply absent). Some
versions are said to refuse a whole list for one unknown id, so a list that gets that answer is asked
again id by id: an id refused on its own is one SLURM has forgotten, which ended long ago.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

TIMEOUT_S = 120  # for every command: a busy controller answers within seconds; a dead one never
INVALID_JOB = "Invalid job id specified"
# The states of a job that is still queued, running or about to run again (squeue's states other than the
# ended ones); a requeued job is PENDING again, REQUEUED only for a moment.
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
          "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD")  # fmt: skip
RUNNING = ("CONFIGURING", "RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT")


class QueueUnreadable(RuntimeError):
    """SLURM's queue could not be read: which trials still run is unknown, so nothing may be submitted
    (or run here) on a guess. The message says what failed; ``fix`` what to do."""

    def __init__(self, message: str, fix: str = "try again when the controller answers") -> None:
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class JobState:
    """What SLURM says of one job: its state word (PENDING, RUNNING, ..., COMPLETED, FAILED, ...) and how
    often it was requeued (known for the jobs the controller still holds)."""

    state: str
    restarts: int = 0

    @property
    def active(self) -> bool:
        """SLURM still has the job: it will run (again), so whatever its folder says is not final."""
        return self.state in ACTIVE

    @property
    def running(self) -> bool:
        return self.state in RUNNING


@dataclass(frozen=True)
class Limits:
    """What SLURM lets one submission hold, as ``scontrol show config`` says: ``max_array_size``, tasks per array
    (indices run 0 to MaxArraySize - 1). MaxSubmitJobs is not there: it belongs to a QOS or an association
    (``sacctmgr``, accounting only), and a sweep over it is refused by sbatch, which the launch reports in one
    message with what went out before (``xfer.launch.slurm.SubmissionRefused``); the config's MaxJobCount is the
    controller's record limit for all users, where a pending array is one record, so it caps no sweep."""

    max_array_size: int


def _shown(cmd: list[str]) -> str:
    """The command as a message names it: a long list of job ids as its count."""
    words = [f"<{len(w.split(','))} job ids>" if "," in w and w.replace(",", "").replace("_", "").isdigit()
             else w for w in cmd]  # fmt: skip
    return f"`{' '.join(words)}`"


def _run(cmd: list[str]) -> str:
    """The standard output of a SLURM command; :class:`QueueUnreadable` when it is missing, does not answer in
    :data:`TIMEOUT_S` seconds or exits with an error (its message then holds the command's stderr)."""
    if shutil.which(cmd[0]) is None:
        raise QueueUnreadable(f"{cmd[0]} is not on PATH, so what SLURM runs cannot be known",
                              "run this where SLURM's commands are, or delete the slurm.json of trials whose jobs "
                              "have ended")  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise QueueUnreadable(f"{_shown(cmd)} gave no answer in {TIMEOUT_S} s") from None
    if out.returncode != 0:
        raise QueueUnreadable(f"{_shown(cmd)} exited with status {out.returncode}: "
                              f"{out.stderr.strip() or 'no message'}")  # fmt: skip
    return out.stdout


def _squeue(job_ids: list[str]) -> str:
    """squeue's lines (``id|state|restarts|``) for these ids, ended jobs it still holds included."""
    try:
        return _run(["squeue", "-h", "-r", "-t", "all", "-O", "JobArrayID:|,State:|,RestartCnt:|",
                     "-j", ",".join(job_ids)])  # fmt: skip
    except QueueUnreadable as e:
        if INVALID_JOB not in str(e):
            raise
    if len(job_ids) == 1:
        return ""  # SLURM has forgotten the job: it ended long ago
    return "".join(_squeue([j]) for j in job_ids)


def _parse(text: str) -> dict[str, JobState]:
    """``id|state|restarts|`` lines (sacct's have no restarts) as job states; ``CANCELLED by 0`` is CANCELLED."""
    found = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 2 and fields[0]:
            restarts = fields[2] if len(fields) > 2 and fields[2].isdigit() else "0"
            found[fields[0]] = JobState(fields[1].split()[0] if fields[1] else "", int(restarts))
    return found


def _ended(job_ids: list[str]) -> dict[str, JobState]:
    """sacct's word on jobs that left squeue, where it answers: without accounting (or when it fails) ended
    jobs the controller has let go are simply unknown."""
    try:
        return _parse(_run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)]))
    except QueueUnreadable:
        return {}


def _of(line_id: str, job_id: str) -> bool:
    """Whether squeue's ``line_id`` is ``job_id`` or a task of the array ``job_id`` (``12_3`` of ``12``)."""
    return line_id == job_id or ("_" not in job_id and re.fullmatch(rf"{re.escape(job_id)}_\d+", line_id) is not None)


def states(job_ids: list[str]) -> dict[str, JobState]:
    """SLURM's word on each of ``job_ids`` (a job, or an array task such as ``12_3``): ``squeue`` first (with
    the restart count; it holds ended jobs for a few minutes too), then ``sacct`` for those that left it. A
    job neither knows is absent. :class:`QueueUnreadable` when squeue cannot be read."""
    if not job_ids:
        return {}
    found = _parse(_squeue(list(dict.fromkeys(job_ids))))
    rest = [j for j in dict.fromkeys(job_ids) if j not in found]
    if rest:
        found.update({k: v for k, v in _ended(rest).items() if k not in found})
    return {j: found[j] for j in job_ids if j in found}


def active(job_ids: list[str]) -> set[str]:
    """Those of ``job_ids`` that SLURM still has queued, running or about to run again; an array's id is
    active while any of its tasks is. :class:`QueueUnreadable` when squeue cannot be read."""
    if not job_ids:
        return set()
    found = _parse(_squeue(list(dict.fromkeys(job_ids))))
    return {j for j in job_ids if any(_of(k, j) and s.active for k, s in found.items())}


def partitions() -> list[str]:
    """The cluster's partition names (``sinfo``), in its order."""
    return list(time_limits()[0])


def time_limits() -> tuple[dict[str, str], str | None]:
    """Each partition's time limit as ``sinfo`` shows it (``%l``: ``infinite``, ``10:00``, ``1:31:00``,
    ``2-12:00:00``), in sinfo's order, and the default partition's name (None: there is none)."""
    found, default = {}, None
    for line in _run(["sinfo", "-h", "-o", "%P|%l"]).splitlines():
        name, _, limit = line.strip().partition("|")
        if name.endswith("*"):
            name = default = name[:-1]
        if name:
            found.setdefault(name, limit.strip())
    return found, default


def minutes(limit: str) -> float | None:
    """A time limit as sinfo shows it (``[days-][hours:]minutes:seconds``), in minutes; None for none
    (``infinite``) or one it does not spell so."""
    days, _, clock = limit.rpartition("-")
    try:
        parts = [int(x) for x in clock.split(":")]
        whole_days = int(days) if days else 0
    except ValueError:
        return None
    if not 2 <= len(parts) <= 3:
        return None
    hours, mins, secs = ([0] + parts)[-3:]
    return whole_days * 1440 + hours * 60 + mins + secs / 60


def limits() -> Limits:
    """What one submission may hold, from ``scontrol show config`` (see :class:`Limits`)."""
    config = _run(["scontrol", "show", "config"])
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    if found is None:
        raise QueueUnreadable("`scontrol show config` names no MaxArraySize, so how to split the sweep into arrays "
                              "is unknown")  # fmt: skip
    return Limits(int(found.group(1)))


def requeue(job_id: str) -> None:
    """Put the job back in the queue (``scontrol requeue``): it runs again under the same id."""
    _run(["scontrol", "requeue", job_id])
