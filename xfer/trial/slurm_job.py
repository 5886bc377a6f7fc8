"""What each task of a SLURM job array runs, in each of its processes: one trial, resumable.

The launcher (``xfer.launch.slurm``) submits :class:`TrialJob` through submitit; this module is the in-job
half. Rank 0 takes the trial's lock (``xfer.store.locks``) and decides for the whole job whether this run
trains; on SLURM's warning signal every rank checkpoints and the job requeues itself.

Rank 0 waits for the lock (``cluster.lock_wait_s``), since whoever holds it may be about to let go (a local
launcher finishing the trial, a ``status`` of an older xfer that looked by taking it). A job that finds the
trial done ends cleanly; one that is still kept out when the wait is over leaves the trial to its holder
and says so in ``failure.json`` (``status`` shows the trial running while the holder trains it, and its
cause once the holder is gone without a result), so no trial is left looking queued beside an ended job.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from xfer.store import locks, queue
from xfer.store.files import FAILURE, record_failure
from xfer.store.state import finished

log = logging.getLogger(__name__)


def this_run() -> str:
    """What tells this run of the job from its earlier ones: a requeued job keeps its id, but SLURM counts its
    restarts, and each run's job step has its own launcher (srun) port."""
    return f"{os.environ.get('SLURM_RESTART_COUNT', '0')}.{os.environ.get('SLURM_STEP_LAUNCHER_PORT', '0')}"


def claim(out: Path, job_id: str, lock_wait_s: float) -> tuple[locks.TrialLock | None, str]:
    """Rank 0: (the trial's lock, "") when this run trains; (None, why not) when it does not: the trial is
    done, or (recorded in ``failure.json``) another launcher kept its lock for ``lock_wait_s`` seconds, or
    the file system cannot lock files here."""
    try:
        lock = locks.take(out)
        if lock is None:
            log.warning("another launcher holds the trial's lock; waiting up to %g s for it (cluster.lock_wait_s)",
                        lock_wait_s)  # fmt: skip
            lock = locks.wait(out, lock_wait_s)
    except locks.LocksUnsupported as e:
        record_failure(out, str(e), job_id=job_id)
        return None, str(e)
    if finished(out):
        if lock is not None:
            lock.release()
        return None, "trial done already"
    if lock is None:
        cause = f"lock held by another launcher for {lock_wait_s:g} s (cluster.lock_wait_s); this job left the trial to it"
        record_failure(out, cause, job_id=job_id)
        return None, cause
    return lock, ""


class TrialJob:
    """What each array task runs (in each of its processes): one trial, resumable."""

    def __init__(self, trial_dir: str, max_requeues: int, lock_wait_s: float = 600.0) -> None:
        self.trial_dir = trial_dir
        self.max_requeues = max_requeues
        self.lock_wait_s = lock_wait_s

    def __call__(self) -> str:
        import submitit

        from xfer.trial import dist  # light: a file-system rendezvous

        env = submitit.JobEnvironment()
        out = Path(self.trial_dir)
        rank = env.global_rank
        handlers = [logging.StreamHandler(sys.stdout)]
        if rank == 0:
            handlers.append(logging.FileHandler(out / "job.log"))
        logging.basicConfig(level=logging.INFO, format=f"[%(asctime)s r{rank}] %(name)s: %(message)s",
                            handlers=handlers, force=True)  # fmt: skip
        run = this_run()
        lock = None
        if rank == 0:  # rank 0 decides for the whole job whether this run trains; the others follow it
            lock, skip = claim(out, env.job_id, self.lock_wait_s)
            if skip:
                log.warning("%s: %s", skip, out)
                if env.num_tasks > 1:
                    dist.publish(out / ".rendezvous", env.job_id, run, dist.SKIPPED)
                return str(out)
            (out / FAILURE).unlink(missing_ok=True)
        stop = threading.Event()
        signal.signal(env._usr_sig(), lambda *_: stop.set())  # preemption / time-limit warning
        signal.signal(signal.SIGTERM, self._terminated)
        # only now torch and detectron2 (seconds to import, minutes on a loaded node): a job cancelled meanwhile
        # holds its trial already, and must say so in failure.json rather than die silently
        from xfer.trial import hooks, runner

        try:
            wait_s = self.lock_wait_s + 600  # rank 0 publishes once it has the lock (or gave up waiting for it)
            address = dist.rendezvous(out / ".rendezvous", env.job_id, run, rank, wait_s) if env.num_tasks > 1 else ""
            if address is None:
                log.info("rank 0 does not train this run of the job (see its log); nothing to do")
                return str(out)
            me = runner.Rank(rank, env.num_tasks, env.local_rank, env.num_tasks // env.num_nodes, address)
            info = {"slurm_job_id": env.job_id, "slurm_restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}
            runner.run_rank(out, me, stop.is_set, info)
        except hooks.Interrupted as e:
            self._requeue(env, rank, e.iteration)
        except Exception as e:
            if finished(out):  # a rank failed in teardown, after result.json was written: the trial is done
                log.warning("trial done (result.json written), then: %s: %s", type(e).__name__, e)
                return str(out)
            if rank == 0:
                record_failure(out, f"{type(e).__name__}: {e}", traceback.format_exc(), job_id=env.job_id)
            raise
        finally:
            if lock is not None:
                lock.release()
        return str(out)

    def _terminated(self, signum, frame) -> None:
        """Record why and end the process now. Not by raising SystemExit: arriving in the middle of an import (torch
        and detectron2 take seconds), it can be swallowed by a library's broad except, and the half-imported
        module then fails with an error of its own that would be recorded over this cause."""
        if not finished(Path(self.trial_dir)):  # a requeue sends it too: status asks SLURM before it reads this
            record_failure(Path(self.trial_dir), "terminated (SIGTERM: cancelled, preempted or out of time)",
                           job_id=os.environ.get("SLURM_JOB_ID"))  # fmt: skip
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(143)  # the kernel releases the trial's lock with the process

    def _requeue(self, env, rank: int, iteration: int) -> None:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if rank == 0:
            if restarts >= self.max_requeues:
                record_failure(Path(self.trial_dir), f"stopped at iteration {iteration} after {restarts} requeues",
                               job_id=env.job_id)
                raise RuntimeError(f"not requeued: {restarts} requeues already (cluster.max_requeues)")
            log.warning("checkpoint saved at iteration %d; requeueing job %s", iteration, env.job_id)
            try:
                queue.requeue(env.job_id)
            except queue.QueueUnreadable as e:
                record_failure(Path(self.trial_dir), f"stopped at iteration {iteration}: the requeue failed: {e}",
                               job_id=env.job_id)  # fmt: skip
                raise
        sys.exit(-1)  # SystemExit, not an error: submitit records no result, so the requeued job runs again
