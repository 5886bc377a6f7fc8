"""Sweeps on a real SLURM (started by the session fixture): arrays, multi-task trials, preemption, failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, imported, launch, results_under, start_slurm
from xfer.report import status
from xfer.store import locks

pytestmark = pytest.mark.slow
CPU = ["cluster=slurm", "benchmark=smoke_fast", "cluster.gpus_per_node=0", "cluster.cpus_per_task=1"]
LONG_ITERS = 150  # long enough to act on a running trial: smoke_fast runs about 0.07-0.2 s an iteration
LONG = f"benchmark.d2.SOLVER.MAX_ITER={LONG_ITERS}"
# One OpenMP thread per task, as the local launcher gives each process: jobs inherit the launch's environment,
# and two tasks spinning two threads each on 2 cores trained 12 times slower (4.7 s/iteration vs 0.38).
ENV = {"OMP_NUM_THREADS": "1"}
STALL_S = 180  # a wait fails when nothing it watches changed for this long, whatever the machine's pace


def snapshot(trial: Path | None, env: dict | None = None) -> tuple:
    """What moves while SLURM and a trial make progress: the queue (job states, restarts) and the trial
    folder's files (names, sizes, times: metrics.json, progress.json, checkpoints, logs)."""
    files = []
    for path in sorted(trial.iterdir()) if trial is not None and trial.exists() else []:
        try:
            files.append((path.name, path.stat().st_size, path.stat().st_mtime_ns))
        except FileNotFoundError:  # a temporary file renamed meanwhile
            pass
    return squeue(env), tuple(files)


def wait_for(predicate, what: str, trial: Path | None = None, stall_s: float = STALL_S, env: dict | None = None):
    """Poll ``predicate`` until it gives a true value and return that. Fail when neither the queue nor the
    trial's files changed for ``stall_s`` seconds, or when the trial's job left the queue without a result
    and the predicate still does not hold: the wait follows progress, not a clock. ``env``: the cluster's
    (the session's by default)."""
    seen, since = None, time.time()
    while True:
        value = predicate()
        if value:
            return value
        now = snapshot(trial, env)
        if now != seen:
            seen, since = now, time.time()
        elif time.time() - since > stall_s:
            raise AssertionError(f"no progress for {stall_s} s waiting for {what}; queue:\n{now[0]}")
        if trial is not None and (trial / "slurm.json").exists() and job_id(trial) not in queued_ids():
            value = predicate()  # it may have come true just before the job ended
            if not value and not (trial / "result.json").exists():
                raise AssertionError(f"job {job_id(trial)} left the queue without a result, waiting for {what}")
            if value:
                return value
        time.sleep(0.5)


def last_iteration(trial: Path) -> int:
    path = trial / "metrics.json"
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1])["iteration"] if lines else -1


def job_id(trial: Path) -> str:
    return json.loads((trial / "slurm.json").read_text())["job_id"]


def queue_of(*jobs: str) -> list[str]:
    """The queue's lines of these jobs (and of their array's tasks) only: other tests' jobs come and go."""
    arrays = {j.split("_")[0] for j in jobs}
    return [line for line in squeue().splitlines() if line.split("|")[0].split("_")[0] in arrays]


def queued_ids() -> set[str]:
    return {line.split("|")[0] for line in squeue().splitlines()}


def squeue(env: dict | None = None) -> str:
    return subprocess.run(["squeue", "-h", "-r", "-O", "JobArrayID:|,State:|,RestartCnt:|"], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}).stdout  # fmt: skip


def test_sweep_is_one_array_and_a_collect_job_writes_the_table(slurm, tmp_path, smoke_fast_made):
    """Two benchmarks in one sweep (VOC and COCO): one array, and the collect job writes each benchmark's table in
    its own folder, not under the default benchmark's name that Hydra's sweep folder has."""
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    sweep = ("-m", *CPU, "benchmark=smoke_fast,coco_smoke_fast", "pretrain=densecl,regioncl", "seed=0")
    run = launch(*sweep, "cluster.wait=true", f"output_root={tmp_path}", env=ENV)
    assert run.returncode == 0, run.output[-4000:]
    assert "4 to submit" in run.stdout and "submitted 4 trials as SLURM job array" in run.stdout
    array = run.stdout.split("job array ")[1].split(";")[0]
    collect_id = run.stdout.split("; job ")[1].split(" ")[0]
    trials = [p.parent for p in results_under(tmp_path)]
    assert len(trials) == 4
    assert sorted(job_id(t) for t in trials) == [f"{array}_{i}" for i in range(4)]  # one array, one task each
    collect_log = next((tmp_path / "smoke_fast" / "_slurm" / collect_id).glob("*_log.out")).read_text()
    for benchmark in ("smoke_fast", "coco_smoke_fast"):
        for setting in (f"{benchmark}/r50_densecl | 1/5 |", f"{benchmark}/r50_regioncl_d | 1/5 |"):
            assert setting in collect_log and setting in (tmp_path / benchmark / "table.md").read_text()
    assert not (tmp_path / "voc0712_c4_24k").exists()
    again = launch(*sweep, f"output_root={tmp_path}", env=ENV)
    assert "4 trials, 4 done, 0 queued or running on SLURM already, 0 to submit" in again.stdout, again.output[-3000:]


def test_a_trial_over_two_tasks_joins_one_process_group(slurm, tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    run = launch("-m", *CPU, "cluster.tasks_per_node=2", "pretrain=densecl", "seed=0", "cluster.wait=true",
                 f"output_root={tmp_path}", env=ENV)  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    (result,) = results_under(tmp_path).values()
    assert result["run"]["world_size"] == 2
    assert any(p.name.startswith("rendezvous-") for p in (tmp_path.rglob(".rendezvous/*")))


def test_preemption_warning_checkpoints_requeues_and_resumes(slurm, tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    t0 = time.time()
    run = launch("-m", *CPU, "pretrain=densecl", "seed=0", LONG, f"output_root={tmp_path}", env=ENV)
    assert run.returncode == 0, run.output[-4000:]
    (trial,) = [p.parent for p in tmp_path.rglob("slurm.json")]
    wait_for(lambda: last_iteration(trial) >= 59, "training to pass iteration 59", trial)
    t_signal = time.time()
    subprocess.run(["scancel", "--signal=USR2", job_id(trial)], check=True)
    result = wait_for(lambda: results_under(tmp_path), "the requeued trial to finish", trial)
    t_done = time.time()
    (r,) = result.values()
    log = (trial / "log.txt").read_text()  # the trial's log, across requeues
    saved = int(log.split("checkpoint saved at iteration ")[1].split(";")[0])
    assert saved >= 59 and f"resuming from iteration {saved + 1}" in log
    assert r["run"]["start_iter"] == saved + 1 and r["run"]["iterations_run"] == LONG_ITERS - saved - 1
    assert r["run"]["max_iter"] == LONG_ITERS and len(results_under(tmp_path)) == 1
    assert not (trial / "failure.json").exists()
    print(f"preemption timeline: submitted 0 s, signal {t_signal - t0:.0f} s (after iteration {saved}), "
          f"finished {t_done - t0:.0f} s")  # fmt: skip


def test_requeue_without_warning_resumes_from_the_last_checkpoint(slurm, tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    run = launch("-m", *CPU, "pretrain=densecl", "seed=0", LONG, "cluster.checkpoint_period=50",
                 f"output_root={tmp_path}", env=ENV)  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    (trial,) = [p.parent for p in tmp_path.rglob("slurm.json")]
    wait_for(lambda: (trial / "model_0000049.pth").exists(), "the iteration-50 checkpoint", trial)
    subprocess.run(["scontrol", "requeue", job_id(trial)], check=True)
    (r,) = wait_for(lambda: results_under(tmp_path), "the requeued trial to finish", trial).values()
    start = r["run"]["start_iter"]
    assert start > 0 and start % 50 == 0 and f"resuming from iteration {start}" in (trial / "log.txt").read_text()
    assert r["run"]["max_iter"] == LONG_ITERS


def test_cancelled_trial_is_recorded_and_only_it_is_resubmitted(slurm, tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    args = ["-m", *CPU, "pretrain=densecl", "seed=0,1", LONG, f"output_root={tmp_path}"]
    assert launch(*args, env=ENV).returncode == 0
    trials = {p.parent.name: p.parent for p in tmp_path.rglob("slurm.json")}
    wait_for(lambda: last_iteration(trials["seed1"]) >= 0, "seed 1 to start training", trials["seed1"])
    cancelled = job_id(trials["seed1"])
    subprocess.run(["scancel", cancelled], check=True)
    wait_for(lambda: not squeue().strip(), "the array and the collect job to end", trials["seed0"])
    failure = json.loads((trials["seed1"] / "failure.json").read_text())
    assert failure["cause"].startswith("terminated (SIGTERM")
    assert f"smoke_fast/r50_densecl,SOLVER.MAX_ITER={LONG_ITERS} | 1/5 |" in (tmp_path / "smoke_fast" / "table.md").read_text()
    kept = job_id(trials["seed0"])
    again = launch(*args, env={**ENV, "PYTHONPROFILEIMPORTTIME": "1"})
    assert "2 trials, 1 done, 0 queued or running on SLURM already, 1 to submit" in again.stdout, again.output[-3000:]
    assert "submitit" in imported(again) and "torch" not in imported(again)  # conversions cached: no torch start-up
    assert job_id(trials["seed0"]) == kept and job_id(trials["seed1"]) != cancelled
    subprocess.run(["scancel", "-u", "root"], check=False)
    wait_for(lambda: not squeue().strip(), "the queue to drain")


SLOW_START = """\
import os, sys, time
from pathlib import Path


class SlowStart:  # in a SLURM job: the import of xfer's trial runner (torch, detectron2) takes 20 s
    def find_spec(self, name, path=None, target=None):
        if name == "xfer.trial.runner" and os.environ.get("SLURM_JOB_ID"):
            sys.meta_path.remove(self)
            marker = Path(os.environ["XFER_TEST_MARKER"])
            marker.write_text("importing")
            time.sleep(20)
            marker.write_text("imported")
        return None


sys.meta_path.insert(0, SlowStart())
"""


def test_a_job_cancelled_while_it_starts_records_why(slurm, tmp_path, smoke_fast_made):
    """Drill: a job cancelled while it imported torch and detectron2 (seconds; minutes on a loaded node) died
    without failure.json, its SIGTERM handler not installed yet. The job now takes its trial's lock and its
    handler before that import: cancelled then, it says so. (A ``sitecustomize`` on PYTHONPATH makes the import
    take 20 s in SLURM jobs; before, the lock was taken only after it.)"""
    smoke_fast_made(tmp_path / "out")  # its inputs made (tests/conftest.py): this test is about how trials run
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_START)
    marker = tmp_path / "marker"
    env = {**ENV, "PYTHONPATH": f"{hooks}{os.pathsep}{REPO}", "XFER_TEST_MARKER": str(marker)}
    run = launch("-m", *CPU, "pretrain=densecl", "seed=0", f"output_root={tmp_path / 'out'}", env=env)
    assert run.returncode == 0, run.output[-4000:]
    (trial,) = [p.parent for p in tmp_path.rglob("slurm.json")]
    importing = lambda: marker.exists() and marker.read_text() == "importing"  # noqa: E731
    wait_for(lambda: marker.exists(), "the job to start importing its runner", trial)
    while importing() and not locks.held(trial):
        time.sleep(0.2)
    assert importing(), "the job took its trial's lock only after importing torch and detectron2"
    subprocess.run(["scancel", job_id(trial)], check=True)
    wait_for(lambda: (trial / "failure.json").exists(), "the cancelled job's failure.json", trial)
    assert json.loads((trial / "failure.json").read_text())["cause"].startswith("terminated (SIGTERM")
    wait_for(lambda: not squeue().strip(), "the queue to drain")


def test_bad_submissions_are_refused_before_anything_is_queued(slurm, tmp_path):
    before = queued_ids()  # earlier tests' jobs may still be ending: only a new job id would be ours
    run = launch("-m", *CPU, "cluster.partition=nosuch", f"paths.datasets={tmp_path}/none", "benchmark.generate=false",
                 f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 2
    assert "cluster.partition=nosuch: no such partition (sinfo lists: debug, other)" in run.stderr
    assert "dataset voc_2007_trainval: missing" in run.stderr
    run = launch("-m", *CPU, "cluster.tasks_per_node=3", f"output_root={tmp_path}")
    assert run.returncode == 2 and "3 processes cannot share the global batch 2" in run.stderr
    run = launch(
        "-m", "cluster=slurm", "benchmark=voc0712_c4_24k", "cluster.gpus_per_node=0", f"output_root={tmp_path}"
    )
    assert run.returncode == 2 and "set cluster.gpus_per_node" in run.stderr
    no_slurm = {"PATH": os.path.dirname(sys.executable)}  # the venv alone: no SLURM clients
    run = launch("-m", *CPU, f"output_root={tmp_path}", env=no_slurm)
    assert run.returncode == 2 and "sbatch is not on PATH" in run.stderr
    assert not queued_ids() - before and not (tmp_path / "smoke_fast" / "_slurm").exists()
    plan = launch("-m", "cluster=slurm", "benchmark=smoke_fast", "cluster.gpus_per_node=2", "seed=0-1", "plan=true",
                  f"output_root={tmp_path}")  # fmt: skip
    assert plan.returncode == 0 and "2 trials: 2 to run; 2 GPU device(s) per trial" in plan.stdout, plan.output[-3000:]


def progress(trial: Path) -> dict:
    path = trial / "progress.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


RANK_0_STARTS_LATE = """\
import os, time

if os.environ.get("SLURM_PROCID") == "0" and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:
    time.sleep(15)
"""


def test_two_task_trial_requeued_twice_rejoins_and_trains_exactly_max_iter(slurm, tmp_path, smoke_fast_made):
    """A requeued job keeps its id: each run must rendezvous afresh (issue 12, item 2); while SLURM has the
    job again, status says requeued or running, never failed (item 6); its rank 0 holds the lock (item 3).

    In every requeued run rank 0 starts 15 s after rank 1 (a slow node: a ``sitecustomize`` on PYTHONPATH,
    which Python imports at start-up), so rank 1 always looks for the address before rank 0 publishes it."""
    smoke_fast_made(tmp_path / 'out')  # its inputs made (tests/conftest.py): this test is about how trials run
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(RANK_0_STARTS_LATE)
    env = {**ENV, "PYTHONPATH": f"{hooks}{os.pathsep}{REPO}"}
    run = launch("-m", *CPU, "cluster.tasks_per_node=2", "pretrain=densecl", "seed=0", "+d2.SOLVER.MAX_ITER=100",
                 "cluster.checkpoint_period=20", f"output_root={tmp_path / 'out'}", env=env)  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    (trial,) = [p.parent for p in tmp_path.rglob("slurm.json")]
    job = job_id(trial)
    shown = []  # the status of the trial each time it was asked while the SIGTERM's failure.json was on disk
    resumes = []  # where each requeued run must resume: after the last checkpoint on disk when it was killed
    locked = []  # whether the trial's lock was held while the job trained, before each requeue
    for n, at in ((1, 25), (2, 65)):  # each time a few iterations after a checkpoint (every 20 iterations)
        wait_for(lambda at=at: progress(trial).get("iteration", 0) >= at, f"run {n} to pass iteration {at}", trial)
        locked.append(locks.held(trial))
        subprocess.run(["scontrol", "requeue", job], check=True)
        wait_for(lambda: (trial / "failure.json").exists(), f"run {n} to end", trial)
        resumes.append(int((trial / "last_checkpoint").read_text().strip()[len("model_") : -len(".pth")]) + 1)
        while (trial / "failure.json").exists() and job in queued_ids():
            shown.append({s.label: s.state for s in status.scan([tmp_path])})
            time.sleep(0.5)
        wait_for(lambda: progress(trial).get("start_iter") == resumes[-1], f"run {n + 1} to resume", trial)
    (r,) = wait_for(lambda: results_under(tmp_path), "the twice requeued trial to finish", trial).values()
    log = (trial / "log.txt").read_text()
    assert [int(line.split("resuming from iteration ")[1].split()[0]) for line in log.splitlines()
            if "resuming from iteration" in line] == resumes  # fmt: skip
    assert 0 < resumes[0] < resumes[1] and r["run"]["start_iter"] == resumes[1]
    assert r["run"]["world_size"] == 2
    assert r["run"]["start_iter"] + r["run"]["iterations_run"] == r["run"]["max_iter"] == 100
    assert last_iteration(trial) == 99 and len(results_under(tmp_path)) == 1
    assert "Restarts=2" in subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert not (trial / "failure.json").exists() and locked == [True, True]  # the job held the trial's lock
    assert len(list((trial / ".rendezvous").iterdir())) == 1  # the earlier runs' addresses are gone
    states = {state for row in shown for state in row.values()}
    assert shown and "failed" not in states and states <= {"requeued", "queued", "running"}, shown


def failing_squeue(tmp_path: Path) -> dict:
    """PATH with an squeue in front of the real one that fails as a busy controller does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "squeue"
    fake.write_text("#!/bin/sh\necho 'squeue: error: slurm_receive_msg: Socket timed out on send/recv operation' >&2\n"
                    "exit 1\n")  # fmt: skip
    fake.chmod(0o755)
    return {**ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_partitions_that_cannot_be_listed_stop_the_launch_before_anything_is_submitted(slurm, tmp_path, smoke_fast_made):
    """sinfo failing as it does when the controller does not answer: the launch says so before submitting (without a
    partition named it went on, to wait as long again for the limits)."""
    smoke_fast_made(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text("#!/bin/sh\necho 'sinfo: error: Unable to contact slurm controller (connect failure)' >&2\n"
                                   "exit 1\n")  # fmt: skip
    (bin_dir / "sinfo").chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    run = launch("-m", *CPU, "pretrain=densecl", "seed=0", f"output_root={tmp_path}", env=env)
    assert run.returncode == 2, run.output[-3000:]
    assert ("cluster=slurm: SLURM's partitions could not be listed: `sinfo -h -o %P|%l` exited with status 1: sinfo: "
            "error: Unable to contact slurm controller (connect failure)") in run.stderr, run.stderr
    assert not list(tmp_path.rglob("slurm.json"))


def test_an_unreadable_queue_stops_the_relaunch_and_nothing_is_submitted_or_run_twice(slurm, tmp_path, smoke_fast_made):
    """Issue 12, item 3: squeue failing must not read as an empty queue."""
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    trial_args = ["benchmark=smoke_fast", "pretrain=densecl", "seed=0", "+cluster.sbatch.hold=true", f"output_root={tmp_path}"]
    slurm_args = ["-m", *CPU, *trial_args]
    first = launch(*slurm_args, env=ENV)  # held: stays pending, so it is still queued at every relaunch below
    assert first.returncode == 0 and "1 to submit" in first.stdout, first.output[-3000:]
    (trial,) = [p.parent for p in tmp_path.rglob("slurm.json")]
    job, collect_id, broken = job_id(trial), first.stdout.split("; job ")[1].split(" ")[0], failing_squeue(tmp_path)
    try:
        relaunch_with_an_unreadable_queue(slurm_args, trial_args, trial, [job, collect_id], broken)
    finally:
        subprocess.run(["scancel", job, collect_id], check=True)
    wait_for(lambda: not queue_of(job, collect_id), "the jobs to leave the queue")


def relaunch_with_an_unreadable_queue(slurm_args: list[str], trial_args: list[str], trial: Path, jobs: list[str],
                                      broken: dict) -> None:  # fmt: skip
    job, queue = jobs[0], queue_of(*jobs)
    again = launch(*slurm_args, env=broken)
    assert again.returncode == 2, again.output[-3000:]
    assert "could not read SLURM's queue" in again.stderr and "Socket timed out on send/recv" in again.stderr
    assert "Nothing was submitted; try again when the controller answers." in again.stderr
    assert "submitted" not in again.stdout and queue_of(*jobs) == queue and job_id(trial) == job
    again = launch(*slurm_args, env=ENV)
    assert "1 trials, 0 done, 1 queued or running on SLURM already, 0 to submit" in again.stdout, again.output[-3000:]
    here = launch("-m", *trial_args, env=ENV)  # cluster=local: SLURM has the trial, so not here
    assert here.returncode == 0, here.output[-3000:]
    assert f"1 trial(s) still queued or running on SLURM (job {job}): not run here" in here.stdout
    assert not (trial / "log.txt").exists() and not (trial / "result.json").exists()
    here = launch("-m", *trial_args, env=broken)
    assert here.returncode == 2 and "Nothing was run; try again when the controller answers." in here.stderr
    assert not (trial / "log.txt").exists() and queue_of(*jobs) == queue


HOLDER = """\
import sys
from xfer.store import locks
lock = locks.take(sys.argv[1])
print("held" if lock else "refused", flush=True)
sys.stdin.readline()
"""


def test_a_slurm_job_kept_out_of_its_trial_leaves_it_and_says_why(slurm, tmp_path, smoke_fast_made):
    """Issue 12, item 3; issue 19: the SLURM job takes the trial's lock too. Another launcher took the trial after
    the submission (here a process that only holds its lock): the job waits ``cluster.lock_wait_s``, then
    leaves the trial (both tasks end cleanly, nothing trains) and says why in failure.json. Status shows the
    trial running while the other holds it, failed with that cause once it has let go: never queued beside an
    ended job. (A job that finds the trial done instead ends without a failure: tests/test_locks.py.)"""
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    run = launch("-m", *CPU, "cluster.tasks_per_node=2", "pretrain=densecl", "seed=0", "cluster.lock_wait_s=5",
                 "+cluster.sbatch.hold=true", f"output_root={tmp_path}", env=ENV)  # fmt: skip
    assert run.returncode == 0 and "1 to submit" in run.stdout, run.output[-3000:]
    (trial,) = [p.parent for p in tmp_path.rglob("slurm.json")]
    job, collect_id = job_id(trial), run.stdout.split("; job ")[1].split(" ")[0]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(trial)], cwd=REPO, text=True, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        subprocess.run(["scontrol", "release", job, collect_id], check=True)
        wait_for(lambda: not queue_of(job, collect_id), "the job and the collect job to end")
        while_held = {s.label: (s.state, s.cause) for s in status.scan([tmp_path])}
    finally:
        holder.stdin.close()
        holder.wait()
    cause = "lock held by another launcher for 5 s (cluster.lock_wait_s); this job left the trial to it"
    assert json.loads((trial / "failure.json").read_text())["cause"] == cause
    assert "waiting up to 5 s for it" in (trial / "job.log").read_text()
    assert list(while_held.values()) == [("running", "")]  # the holder has it, whatever failure.json says
    assert [(s.state, s.cause) for s in status.scan([tmp_path])] == [("failed", cause)]
    assert not (trial / "log.txt").exists() and not (trial / "result.json").exists()  # nothing trained
    logs = [p.read_text() for p in (tmp_path / "smoke_fast" / "_slurm" / job.split("_")[0]).glob("*_log.out")]
    assert len(logs) == 2 and all("Exiting after successful completion" in text for text in logs)  # both tasks
    assert any("rank 0 does not train this run of the job" in text for text in logs)  # rank 1 did not wait


LOOKER = """\
import sys, threading
from pathlib import Path
from xfer.store import locks

claimed = ("log.txt", "failure.json", "result.json")  # what a job leaves once rank 0 has decided
looks = [0]


def look(trial: Path) -> None:
    while not any((trial / name).exists() for name in claimed):
        for _ in range(50):
            locks.held(trial)
        looks[0] += 50


trials = [Path(a) for a in sys.argv[1:]]
threads = [threading.Thread(target=look, args=(t,)) for t in trials for _ in range(16)]
print(len(trials), flush=True)
for t in threads:
    t.start()
for t in threads:
    t.join()
print(looks[0], flush=True)
"""


def scontrol_show(job: str, env: dict) -> str:
    return subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env).stdout


def test_a_sweep_goes_out_in_arrays_within_max_array_size_and_looking_keeps_no_job_out(small_slurm, tmp_path, smoke_fast_made):
    """Issue 19: 12 trials where MaxArraySize is 5 go out as 3 arrays (5, 5 and 2 tasks) and a collect job after
    all three, held. The first array is then released and the other two cancelled (as a user who wants fewer
    seeds would): the collect job, which waits for the arrays' end however they end, tabulates the 5 trials.
    Meanwhile a looker asks ``locks.held`` of each of the 5 without pause (16 threads a trial: a thread that took
    the lock to look would keep it while it waits for the GIL) until each job's rank 0 has decided, and the jobs
    take their lock without waiting (``cluster.lock_wait_s=0``): every trial ends done, none left to a looker.
    (A looker that takes the lock to look left 1 to 4 trials of 12 here, at 8 threads a trial.)"""
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    env = {**ENV, **small_slurm.env}
    run = launch("-m", *CPU, "pretrain=scratch,densecl,regioncl", "seed=0-3", "cluster.lock_wait_s=0",
                 "cluster.array_parallelism=5", "+cluster.sbatch.hold=true", f"output_root={tmp_path}", env=env)  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    arrays = run.stdout.split("submitted 12 trials as SLURM job arrays ")[1].split(";")[0].split(", ")
    collect_id = run.stdout.split("; job ")[1].split(" ")[0]
    trials = [p.parent for p in tmp_path.rglob("slurm.json")]
    assert len(arrays) == 3 and len(trials) == 12
    tasks = [f"{a}_{i}" for a, n in zip(arrays, (5, 5, 2), strict=True) for i in range(n)]  # SLURM's own names
    assert sorted(job_id(t) for t in trials) == sorted(tasks)
    assert sorted(squeue(env).split()) == sorted([f"{t}|PENDING|0|" for t in tasks] + [f"{collect_id}|PENDING|0|"])
    dependency = scontrol_show(collect_id, env).split("Dependency=")[1].split()[0]
    assert sorted(re.findall(r"afterany:(\d+)(?:_\*)?", dependency)) == sorted(arrays), dependency
    first = [t for t in trials if job_id(t).startswith(f"{arrays[0]}_")]
    for t in first:  # as the folders of trials that ran before have it (a relaunch, a requeue)
        (t / ".lock").touch()
    looker = subprocess.Popen([sys.executable, "-c", LOOKER, *map(str, first)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert looker.stdout.readline().strip() == "5"
        subprocess.run(["scancel", *arrays[1:]], check=True, env=env)
        subprocess.run(["scontrol", "release", arrays[0], collect_id], check=True, env=env)
        wait_for(lambda: not squeue(env).strip(), "the array and the collect job to end", env=env)
        looks = int(looker.communicate(timeout=60)[0])
    finally:
        looker.kill()
    failures = {str(t.relative_to(tmp_path)): json.loads((t / "failure.json").read_text())["cause"] for t in trials
                if (t / "failure.json").exists()}  # fmt: skip
    done = results_under(tmp_path)
    assert not failures and sorted(p.parent for p in done) == sorted(first) and looks > 0, failures
    table = (tmp_path / "smoke_fast" / "table.md").read_text()  # the collect job ran after the three arrays ended
    counts = Counter(r["setting"]["key"] for r in done.values())
    for setting, n in counts.items():
        assert f"{setting} | {n}/5 |" in table, table


def test_what_sbatch_refuses_is_said_in_one_line_and_the_collect_job_fits_the_partitions_time_limit(tmp_path,
                                                                                                     smoke_fast_made):
    """A partition whose MaxTime is 10 minutes, enforced when jobs are submitted (EnforcePartLimits=ALL). Trials of
    cluster.time_min=20 are refused before anything is submitted, naming the limit (sbatch refused them with
    submitit's traceback; where a partition does not enforce it, SLURM keeps such jobs pending). A reservation
    that does not exist: sbatch refuses the array, and the launch says so in one message with SLURM's reason,
    nothing submitted (a traceback before). Trials of 5 minutes go out with a collect job of 5 minutes: it asked
    for 30, and sbatch refused it after the array was queued (a traceback, no collect job)."""
    cluster = start_slurm(tmp_path / "slurm", ("EnforcePartLimits=ALL",
                                               "PartitionName=short Nodes=ALL Default=NO MaxTime=10 State=UP"))
    try:
        env = {**ENV, **cluster.env}
        out = smoke_fast_made(tmp_path / "out")
        args = ("-m", *CPU, "pretrain=densecl", "seed=0", "cluster.partition=short", "+cluster.sbatch.hold=true",
                f"output_root={out}")  # fmt: skip
        too_long = launch(*args, "cluster.time_min=20", env=env)
        assert too_long.returncode == 2, too_long.output[-3000:]
        assert ("cluster.time_min=20: over partition short's time limit (10:00 in sinfo, 10 minutes); set "
                "cluster.time_min=10 or less") in too_long.stderr, too_long.stderr  # fmt: skip
        refused = launch(*args, "cluster.time_min=5", "+cluster.sbatch.reservation=nosuch", env=env)
        assert refused.returncode == 2, refused.output[-3000:]
        assert ("error: SLURM refused the sweep's job array (sbatch: error: Batch job submission failed: Requested "
                "reservation is invalid). Nothing was submitted: fix what it names") in refused.stderr, refused.stderr
        for run in (too_long, refused):
            assert "Traceback" not in run.output and not list(out.rglob("slurm.json")) and not squeue(env).strip()
        run = launch(*args, "cluster.time_min=5", env=env)
        assert run.returncode == 0, run.output[-3000:]
        collect_id = run.stdout.split("; job ")[1].split(" ")[0]
        (trial,) = [p.parent for p in out.rglob("slurm.json")]
        for job in (job_id(trial), collect_id):
            shown = scontrol_show(job, env)
            assert "TimeLimit=00:05:00" in shown and "Partition=short" in shown, shown
        subprocess.run(["scancel", job_id(trial), collect_id], check=True, env=env)
    finally:
        cluster.stop()


def test_the_collect_job_gets_the_users_partition_and_sbatch_options(slurm, tmp_path, smoke_fast_made):
    """Issue 12, item 7: the collect job must be able to run where the array runs."""
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    run = launch("-m", *CPU, "pretrain=densecl", "seed=0", "cluster.partition=other", "+cluster.sbatch.hold=true",
                 "+cluster.sbatch.comment=xfer-item-7", f"output_root={tmp_path}", env=ENV)  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    array = run.stdout.split("job array ")[1].split(";")[0]
    collect_id = run.stdout.split("; job ")[1].split(" ")[0]
    for job in (array, collect_id):
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        assert "Partition=other" in shown and "Comment=xfer-item-7" in shown, shown
        assert "JobState=PENDING Reason=JobHeldUser" in shown
    scripts = {p.parent.name: p.read_text() for p in (tmp_path / "smoke_fast" / "_slurm").glob("*/*_submission.sh")}
    assert set(scripts) == {array, collect_id}
    for text in scripts.values():
        assert "#SBATCH --comment=xfer-item-7" in text and "#SBATCH --partition=other" in text
    assert f"#SBATCH --dependency=afterany:{array}" in scripts[collect_id]
    subprocess.run(["scancel", array, collect_id], check=True)
    wait_for(lambda: not queue_of(array, collect_id), "the jobs to leave the queue")


def test_two_launches_of_one_sweep_at_once_submit_each_trial_once(slurm, tmp_path, smoke_fast_made):
    """Drill: two launches started together each found nothing queued and submitted all 4 trials (8 jobs; the
    second 4 sat idle on their allocation, then left; each slurm.json named a job that did not train). The
    submission lock makes them take turns: 4 jobs in all, the second launch finds them queued. Held jobs
    (``sbatch --hold``) stay pending: nothing trains."""
    smoke_fast_made(tmp_path)
    args = ["-m", *CPU, "pretrain=densecl,regioncl", "seed=0-1", "+cluster.sbatch.hold=true", f"output_root={tmp_path}"]
    procs = [subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **ENV})
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    submitted = sorted(int(m) for out in outputs for m in re.findall(r"submitted (\d+) trials", out))
    assert submitted == [4], outputs  # one launch submitted the 4, the other none
    assert any("4 trials, 0 done, 4 queued or running on SLURM already, 0 to submit" in out for out in outputs), outputs
    jobs = {json.loads(p.read_text())["job_id"] for p in tmp_path.rglob("slurm.json")}
    assert len(jobs) == 4 and len(queue_of(*jobs)) == 4, (jobs, squeue())
    planned = launch(*args, "plan=true", env=ENV)  # drill: plan said "4 to run" where status said queued
    assert planned.returncode == 0 and "4 trials: 4 queued;" in planned.stdout, planned.output[-3000:]
    assert planned.stdout.count("| queued | queued |") == 2, planned.stdout
    unread = launch(*args, "plan=true", env=failing_squeue(tmp_path))  # and "no problems found" with squeue down
    assert unread.returncode == 2 and "could not read SLURM's queue" in unread.stderr, unread.output[-3000:]
    subprocess.run(["scancel", *{j.split("_")[0] for j in jobs}], check=True)


@pytest.mark.parametrize("at_once,arrays,shares", [(4, 3, [2, 1, 1]), (64, 3, [22, 21, 21]), (2, 3, [1, 1, 1]),
                                                    (5, 1, [5]), (6, 2, [3, 3])])  # fmt: skip
def test_array_parallelism_is_shared_out_among_the_arrays_by_hand(at_once, arrays, shares):
    """Drill: 4 over 3 arrays gave each %1 (3 at once, not 4). Worked out by hand: whole shares, the first arrays
    one more, at least one each."""
    from xfer.launch import slurm as xfer_slurm

    assert xfer_slurm.shares(at_once, arrays) == shares
